"""Read-side helpers shared by pages and the API: access checks, job views, result files."""

from __future__ import annotations

import threading
from typing import Any

from flask import abort, current_app, g

from dashboard.hub import Hub
from dashboard.timeline import find_job, live_facts
from dispatcher import queue
from dispatcher.models import Job, Owner
from dispatcher.queue import SUMMARY_COLUMNS
from gym_raas_mqtt.protocol import JobState
from gym_raas_mqtt.results import result_prefix as bundle_prefix
from raas_platform.storage import ObjectNotFound, ObjectStore, StorageError, open_store

RESULT_FILES = ("summary.json", "telemetry.csv", "stdout.log", "plot.png")
CONTENT_TYPES = {"summary.json": "application/json", "telemetry.csv": "text/csv",
                 "stdout.log": "text/plain; charset=utf-8", "plot.png": "image/png",
                 "sim_vs_real.json": "application/json", "sim_vs_real.png": "image/png",
                 "manifest.json": "application/json"}
_store_lock = threading.Lock()


def store() -> ObjectStore:
    """The app's object store (opened on first use)."""
    ext = current_app.extensions
    if "raas_store" not in ext:
        with _store_lock:
            if "raas_store" not in ext:
                ext["raas_store"] = open_store(ext["raas_config"].store_url)
    return ext["raas_store"]


def hub() -> Hub:
    """The app's live-update :class:`~dashboard.hub.Hub`."""
    return current_app.extensions["raas_hub"]


def user() -> Owner:
    """The logged-in user (the caller has checked there is one)."""
    return g.user


def load_job(job_id: str) -> Job:
    """The job (by id or unique id prefix, :func:`dashboard.timeline.find_job`) if the current
    user may see it; 404 unknown, 400 ambiguous prefix, 403 someone else's (not admin)."""
    job = find_job(job_id, g.user)
    if job.owner_id != g.user.name and not g.user.is_admin:
        abort(403, description="this job belongs to another user")
    return job


def queue_position(job: Job) -> int | None:
    """1-based position among queued jobs (None unless queued)."""
    if job.state != JobState.QUEUED.value:
        return None
    return queue.queue_position(job.id)


def queue_positions() -> dict[str, int]:
    """Positions of every queued job in one query (for lists)."""
    return queue.queue_positions()


def job_views(rows: list[Job]) -> list[dict[str, Any]]:
    """:func:`job_view` of each job in a list; the fair queue is played out (for the queue
    positions) only when one of them is queued."""
    queued = any(j.state == JobState.QUEUED.value for j in rows)
    positions = queue_positions() if queued else {}
    return [job_view(j, positions=positions) for j in rows]


def job_view(job: Job, *, detail: bool = False,
             positions: dict[str, int] | None = None) -> dict[str, Any]:
    """A job as JSON-ready data (the API schema ``Job``); ``positions`` from
    :func:`queue_positions` saves a query per job in lists."""
    out: dict[str, Any] = {
        "id": job.id, "owner": job.owner_id, "state": job.state,
        "source": {"kind": job.source_kind, "url": job.source_url, "ref": job.source_ref,
                   "archive_key": job.archive_key},
        "time_limit_s": job.time_limit_s, "submitted_at": job.submitted_at,
        "started_at": job.started_at, "finished_at": job.finished_at,
        "node_id": job.node_id, "attempts": job.attempts, "commit_sha": job.commit_sha,
        "reason": job.reason, "cancel_requested": job.cancel_requested,
        "queue_position": (positions.get(job.id) if positions is not None
                           else queue_position(job)),
        "terminal": JobState(job.state).terminal,
        "name": job.name, "tags": job.tags or [], "notes": job.notes, "args": job.args or [],
        "env": job.env or {},
        **{key: getattr(job, column) for key, (column, _) in SUMMARY_COLUMNS.items()},
    }
    if detail:
        out["summary"] = job.summary
        out["live"] = hub().live_progress(job.id)
        out["facts"] = live_facts(job, out["live"], out["queue_position"])
    return out


def result_prefix(job: Job) -> str:
    """The object-store prefix of the job's result bundle, ending in ``/``."""
    key = job.result_key or bundle_prefix(job.id)
    return key if key.endswith("/") else key + "/"


def result_files(job: Job) -> list[dict[str, Any]]:
    """The files of the job's result bundle: ``[{name, size}]`` (empty before results exist)."""
    s = store()
    prefix = result_prefix(job)
    out = []
    for key in s.list(prefix):
        name = key[len(prefix):]
        if "/" in name:
            continue
        out.append({"name": name, "size": s.size(key)})
    return out


def result_bytes(job: Job, name: str) -> tuple[bytes, str]:
    """The content and content type of one bundle file; 404 if it is not there."""
    if "/" in name or name.startswith(".") or len(name) > 128:
        abort(404, description=f"no result file {name[:80]!r}")
    try:
        data = store().get_bytes(result_prefix(job) + name)
    except (ObjectNotFound, StorageError):
        abort(404, description=f"job {job.id} has no result file {name!r} (yet)")
    return data, CONTENT_TYPES.get(name, "application/octet-stream")

