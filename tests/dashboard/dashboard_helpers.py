"""Shared helpers for dashboard tests: configs, users, CSRF-aware login, driving a job through
the real queue to a real result bundle."""

from __future__ import annotations

import dataclasses
import io
import re
import tarfile
from pathlib import Path
from typing import Any

from dashboard.config import DashboardConfig

from dispatcher import queue
from dispatcher.limits import QueueLimits
from dispatcher.models import database
from gym_raas_mqtt.protocol import JobSource, JobState, SourceKind
from fleet_node.bundle import build_bundle, upload_bundle
from raas_platform.storage import open_store
from raas_platform.submission import RunMetadata


QUEUE_LIMITS = QueueLimits()  # the queue's default policy, as a dashboard builds it at start-up


def tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_telemetry_csv(path: Any, n: int = 60) -> None:
    import math

    rows = ["episode_id,seq,t,theta,theta_dot,u_desired,u_applied,reward,deadline_miss"]
    for i in range(n):
        th = math.pi * (1 - i / n)
        rows.append(f"1,{i},{i * 0.05:.2f},{th:.4f},{-0.5:.3f},1.0,1.0,{-(th * th):.4f},0")
    path.write_text("\n".join(rows) + "\n")


def run_job_to_end(job_id: str, store_url: str, tmp: Any, node: str = "node-a",
                   state: JobState = JobState.SUCCEEDED,
                   telemetry: Path | None = None) -> dict[str, Any]:
    """Assign, start and finish ``job_id`` through dispatcher.queue with a real result bundle
    (its telemetry.csv: ``telemetry``, else :func:`write_telemetry_csv`'s 60 rows)."""
    tel = telemetry or tmp / f"{job_id}.csv"
    if telemetry is None:
        write_telemetry_csv(tel)
    out = tmp / f"bundle-{job_id}"
    log = tmp / f"{job_id}.log"
    log.write_text("episode 1 return -12.3\n")
    summary = build_bundle(out, telemetry_path=tel, stdout_path=log, plot=True, job_id=job_id,
                           owner="x", node_id=node, state=state.value, reason=None,
                           commit_sha="c0ffee" * 6 + "abcd", image_digest="sha256:" + "ab" * 32,
                           calibration_id="cal-2026-01", duration_s=3.0)
    prefix = upload_bundle(open_store(store_url), job_id, out)
    with database.connection_context():
        queue.assign(job_id, node, limits=QUEUE_LIMITS)
        queue.start(job_id, 1, limits=QUEUE_LIMITS)
        queue.finish(job_id, 1, state, {"result_key": prefix, "summary": summary,
                                        "commit_sha": summary["commit_sha"]})
    return summary


def make_run(owner: str, name: str | None, tags: tuple[str, ...] = (), notes: str | None = None,
             figures: dict[str, Any] | None = None, node: str = "node-a",
             state: JobState = JobState.SUCCEEDED, t: float = 1000.0) -> str:
    """A job through the real queue; with ``figures`` it ends with that summary."""
    with database.connection_context():
        source = JobSource(SourceKind.GIT, url="https://example.org/me/ctrl.git")
        job = queue.enqueue(owner, source, 30.0, limits=QUEUE_LIMITS, now=t,
                            meta=RunMetadata(name=name, tags=tags, notes=notes))
        if figures is not None:
            queue.assign(job.id, node, limits=QUEUE_LIMITS, now=t + 1)
            queue.start(job.id, 1, limits=QUEUE_LIMITS, now=t + 2)
            queue.finish(job.id, 1, state, {"summary": figures}, now=t + 3)
    return job.id


def figures(ret: float, upright: float, steps: int, episodes: int = 1, duration: float = 10.0,
            misses: int = 0) -> dict[str, Any]:
    """A result summary with just the runs table's figures."""
    return {"return": ret, "seconds_upright": upright, "steps": steps, "episodes": episodes,
            "duration_s": duration, "deadline_misses": misses, "per_episode": []}


PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_config(tmp: Path, **changes: Any) -> DashboardConfig:
    """A config on files under ``tmp``; no broker unless ``broker_url`` is given."""
    # git_check off: these tests submit made-up https URLs and no test may need the network;
    # tests/security/test_submission_*.py exercise the default (on) against real repositories
    base = DashboardConfig(database_url=f"sqlite:///{tmp / 'raas.db'}",
                           store_url=str(tmp / "store"), broker_url=None,
                           secure_cookies=False, sse_keepalive_s=0.5, git_check=False)
    return dataclasses.replace(base, **changes)


@dataclasses.dataclass
class User:
    name: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_user(app: Any, name: str, admin: bool = False) -> User:
    """Create a user with a password and an API token in ``app``'s database."""
    from dashboard import accounts

    with app.app_context(), database.connection_context():
        accounts.create_user(name, PASSWORD, admin=admin, max_running=2)
        token = accounts.issue_token(name, lifetime_s=app.extensions["raas_config"]
                                     .token_lifetime_s)
    return User(name, PASSWORD, token)


def csrf_from(html: str) -> str:
    m = CSRF_RE.search(html)
    assert m, "page has no CSRF token"
    return m.group(1)


def login(client: Any, user: User) -> None:
    """Log ``client`` in through the real form (CSRF token included)."""
    token = csrf_from(client.get("/login").get_data(as_text=True))
    resp = client.post("/login", data={"username": user.name, "password": user.password,
                                       "csrf_token": token})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
