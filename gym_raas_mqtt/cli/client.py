"""The researcher's ``raas`` commands against the dashboard's REST API (stdlib only).

``raas login``, ``submit``, ``jobs``, ``logs``, ``results``, ``nodes``, ``cancel``. The API address
and token come from ``RAAS_API_URL`` / ``RAAS_API_TOKEN`` or from the config file written by
``raas login`` (``~/.config/raas/config.toml``, mode 0600). Only urllib, argparse, tarfile and
tomllib are used, so the base install (gymnasium, numpy, paho-mqtt) is enough.
"""

from __future__ import annotations

import argparse
import getpass
import io
import json
import os
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from gym_raas_mqtt.config import load, setting
from gym_raas_mqtt.errors import RaasError

TERMINAL = {"succeeded", "failed", "timed_out", "canceled", "error"}
OK_STATES = {"succeeded", "timed_out"}  # a timed-out run is still valid data
PACK_EXCLUDE_DIRS = {".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".mypy_cache",
                     ".pytest_cache", "node_modules", ".tox"}
MAX_PACK_BYTES = 20 * 1024 * 1024
HTTP_TIMEOUT_S = 30.0


class ClientError(RaasError):
    """The API refused a request or could not be reached; the message says why."""


def default_config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "raas" / "config.toml"


@dataclass(frozen=True)
class ClientConfig:
    """Where the API is and how to authenticate (environment wins over the config file)."""

    api_url: str | None = setting("RAAS_API_URL", None,
                                  "dashboard address, e.g. https://raas.example.org")
    api_token: str | None = setting("RAAS_API_TOKEN", None, "API token (see `raas login`)",
                                    secret=True)
    config_file: str | None = setting("RAAS_CLIENT_CONFIG", None,
                                      "config file (default ~/.config/raas/config.toml)")

    def path(self) -> Path:
        return Path(self.config_file).expanduser() if self.config_file else default_config_file()


