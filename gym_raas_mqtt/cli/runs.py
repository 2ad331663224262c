"""``raas jobs`` (the runs table: sorted, filtered, searched and paged by the dashboard) and
``raas status JOB`` (one job with its run metadata and figures), stdlib only.

Both read ``GET /api/v1/jobs`` and ``GET /api/v1/jobs/JOB``, the same API the jobs page uses.
"""

from __future__ import annotations

import argparse
import shlex
import time
import urllib.parse
from typing import Any

from gym_raas_mqtt.cli.api import Api
from gym_raas_mqtt.cli.client import print_summary

SORT_KEYS = ("submitted", "finished", "name", "state", "node", "return", "seconds_upright",
             "steps", "episodes", "duration_s", "deadline_misses")
"""What ``--sort`` takes (``-`` first for descending); the API's ``sort`` values."""
COLUMNS = (  # header, job field, format ("" for text), right-aligned
    ("RUN", "name", "", False), ("JOB", "id", "", False), ("STATE", "state", "", False),
    ("RETURN", "return", "{:.2f}", True), ("UPRIGHT S", "seconds_upright", "{:.2f}", True),
    ("STEPS", "steps", "{:d}", True), ("EPS", "episodes", "{:d}", True),
    ("DURATION S", "duration_s", "{:.1f}", True), ("MISSES", "deadline_misses", "{:d}", True),
    ("NODE", "node_id", "", False), ("TAGS", "tags", "", False),
    ("SUBMITTED", "submitted_at", "", False), ("SOURCE", "source", "", False))
"""The runs table's columns, key columns first (as on the jobs page)."""
MAX_REASON_CHARS = 60


def sort_key(text: str) -> str:
    """``--sort``'s value, checked against :data:`SORT_KEYS` (so a typo fails before the call).

    Raises:
        argparse.ArgumentTypeError: an unknown column.
    """
    if text.lstrip("-") not in SORT_KEYS:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(SORT_KEYS)} "
                                         "(prefix - for descending)")
    return text


def cell(job: dict[str, Any], field: str, fmt: str) -> str:
    """One cell of the runs table: a figure formatted, tags joined, a time as ``MM-DD HH:MM``,
    a state with its reason (shortened), a source as ``URL @ ref``; empty when there is none."""
    value = job.get(field)
    if value is None or value == []:
        return ""
    if fmt:
        return fmt.format(value)
    if field == "tags":
        return ",".join(value)
    if field == "submitted_at":
        return time.strftime("%m-%d %H:%M", time.localtime(value))
    if field == "source":
        return (value.get("url") or "archive") + (f" @ {value['ref']}" if value.get("ref")
                                                  else "")
    if field == "state" and job.get("reason"):
        reason = job["reason"]
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[:MAX_REASON_CHARS - 1] + "…"
        return f"{value} ({reason})"
    return str(value)


def render_table(jobs: list[dict[str, Any]]) -> str:
    """The jobs as a plain-text table of :data:`COLUMNS` (figures right-aligned)."""
    rows = [[cell(j, field, fmt) for _, field, fmt, _ in COLUMNS] for j in jobs]
    header = [h for h, *_ in COLUMNS]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(COLUMNS))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if right else v.ljust(w)
                         for v, w, (*_, right) in zip(values, widths, COLUMNS)).rstrip()

    return "\n".join([line(header)] + [line(r) for r in rows])


def jobs_query(args: argparse.Namespace) -> dict[str, str]:
    """The API query of ``raas jobs``'s options (only those given)."""
    query = {"sort": args.sort, "state": args.state, "tag": args.tag, "node": args.node,
             "owner": args.owner, "q": args.search, "page": args.page, "per_page": args.limit}
    return {k: str(v) for k, v in query.items() if v is not None}


def cmd_jobs(args: argparse.Namespace) -> int:
    """``raas jobs``: the runs table (sort, filter, search, page)."""
    api = Api.from_env()
    data = api.json("GET", "/api/v1/jobs?" + urllib.parse.urlencode(jobs_query(args)))
    if not data["jobs"]:
        print("no jobs")
        return 0
    print(render_table(data["jobs"]))
    if data.get("pages", 1) > 1:
        print(f"(page {data['page']} of {data['pages']}, {data['total']} jobs: --page N)")
    return 0


def print_metadata(job: dict[str, Any], out: Any = None) -> None:
    """Print a job's run metadata (name, tags, ``run.py`` command line, environment names,
    notes), the lines of those it has."""
    rows = [("name", job.get("name")), ("tags", ", ".join(job.get("tags") or ())),
            ("command", shlex.join(["python", "run.py", *job["args"]]) if job.get("args")
             else None),
            ("environment", ", ".join(job.get("env") or {})), ("notes", job.get("notes"))]
    for k, v in rows:
        if v:
            print(f"  {k:16} {v}", file=out)


def cmd_status(args: argparse.Namespace) -> int:
    """``raas status JOB``: one job's state, run metadata and figures."""
    api = Api.from_env()
    job = api.json("GET", f"/api/v1/jobs/{urllib.parse.quote(args.job)}")
    print_summary(job)
    print_metadata(job)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``raas jobs`` and ``raas status`` to the ``raas`` parser."""
    p = sub.add_parser("jobs", help="list your runs: sort, filter and search them")
    p.add_argument("--sort", type=sort_key, metavar="COLUMN",
                   help=f"sort by {', '.join(SORT_KEYS)}; descending as --sort=-COLUMN "
                   "(default: --sort=-submitted)")
    p.add_argument("--state", help="only jobs in this state")
    p.add_argument("--tag", help="only jobs with this tag")
    p.add_argument("--node", help="only jobs on this node")
    p.add_argument("--owner", help="only this user's jobs (admins)")
    p.add_argument("-q", "--search", metavar="TEXT",
                   help="name or notes containing TEXT, or a job id starting with it")
    p.add_argument("--page", type=int, help="page number (1 = first)")
    p.add_argument("--limit", type=int, default=20, help="jobs per page (default 20)")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("status", help="one job: state, name, tags, arguments and figures")
    p.add_argument("job", help="job id or a unique prefix of it")
    p.set_defaults(func=cmd_status)
