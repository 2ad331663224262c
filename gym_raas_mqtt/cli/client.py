"""The researcher's ``raas`` commands against the dashboard's REST API (stdlib only).

``raas login``, ``tokens``, ``submit``, ``wait``, ``logs``, ``results``, ``nodes``, ``cancel``
(a job by its id or a unique prefix of it; following a job is
:mod:`gym_raas_mqtt.cli.follow`); the HTTP client, its settings and the config file
``raas login`` writes are :mod:`gym_raas_mqtt.cli.api`.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from gym_raas_mqtt.cli import runmeta
from gym_raas_mqtt.cli.api import (Api, ClientConfig, ClientError, pack_directory,
                                   read_config_file, write_config_file)
from gym_raas_mqtt.cli.follow import TERMINAL, follow
from gym_raas_mqtt.config import load


def _fmt_time(ts: float | None) -> str:
    """Epoch seconds as local ``YYYY-MM-DD HH:MM:SS``; ``-`` for none."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _table(rows: list[list[str]], header: list[str]) -> str:
    """A plain-text table with left-aligned columns."""
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def cmd_login(args: argparse.Namespace) -> int:
    """``raas login``: exchange user name and password for a token and save it."""
    cfg = load(ClientConfig)
    file = read_config_file(cfg.path())
    url = args.url or cfg.api_url or file.get("api_url")
    if not url:
        raise ClientError("give the dashboard address: raas login --url https://...")
    user = args.user or input("user name: ")
    if args.password_file:
        password = Path(args.password_file).read_text().strip()
    else:
        password = getpass.getpass(f"password for {user}: ")
    answer = Api(url, None).json("POST", "/api/v1/tokens",
                                 {"username": user, "password": password, "name": "cli"})
    write_config_file(cfg.path(), url, answer["token"])
    expires = f" (valid until {_fmt_time(answer['expires_at'])})" if "expires_at" in answer else ""
    print(f"logged in as {answer['user']}; token saved in {cfg.path()}{expires}")
    return 0


def cmd_tokens(args: argparse.Namespace) -> int:
    """``raas tokens``: list your API tokens (``*`` marks the one this command used)."""
    tokens = Api.from_env().json("GET", "/api/v1/tokens")["tokens"]
    rows = [[("*" if t.get("current") else "") + str(t["id"]), t["name"], t["state"],
             _fmt_time(t["created_at"]), _fmt_time(t.get("last_used_at")),
             _fmt_time(t.get("expires_at"))] for t in tokens]
    print(_table(rows, ["ID", "NAME", "STATE", "CREATED", "LAST USED", "EXPIRES"])
          if rows else "no tokens")
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    """``raas tokens revoke ID``: revoke one of your API tokens."""
    token = Api.from_env().json("DELETE", f"/api/v1/tokens/{args.id}")
    print(f"token {token['id']} ({token['name']}): {token['state']}"
          + (" — this was the token of this login; run `raas login` again"
             if token.get("current") else ""))
    return 0


def print_summary(job: dict[str, Any], out: Any = None) -> None:
    """Print a finished job's state and the figures of its result summary to ``out`` (stdout)."""
    out = out or sys.stdout
    s = job.get("summary") or {}
    print(f"job {job['id']}: {job['state']}" + (f" ({job['reason']})" if job.get("reason")
                                                else ""), file=out)
    rows = [("node", s.get("node_id") or job.get("node_id")),
            ("commit", s.get("commit_sha") or job.get("commit_sha")),
            ("image", s.get("image_digest")), ("calibration", s.get("calibration_id")),
            ("return", s.get("return")), ("steps", s.get("steps")),
            ("episodes", s.get("episodes")), ("seconds upright", s.get("seconds_upright")),
            ("deadline misses", s.get("deadline_misses")), ("duration [s]", s.get("duration_s"))]
    for k, v in rows:
        if v is not None:
            print(f"  {k:16} {v:.3f}" if isinstance(v, float) else f"  {k:16} {v}", file=out)
    print(f"  results: raas results {job['id']} -o results-{job['id']}", file=out)


def cmd_submit(args: argparse.Namespace) -> int:
    """``raas submit``: upload a folder or archive, or submit a git URL."""
    runmeta.finish_parsing(args)
    api = Api.from_env()
    target = args.source
    path = Path(target).expanduser()
    fields = {} if args.time_limit is None else {"time_limit_s": str(args.time_limit)}
    fields |= runmeta.metadata_form(args)
    if path.is_dir():
        if args.ref:
            raise ClientError("--ref is for git URLs; a folder is uploaded as it is")
        data = pack_directory(path)
        print(f"uploading {path} ({len(data)} bytes packed)", file=sys.stderr)
        job = api.multipart("/api/v1/jobs", fields, "archive", f"{path.resolve().name}.tar.gz",
                            data)
    elif path.is_file() and target.lower().endswith((".tar.gz", ".tgz", ".zip")):
        job = api.multipart("/api/v1/jobs", fields, "archive", path.name, path.read_bytes())
    elif "://" not in target and not target.startswith("git@"):
        raise ClientError(f"no such folder: {target} (give a folder with run.py, a .tar.gz/.zip "
                          "archive, or a git URL)")
    else:
        payload: dict[str, Any] = {"url": target}
        if args.ref:
            payload["ref"] = args.ref
        if args.time_limit is not None:
            payload["time_limit_s"] = args.time_limit
        job = api.json("POST", "/api/v1/jobs", payload | runmeta.metadata_json(args))
    print(job["id"] if not args.wait else f"submitted job {job['id']}")
    if not args.wait:
        return 0
    return follow(api, job["id"], print_summary)


