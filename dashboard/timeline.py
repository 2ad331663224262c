"""A job's story as the queue recorded it: its id from a unique prefix, its live facts and its
event timeline (queued, assigned, started, each requeue with its reason, finished).

The timeline is read from the queue's :class:`~dispatcher.models.JobEvent` rows (the one writer of
job state records one per transition); nothing here writes.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

from flask import abort
from peewee import fn

from dispatcher import queue
from dispatcher.models import Job, JobEvent, Node, Owner
from gym_raas_mqtt import protocol
from gym_raas_mqtt.errors import ProtocolError
from gym_raas_mqtt.protocol import JobState, NodeStatus

MIN_PREFIX = 4
"""Fewest characters of a job id that may name it (shorter ones would match too many jobs)."""
MAX_CANDIDATES = 10
"""Candidates listed when a prefix is ambiguous."""
RECENT_RUNS = 50
"""Finished runs whose durations estimate a queued job's wait."""
SERVING = (NodeStatus.IDLE.value, NodeStatus.BUSY.value, NodeStatus.RESETTING.value)
"""Node states that serve the queue (their count divides the wait)."""


def find_job(text: str, user: Owner) -> Job:
    """The job named ``text``: its full id, or a unique prefix of the id of one of ``user``'s
    jobs (any job's for an admin) of at least :data:`MIN_PREFIX` characters.

    Aborts with 404 (no such job), or 400 when the prefix is ambiguous, listing the candidates.
    Access to someone else's job (a full id) is the caller's check.
    """
    try:
        protocol.check_id(text, "job id")
    except ProtocolError:
        abort(404, description=f"no job {text[:80]!r}")
    job = Job.get_or_none(Job.id == text)
    if job is not None:
        return job
    if len(text) >= MIN_PREFIX:
        # substr, not LIKE: an id may hold "_", which LIKE reads as a wildcard
        q = Job.select(Job.id).where(fn.SUBSTR(Job.id, 1, len(text)) == text)
        if not user.is_admin:
            q = q.where(Job.owner == user.name)
        ids = [j.id for j in q.order_by(Job.id).limit(MAX_CANDIDATES + 1)]
        if len(ids) == 1:
            return Job.get_by_id(ids[0])
        if ids:
            more = ", ..." if len(ids) > MAX_CANDIDATES else ""
            abort(400, description=f"job id prefix {text!r} is ambiguous: it matches "
                                   f"{', '.join(ids[:MAX_CANDIDATES])}{more}; give more characters")
    abort(404, description=f"no job {text!r}")


def _kind(ev: JobEvent) -> str:
    """What an event means on the timeline."""
    to = JobState(ev.to_state)
    if ev.from_state is None:
        return "queued"
    if to is JobState.QUEUED:
        return "requeued"
    if to is JobState.ASSIGNED:
        return "assigned"
    if to is JobState.RUNNING:
        return "started" if ev.from_state != JobState.RUNNING.value else "cancel_requested"
    return "finished"


def job_timeline(job: Job) -> list[dict[str, Any]]:
    """The job's events, oldest first: ``[{at, kind, state, execution, actor, reason}]``.

    ``at`` is s since the epoch; ``kind`` is ``queued``, ``assigned``, ``started``,
    ``cancel_requested``, ``requeued`` (its reason is why the execution ended ``error``) or
    ``finished``; ``state`` is the state entered. The ``error`` that precedes a requeue is folded
    into it.
    """
    out: list[dict[str, Any]] = []
    for ev in queue.events(job.id):
        kind = _kind(ev)
        if kind == "requeued" and out and out[-1]["state"] == JobState.ERROR.value:
            out[-1].update(kind="requeued", state=ev.to_state, at=ev.at)
            continue
        out.append({"at": ev.at, "kind": kind, "state": ev.to_state, "execution": ev.execution,
                    "actor": ev.actor, "reason": ev.reason})
    return out


def estimated_wait_s(position: int | None) -> float | None:
    """A rough wait [s] for the job at queue ``position`` (1-based): the median duration of the
    last :data:`RECENT_RUNS` runs times the rounds of jobs ahead over the serving nodes; None
    without a position or any finished run."""
    if not position:
        return None
    rows = (Job.select(Job.started_at, Job.finished_at)
            .where(Job.started_at.is_null(False) & Job.finished_at.is_null(False))
            .order_by(Job.finished_at.desc()).limit(RECENT_RUNS))
    durations = [j.finished_at - j.started_at for j in rows if j.finished_at >= j.started_at]
    if not durations:
        return None
    nodes = Node.select().where(Node.state.in_(SERVING)).count() or 1
    return round(math.ceil(position / nodes) * statistics.median(durations), 0)


def live_facts(job: Job, live: dict[str, Any] | None, position: int | None = None,
               now: float | None = None) -> dict[str, Any]:
    """What the job page and ``raas submit --wait`` show while the job waits or runs (and keep
    once it ended).

    Args:
        job: the job.
        live: the hub's latest progress (``episode_id``, ``step``) or None.
        position: its queue position while queued (1-based).
        now: s since the epoch (default: the clock).

    Returns:
        ``{started_at, attempt, max_attempts, node_id, episode_id, step, elapsed_s,
        time_limit_s, estimated_wait_s}``; ``elapsed_s`` [s] runs from the start to now (or to
        the end); ``estimated_wait_s`` (:func:`estimated_wait_s`) only while queued.
    """
    now = time.time() if now is None else now
    end = job.finished_at or now
    queued = job.state == JobState.QUEUED.value
    return {"started_at": job.started_at, "attempt": job.attempts,
            "max_attempts": job.max_attempts, "node_id": job.node_id,
            "episode_id": (live or {}).get("episode_id"), "step": (live or {}).get("step"),
            "elapsed_s": round(max(0.0, end - job.started_at), 1)
            if job.started_at and not queued else None,
            "time_limit_s": job.time_limit_s,
            "estimated_wait_s": estimated_wait_s(position) if queued else None}
