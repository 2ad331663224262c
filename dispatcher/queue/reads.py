"""Reading jobs, executions and events, and turning them into the protocol's messages."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable

from dispatcher import db
from dispatcher.errors import UnknownJob
from dispatcher.models import Execution, Job, JobEvent, Owner
from gym_raas_mqtt import protocol
from gym_raas_mqtt.protocol import JobSource, JobState

ACTIVE = (JobState.ASSIGNED.value, JobState.RUNNING.value)


def get_job(job_id: str) -> Job:
    """The job ``job_id``.

    Raises:
        UnknownJob: there is none.
    """
    job = next(iter(Job.raw(db.sql('SELECT * FROM "job" WHERE "id" = ?'), job_id)), None)
    if job is None:
        raise UnknownJob(f"no job {job_id!r}")
    return job


def find_execution(job_id: str, number: int) -> Execution | None:
    """Execution ``number`` (1-based) of job ``job_id``, or None."""
    return next(iter(Execution.raw(db.sql('SELECT * FROM "execution" WHERE "job_id" = ? AND '
                                          '"number" = ?'), job_id, number)), None)


def get_execution(job_id: str, number: int) -> Execution:
    """Execution ``number`` (1-based) of job ``job_id``.

    Raises:
        UnknownJob: there is none.
    """
    ex = find_execution(job_id, number)
    if ex is None:
        raise UnknownJob(f"no execution {number} of job {job_id!r}")
    return ex


def active_executions() -> list[Execution]:
    """Every assigned or running execution (what the dispatcher reconciles on start)."""
    return list(Execution.select().where(Execution.state.in_(ACTIVE)).order_by(Execution.id))


def executions_on(node_id: str) -> list[Execution]:
    """The assigned or running executions held by ``node_id`` (at most one in practice)."""
    return list(Execution.select().where((Execution.node_id == node_id)
                                         & Execution.state.in_(ACTIVE)))


def current_execution(job: Job) -> Execution | None:
    """The job's latest execution, or None before the first assignment."""
    if job.attempts == 0:
        return None
    return Execution.get_or_none((Execution.job == job.id) & (Execution.number == job.attempts))


def job_source(job: Job) -> JobSource:
    """The job's code source as the protocol message."""
    return JobSource(kind=protocol.SourceKind(job.source_kind), url=job.source_url,
                     ref=job.source_ref, archive_key=job.archive_key)


def job_status(job: Job, ts: float | None = None) -> protocol.JobStatus:
    """The retained :class:`~gym_raas_mqtt.protocol.JobStatus` for ``job`` (``ts`` [s since the
    epoch], default now)."""
    return protocol.JobStatus(job_id=job.id, owner=job.owner_id, state=job.job_state,
                              ts=time.time() if ts is None else ts, execution=job.attempts,
                              node_id=job.node_id, reason=job.reason, result_key=job.result_key)


def assignment(job: Job, ex: Execution, ts: float | None = None) -> protocol.JobAssignment:
    """The retained :class:`~gym_raas_mqtt.protocol.JobAssignment` for execution ``ex``.

    ``version`` is the execution's current version: the ``expected_version`` of the node's next
    update.
    """
    return protocol.JobAssignment(job_id=job.id, owner=job.owner_id, execution=ex.number,
                                  version=ex.version, source=job_source(job),
                                  time_limit_s=job.time_limit_s,
                                  ts=time.time() if ts is None else ts, name=job.name,
                                  tags=tuple(job.tags or ()), args=tuple(job.args or ()),
                                  env=dict(job.env or {}))


def events(job_id: str) -> list[JobEvent]:
    """The job's events, oldest first."""
    return list(JobEvent.select().where(JobEvent.job == job_id).order_by(JobEvent.id))


def last_event_id() -> int:
    """The newest event's id (0 when there is none)."""
    return db.scalar('SELECT MAX("id") FROM "jobevent"') or 0


def events_by_others(after_id: int) -> list[JobEvent]:
    """Events newer than ``after_id`` written by other processes (the dashboard's enqueue and
    cancel): not by the dispatcher (actor ``dispatcher:*``) nor for a node (``node:*``)."""
    return list(JobEvent.raw(db.sql(
        'SELECT "id", "job_id" FROM "jobevent" WHERE "id" > ? AND "actor" NOT LIKE ? '
        'AND "actor" NOT LIKE ? ORDER BY "id"'), after_id, "dispatcher:%", "node:%"))


def iter_jobs(ids: Iterable[str]) -> list[Job]:
    """Jobs with the given ids (any order)."""
    ids = list(ids)
    return list(Job.select().where(Job.id.in_(ids))) if ids else []


def recent_jobs(since: float) -> list[Job]:
    """Jobs still queued or active, and those finished at or after ``since`` [s since the
    epoch]."""
    return list(Job.select().where(Job.state.in_([JobState.QUEUED.value, *ACTIVE])
                                   | (Job.finished_at > since)))


@dataclass(frozen=True)
class Requeued:
    """A queued job whose last execution ended ``error`` (it waits to be tried again).

    Attributes:
        job_id, owner: the job.
        reason: the job's reason now.
        node_id: where that execution ran.
        error: why it ended ``error``.
    """

    job_id: str
    owner: str
    reason: str | None
    node_id: str
    error: str | None


def requeued_jobs() -> list[Requeued]:
    """Every queued job that was requeued after an ``error`` (oldest submission first)."""
    rows = db.execute(
        'SELECT j."id", j."owner_id", j."reason", e."node_id", e."reason" FROM "job" j '
        'JOIN "execution" e ON e."job_id" = j."id" AND e."number" = j."attempts" '
        'WHERE j."state" = ? AND j."attempts" > 0 ORDER BY j."submitted_at", j."id"',
        JobState.QUEUED.value).fetchall()
    return [Requeued(*row) for row in rows]


def ensure_owner(name: str, max_running: int = 1) -> Owner:
    """Create owner ``name`` if missing (used by tests, benchmarks and the seed command).

    Raises:
        ProtocolError: ``name`` is not a valid id.
    """
    protocol.check_id(name, "owner")
    owner, _ = Owner.get_or_create(name=name, defaults={"max_running": max_running})
    return owner