def cmd_wait(args: argparse.Namespace) -> int:
    """``raas wait JOB``: follow a job (again) to its end and print its summary."""
    return follow(Api.from_env(), args.job, print_summary)


def cmd_logs(args: argparse.Namespace) -> int:
    """``raas logs``: print a job's output, or follow it live with ``--follow``."""
    api = Api.from_env()
    jid = urllib.parse.quote(args.job)
    job = api.json("GET", f"/api/v1/jobs/{jid}")
    if job["state"] in TERMINAL:
        sys.stdout.write(api.download(f"/api/v1/jobs/{jid}/results/stdout.log")
                         .decode("utf-8", "replace"))
        return 0
    if not args.follow:
        print(f"job {args.job} is {job['state']}; its log is complete when it ends. Use "
              "--follow to stream it live.", file=sys.stderr)
        return 1
    seen: set[tuple[str, int]] = set()  # a reconnected stream replays recent chunks
    while True:
        for name, data in api.events({"job": args.job}, timeout=args.idle_timeout):
            if name == "log" and (data.get("stream"), data.get("seq")) not in seen:
                seen.add((data.get("stream"), data.get("seq")))
                for line in data.get("lines", []):
                    prefix = "" if data.get("stream") == "stdout" else f"[{data.get('stream')}] "
                    print(prefix + line, flush=True)
            elif name == "state" and data.get("state") in TERMINAL:
                print(f"[job {data['state']}]", file=sys.stderr)
                return 0
        # the server ends streams after RAAS_SSE_MAX_DURATION_S: reconnect unless it is over
        state = api.json("GET", f"/api/v1/jobs/{jid}")["state"]
        if state in TERMINAL:
            print(f"[job {state}]", file=sys.stderr)
            return 0


def cmd_results(args: argparse.Namespace) -> int:
    """``raas results``: download a job's result bundle into a folder."""
    api = Api.from_env()
    jid = urllib.parse.quote(args.job)
    listing = api.json("GET", f"/api/v1/jobs/{jid}/results")
    if not listing["files"]:
        raise ClientError(f"job {args.job} has no results yet (state {listing.get('state')})")
    out = Path(args.output or f"results-{listing['job_id']}")  # the full id, even from a prefix
    out.mkdir(parents=True, exist_ok=True)
    for f in listing["files"]:
        name = Path(f["name"]).name  # never write outside the folder
        (out / name).write_bytes(
            api.download(f"/api/v1/jobs/{jid}/results/{urllib.parse.quote(name)}"))
        print(out / name)
    return 0


def cmd_nodes(args: argparse.Namespace) -> int:
    """``raas nodes``: list the fleet's nodes."""
    api = Api.from_env()
    data = api.json("GET", "/api/v1/nodes")
    if not data["nodes"]:
        print("no nodes")
        return 0
    rows = [[n["id"], n.get("state") or "?", n.get("current_job") or "",
             _fmt_time(n.get("last_seen")),
             f"{n.get('run_hours', 0):.2f}", n.get("calibration_id") or "",
             "ok" if n["selftests"] and n["selftests"][0]["ok"] else
             ("FAIL" if n["selftests"] else "-")] for n in data["nodes"]]
    print(_table(rows, ["NODE", "STATE", "JOB", "LAST SEEN", "RUN H", "CALIBRATION", "SELFTEST"]))
    if not data.get("live", True):
        print("(the dashboard is not connected to the broker: states may be stale)")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """``raas cancel``: cancel a job."""
    api = Api.from_env()
    job = api.json("POST", f"/api/v1/jobs/{urllib.parse.quote(args.job)}/cancel")
    print(f"job {job['id']}: {job['state']}"
          + (" (cancel requested; the node stops it)" if job["state"] == "running" else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the researcher's job commands to the ``raas`` parser."""
    p = sub.add_parser("login", help="log in to the dashboard and store an API token")
    p.add_argument("--url", help="dashboard address (default: RAAS_API_URL or the config file)")
    p.add_argument("--user", help="user name (prompted if absent)")
    p.add_argument("--password-file", help="read the password from a file instead of a prompt")
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("tokens", help="list your API tokens, or revoke one")
    p.set_defaults(func=cmd_tokens)
    tsub = p.add_subparsers(dest="tokens_command", metavar="ACTION")
    tsub.add_parser("list", help="list your tokens (the default)").set_defaults(func=cmd_tokens)
    revoke = tsub.add_parser("revoke", help="revoke a token: using it is refused from then on")
    revoke.add_argument("id", type=int, help="the token's ID (see `raas tokens`)")
    revoke.set_defaults(func=cmd_tokens_revoke)

    p = sub.add_parser("submit", help="submit a folder, archive or git URL to run on a pendulum",
                       parents=[runmeta.submit_options()])
    runmeta.add_submit_arguments(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("wait", help="follow a job to its end (e.g. after Ctrl-C on --wait)")
    p.add_argument("job", help="job id or a unique prefix of it")
    p.set_defaults(func=cmd_wait)

    p = sub.add_parser("logs", help="print a job's output")
    p.add_argument("job")
    p.add_argument("-f", "--follow", action="store_true", help="stream the output while it runs")
    p.add_argument("--idle-timeout", type=float, default=60.0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("results", help="download a job's result bundle")
    p.add_argument("job")
    p.add_argument("-o", "--output", metavar="DIR", help="folder (default results-JOB)")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("nodes", help="list the fleet's nodes")
    p.set_defaults(func=cmd_nodes)

    p = sub.add_parser("cancel", help="cancel a job")
    p.add_argument("job")
    p.set_defaults(func=cmd_cancel)
