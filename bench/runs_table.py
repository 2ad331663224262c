"""Runs-table benchmark: the API's page query (``dashboard.runs.runs_page``: one page of 50 and
the total count) on 10,000 jobs, per sort column and direction, on SQLite and PostgreSQL.

Fills a fresh database with ``--jobs`` jobs of ``--owners`` owners (85 % finished with the
summary's figures, the rest queued, running or failed early; up to three of ten tags; eight
nodes), then times, ``--repeat`` times each: every sort key both ways as an admin (all jobs), the
first and the last page, as one owner (their 1/``--owners`` share), and filtered by a tag plus a
search. A last row times the whole ``GET /api/v1/jobs?sort=-return`` request through Flask's
test client (query, count, queue positions, JSON). Goal (issue 14): p99 ≤ 50 ms per page.

Usage::

    .venv/bin/python bench/runs_table.py [--jobs 10000] [--repeat 100]
                                         [--database sqlite,postgresql|postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboard import runs  # noqa: E402
from dispatcher.models import Job, JobTag, Owner, database, init_db  # noqa: E402
from dispatch import start_postgres  # noqa: E402 - bench/dispatch.py's temporary cluster
from gym_raas_mqtt.protocol import JobState  # noqa: E402

TAGS = ("lqr", "energy", "pd", "mpc", "swingup", "hold", "v1", "v2", "sim", "real")
NODES = tuple(f"node-{i}" for i in range(8))


def fill(n_jobs: int, n_owners: int, seed: int = 14) -> None:
    """Insert the jobs in bulk (the queue's enqueue would take minutes for 10k; the rows are
    what its transitions write: metadata at enqueue, figures with the summary)."""
    rng = random.Random(seed)
    owners = [f"user{i}" for i in range(n_owners)]
    Owner.insert_many([{"name": o, "is_admin": i == 0} for i, o in enumerate(owners)]).execute()
    jobs, tags = [], []
    for i in range(n_jobs):
        t = 1.7e9 + i * 30
        kind = rng.random()
        row: dict[str, Any] = {
            "id": f"{i:016x}", "owner": owners[i % n_owners], "source_kind": "git",
            "source_url": "https://example.org/ctrl.git", "submitted_at": t,
            "name": f"swingup-{i % 97}-v{i % 7}", "notes": f"gain {rng.uniform(0, 3):.2f}",
            "node_id": rng.choice(NODES), "attempts": 1}
        if kind < 0.85:
            steps = rng.randint(50, 6000)
            row |= {"state": JobState.SUCCEEDED.value, "started_at": t + 5,
                    "finished_at": t + 5 + steps * 0.05, "total_return": -rng.uniform(0, 3000),
                    "seconds_upright": rng.uniform(0, 60), "steps": steps,
                    "episodes": rng.randint(1, 10), "duration_s": steps * 0.05,
                    "deadline_misses": rng.choice((0, 0, 0, 1, 2, 5))}
        else:
            row |= {"state": rng.choice((JobState.QUEUED, JobState.RUNNING,
                                         JobState.FAILED)).value, "node_id": None,
                    "attempts": 0}
        chosen = rng.sample(TAGS, rng.randint(0, 3))
        row["tags"] = chosen or None
        jobs.append(row)
        tags += [{"job": row["id"], "tag": tag} for tag in chosen]
    with database.atomic():
        for start in range(0, len(jobs), 500):
            Job.insert_many(jobs[start:start + 500]).execute()
        for start in range(0, len(tags), 500):
            JobTag.insert_many(tags[start:start + 500]).execute()
    if database.obj.__class__.__name__.startswith("Postgres"):
        database.execute_sql("VACUUM ANALYZE")  # what autovacuum does to a table this size


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """p50 and p99 [ms] of ``repeat`` calls (after two warm-up calls)."""
    fn()
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.99 * len(samples)))]


def api_request(url: str, workdir: Path) -> Callable[[], Any]:
    """A callable doing ``GET /api/v1/jobs?sort=-return`` as the admin through Flask."""
    from dashboard import accounts
    from dashboard.app import create_app
    from dashboard.config import DashboardConfig

    cfg = DashboardConfig(database_url=url, store_url=str(workdir / "store"), broker_url=None,
                          secure_cookies=False, git_check=False)
    app = create_app({"TESTING": True, "RAAS_CONFIG": cfg})
    with app.app_context(), database.connection_context():
        token = accounts.issue_token("user0", lifetime_s=3600)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}

    def call() -> None:
        r = client.get("/api/v1/jobs?sort=-return", headers=headers)
        assert r.status_code == 200 and len(r.get_json()["jobs"]) == 50

    return call


def database_url(kind: str, workdir: Path) -> tuple[str, Callable[[], Any] | None]:
    """A database to fill: a temp SQLite file, a temp PostgreSQL cluster, or the URL given; and
    how to stop what was started."""
    if kind == "postgresql":
        return start_postgres(workdir)
    return (f"sqlite:///{workdir / 'raas.db'}", None) if kind == "sqlite" else (kind, None)


def measure(kind: str, args: argparse.Namespace) -> list[tuple[str, float, float]]:
    """Fill a fresh ``kind`` database and time the page queries: ``(what, p50, p99)`` rows."""
    workdir = Path(tempfile.mkdtemp(prefix="raas-bench-runs-"))
    os.chmod(workdir, 0o755)  # the PostgreSQL cluster runs as nobody when we are root
    url, stop = database_url(kind, workdir)
    rows = []
    try:
        init_db(url)
        with database.connection_context():
            t0 = time.perf_counter()
            fill(args.jobs, args.owners)
            print(f"{kind}: {args.jobs} jobs inserted in {time.perf_counter() - t0:.1f} s")
            admin, user = Owner.get_by_id("user0"), Owner.get_by_id("user1")
            for key in runs.SORT_COLUMNS:
                for sort in ("-" + key, key):
                    first = runs.RunsQuery(sort=sort)
                    total = runs.runs_page(first, admin).total
                    last = runs.RunsQuery(sort=sort, offset=(total - 1) // 50 * 50)
                    rows.append((f"{sort}, all jobs, page 1",
                                 *timed(lambda: runs.runs_page(first, admin), args.repeat)))
                    rows.append((f"{sort}, all jobs, last page",
                                 *timed(lambda: runs.runs_page(last, admin), args.repeat)))
            one = runs.RunsQuery(sort="-return")
            rows.append(("-return, one owner's jobs, page 1",
                         *timed(lambda: runs.runs_page(one, user), args.repeat)))
            narrow = runs.RunsQuery(sort="-return", tag="lqr", q="swingup-1")
            rows.append(("-return, tag=lqr and q=swingup-1, page 1",
                         *timed(lambda: runs.runs_page(narrow, admin), args.repeat)))
        rows.append(("GET /api/v1/jobs?sort=-return (whole request)",
                     *timed(api_request(url, workdir), args.repeat)))
    finally:
        database.close()
        if stop:
            stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--owners", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=100)
    ap.add_argument("--database", default="sqlite,postgresql",
                    help="comma-separated: sqlite (temp file), postgresql (temp cluster) or a "
                    "postgresql:// URL")
    args = ap.parse_args()
    for kind in args.database.split(","):
        rows = measure(kind, args)
        label = "postgresql" if kind.startswith("postgresql") else kind
        print(f"| query ({label}, {args.jobs} jobs, 50 per page) | p50 ms | p99 ms |")
        print("|---|---:|---:|")
        for name, p50, p99 in rows:
            print(f"| {name} | {p50:.2f} | {p99:.2f} |")
        worst = max(rows, key=lambda r: r[2])
        print(f"{label}: worst p99 {worst[2]:.2f} ms ({worst[0]}); goal ≤ 50 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