def read_config_file(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, OSError) as e:
        raise ClientError(f"cannot read {path}: {e}") from e


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_config_file(path: Path, api_url: str, token: str) -> None:
    """Write the config file readable by its owner only (0600, folder 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# written by `raas login`\n")
        f.write(f"api_url = {_toml_str(api_url)}\ntoken = {_toml_str(token)}\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class Api:
    """A tiny REST client: JSON in, JSON out, errors as :class:`ClientError`.

    Args:
        base_url: the dashboard's address (``http(s)://host[:port]``).
        token: API token or None (only ``login`` works without).
    """

    def __init__(self, base_url: str, token: str | None) -> None:
        self.base = base_url.rstrip("/")
        self.token = token

    @classmethod
    def from_env(cls, need_token: bool = True) -> "Api":
        cfg = load(ClientConfig)
        file = read_config_file(cfg.path())
        url = cfg.api_url or file.get("api_url")
        from gym_raas_mqtt.config import read_secret

        token = read_secret(cfg.api_token) or file.get("token")
        if not url:
            raise ClientError("no API address: run `raas login --url URL` or set RAAS_API_URL")
        if need_token and not token:
            raise ClientError("not logged in: run `raas login` or set RAAS_API_TOKEN")
        return cls(url, token)

    def request(self, method: str, path: str, *, body: bytes | None = None,
                content_type: str | None = None, timeout: float = HTTP_TIMEOUT_S) -> Any:
        """Send a request; returns the open response (caller reads/closes).

        Raises:
            ClientError: HTTP error (with the server's reason) or connection failure.
        """
        url = self.base + path
        req = urllib.request.Request(url, data=body, method=method)
        req.add_header("Accept", "application/json")
        req.add_header("User-Agent", "raas-cli")
        if content_type:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as e:
            reason = e.reason
            try:
                data = json.loads(e.read() or b"{}")
                reason = data.get("reason") or reason
            except ValueError:
                pass
            raise ClientError(f"{method} {path}: HTTP {e.code}: {reason}") from None
        except (urllib.error.URLError, OSError) as e:
            raise ClientError(f"cannot reach {self.base}: {getattr(e, 'reason', e)}") from None

    def json(self, method: str, path: str, payload: Any = None) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        with self.request(method, path, body=body,
                          content_type="application/json" if body is not None else None) as r:
            return json.loads(r.read() or b"null")

    def download(self, path: str) -> bytes:
        with self.request("GET", path) as r:
            return r.read()

    def multipart(self, path: str, fields: dict[str, str], file_field: str, filename: str,
                  data: bytes) -> Any:
        """POST ``multipart/form-data`` with one file part."""
        boundary = "raas-" + uuid.uuid4().hex
        out = io.BytesIO()
        for k, v in fields.items():
            out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'
                      f"{v}\r\n".encode())
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
                  f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                  .encode())
        out.write(data)
        out.write(f"\r\n--{boundary}--\r\n".encode())
        with self.request("POST", path, body=out.getvalue(),
                          content_type=f"multipart/form-data; boundary={boundary}",
                          timeout=max(HTTP_TIMEOUT_S, len(data) / 1e6)) as r:
            return json.loads(r.read())

    def events(self, query: dict[str, str], timeout: float = 60.0) -> Iterator[tuple[str, Any]]:
        """Server-sent events from ``/stream``: yields ``(event name, decoded data)``."""
        path = "/stream?" + urllib.parse.urlencode(query)
        with self.request("GET", path, timeout=timeout) as r:
            name, data = "message", []
            while True:
                raw = r.readline()
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    if data:
                        try:
                            yield name, json.loads("\n".join(data))
                        except ValueError:
                            pass
                    name, data = "message", []
                elif line.startswith(":"):
                    continue
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())


# -- packing ---------------------------------------------------------------------------------------
def pack_directory(folder: Path, max_bytes: int = MAX_PACK_BYTES) -> bytes:
    """A .tar.gz of ``folder``'s contents (paths relative to it), skipping VCS folders, caches
    and virtualenvs; symlinks are not followed (and not included).

    Raises:
        ClientError: the archive would exceed ``max_bytes``, or ``folder`` has no run.py.
    """
    folder = folder.resolve()
    if not (folder / "run.py").is_file():
        raise ClientError(f"{folder} has no run.py at its top level (that is what the node runs)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if d not in PACK_EXCLUDE_DIRS
                                 and not os.path.islink(os.path.join(dirpath, d)))
            for name in sorted(filenames):
                path = Path(dirpath, name)
                if path.is_symlink() or not path.is_file() or name.endswith((".pyc", ".pyo")):
                    continue
                info = tf.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(path, "rb") as f:
                    tf.addfile(info, f)
                if buf.tell() > max_bytes:
                    raise ClientError(f"{folder} packs to more than {max_bytes} bytes; leave data "
                                      "files out or submit a git URL")
    return buf.getvalue()


# -- commands ------------------------------------------------------------------------------------
def _fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def cmd_login(args: argparse.Namespace) -> int:
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
    print(f"logged in as {answer['user']}; token saved in {cfg.path()}")
    return 0


def _progress_line(job: dict[str, Any]) -> str:
    state = job["state"]
    if state == "queued":
        pos = job.get("queue_position")
        return f"queued (position {pos})" if pos else "queued"
    if state == "assigned":
        return f"assigned to {job.get('node_id')}, starting"
    if state == "running":
        live = job.get("live") or {}
        text = f"running on {job.get('node_id')}"
        if live.get("step") is not None:
            text += (f" · episode {live.get('episode_id')} step {live['step']}"
                     f" · return {live.get('episode_reward', 0.0):.2f}")
        return text
    return state


def print_summary(job: dict[str, Any], out: Any = None) -> None:
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


def wait_for(api: Api, job_id: str, interval_s: float = 1.0, out: Any = None) -> dict:
    """Poll the job until it ends, showing one progress line; returns the final job."""
    out = out or sys.stdout
    tty = out.isatty() if hasattr(out, "isatty") else False
    last = ""
    while True:
        job = api.json("GET", f"/api/v1/jobs/{urllib.parse.quote(job_id)}")
        line = _progress_line(job)
        if tty:
            out.write("\r\033[K" + line)
            out.flush()
        elif line.split(" · ")[0] != last.split(" · ")[0]:
            print(line, file=out, flush=True)  # logs get a line per change, not per step
        last = line
        if job["state"] in TERMINAL:
            if tty:
                out.write("\n")
            return job
        time.sleep(interval_s)


def cmd_submit(args: argparse.Namespace) -> int:
    api = Api.from_env()
    target = args.source
    path = Path(target).expanduser()
    fields = {} if args.time_limit is None else {"time_limit_s": str(args.time_limit)}
    if path.is_dir():
        if args.ref:
            raise ClientError("--ref is for git URLs; a folder is uploaded as it is")
        data = pack_directory(path)
        print(f"uploading {path} ({len(data)} bytes packed)", file=sys.stderr)
        job = api.multipart("/api/v1/jobs", fields, "archive", f"{path.resolve().name}.tar.gz",
                            data)
    elif path.is_file() and target.lower().endswith((".tar.gz", ".tgz", ".zip")):
        job = api.multipart("/api/v1/jobs", fields, "archive", path.name, path.read_bytes())
    else:
        payload: dict[str, Any] = {"url": target}
        if args.ref:
            payload["ref"] = args.ref
        if args.time_limit is not None:
            payload["time_limit_s"] = args.time_limit
        job = api.json("POST", "/api/v1/jobs", payload)
    print(job["id"] if not args.wait else f"submitted job {job['id']}")
    if not args.wait:
        return 0
    final = wait_for(api, job["id"])
    print_summary(final)
    return 0 if final["state"] in OK_STATES else 1


def cmd_jobs(args: argparse.Namespace) -> int:
    api = Api.from_env()
    query = {"limit": str(args.limit)} | ({"state": args.state} if args.state else {})
    jobs = api.json("GET", "/api/v1/jobs?" + urllib.parse.urlencode(query))["jobs"]
    if not jobs:
        print("no jobs")
        return 0
    rows = [[j["id"], j["state"], str(j.get("queue_position") or ""), j.get("node_id") or "",
             _fmt_time(j["submitted_at"]), _fmt_time(j.get("finished_at")),
             (j["source"].get("url") or "archive") + (f" @ {j['source']['ref']}"
                                                      if j["source"].get("ref") else "")]
            for j in jobs]
    print(_table(rows, ["JOB", "STATE", "QUEUE", "NODE", "SUBMITTED", "FINISHED", "SOURCE"]))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
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
    api = Api.from_env()
    jid = urllib.parse.quote(args.job)
    listing = api.json("GET", f"/api/v1/jobs/{jid}/results")
    if not listing["files"]:
        raise ClientError(f"job {args.job} has no results yet (state {listing.get('state')})")
    out = Path(args.output or f"results-{args.job}")
    out.mkdir(parents=True, exist_ok=True)
    for f in listing["files"]:
        name = Path(f["name"]).name  # never write outside the folder
        (out / name).write_bytes(
            api.download(f"/api/v1/jobs/{jid}/results/{urllib.parse.quote(name)}"))
        print(out / name)
    return 0


def cmd_nodes(args: argparse.Namespace) -> int:
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
    api = Api.from_env()
    job = api.json("POST", f"/api/v1/jobs/{urllib.parse.quote(args.job)}/cancel")
    print(f"job {job['id']}: {job['state']}"
          + (" (cancel requested; the node stops it)" if job["state"] == "running" else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("login", help="log in to the dashboard and store an API token")
    p.add_argument("--url", help="dashboard address (default: RAAS_API_URL or the config file)")
    p.add_argument("--user", help="user name (prompted if absent)")
    p.add_argument("--password-file", help="read the password from a file instead of a prompt")
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("submit", help="submit a folder, archive or git URL to run on a pendulum")
    p.add_argument("source", metavar="PATH_OR_URL",
                   help="a folder with run.py (packed and uploaded), a .tar.gz/.zip, or a git URL")
    p.add_argument("--ref", help="git branch, tag or commit (default branch if absent)")
    p.add_argument("--time-limit", type=float, metavar="S", help="wall-clock limit [s]")
    p.add_argument("--wait", action="store_true",
                   help="follow the job to its end and print the summary")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("jobs", help="list your jobs")
    p.add_argument("--state", help="only jobs in this state")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_jobs)

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
