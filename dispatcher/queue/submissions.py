"""What users do to the queue: submit a job and cancel it (the dashboard's entry points)."""

from __future__ import annotations

import time
from typing import Any

from dispatcher import db
from dispatcher.errors import InvalidSubmission
from dispatcher.limits import QueueLimits
from dispatcher.models import Job, Owner
from dispatcher.queue import transitions as tr
from dispatcher.queue.reads import get_execution, get_job
from gym_raas_mqtt import protocol
from gym_raas_mqtt.protocol import JobSource, JobState
from raas_platform.submission import MetadataRejected, RunMetadata, check_metadata


def enqueue(owner: str, source: JobSource, time_limit_s: float | None = None, *,
            limits: QueueLimits, now: float | None = None, job_id: str | None = None,
            meta: RunMetadata | None = None) -> Job:
    """Submit a job: it enters the queue in state ``queued``.

    Args:
        owner: the submitting :class:`~dispatcher.models.Owner`'s name (must exist).
        source: where the code comes from (git URL + ref, or an uploaded archive key).
        time_limit_s: wall-clock limit of the run [s]; None = ``limits.default_time_limit_s``.
        limits: the queue's policy.
        now: submit time [s since the epoch]; None = the wall clock.
        job_id: the new job's id (default: a fresh random one).
        meta: the run's name, tags, notes, arguments and environment (checked again here).

    Returns:
        The created job.

    Raises:
        InvalidSubmission: unknown owner, time limit out of bounds, or invalid source or
            metadata.
    """
    limit = limits.time_limit(time_limit_s)
    if not isinstance(source, JobSource):
        raise InvalidSubmission(f"source must be a protocol.JobSource, got {type(source).__name__}")
    meta = meta or RunMetadata()
    try:
        protocol.check_id(owner, "owner")
        if job_id is not None:
            protocol.check_id(job_id, "job id")
        meta = check_metadata(meta.name, list(meta.tags), meta.notes, list(meta.args), meta.env)
    except (protocol.ProtocolError, MetadataRejected) as e:
        raise InvalidSubmission(str(e)) from e
    t = time.time() if now is None else now
    fields: dict[str, Any] = dict(
        owner=owner, source_kind=source.kind.value, source_url=source.url, source_ref=source.ref,
        archive_key=source.archive_key, time_limit_s=limit, submitted_at=t,
        max_attempts=limits.max_attempts, name=meta.name, tags=list(meta.tags) or None,
        notes=meta.notes, args=list(meta.args) or None, env=dict(meta.env) or None)
    if job_id is not None:
        fields["id"] = job_id
    with db.transaction():
        if Owner.get_or_none(Owner.name == owner) is None:
            raise InvalidSubmission(f"unknown owner {owner!r}")
        return tr.create_job(fields, owner, t)


def cancel(job_id: str, actor: str, *, limits: QueueLimits, reason: str | None = None,
           now: float | None = None) -> Job:
    """Cancel a job.

    A queued or assigned job ends ``canceled`` at once (an assigned execution's version is bumped,
    so the node's acceptance is rejected). A running job gets ``cancel_requested``: the dispatcher
    sends the node ``cancel_job``; the node ends it ``canceled``, or the queue does after
    ``limits.cancel_grace_s``. Canceling a finished job changes nothing.

    Args:
        actor: who cancels (owner name, admin name) — recorded in the job's events.
        limits: the queue's policy (``cancel_grace_s``).

    Returns:
        The job after the call.

    Raises:
        UnknownJob: no such job.
        TransitionError: another writer changed the job at the same moment.
    """
    t = time.time() if now is None else now
    why = reason or f"canceled by {actor}"
    with db.transaction():
        job = get_job(job_id)
        state = job.job_state
        if state == JobState.QUEUED:
            tr.cancel_queued(job_id, t, actor, why)
        elif state == JobState.ASSIGNED:
            tr.change("cancel", get_execution(job_id, job.attempts), JobState.CANCELED, t, actor,
                      why, ex_fields={"reason": why},
                      job_fields={"reason": why, "cancel_requested": True})
        elif state == JobState.RUNNING and not job.cancel_requested:
            ex = get_execution(job_id, job.attempts)
            grace_end = t + limits.cancel_grace_s
            tr.request_cancel(ex, t, actor, min(ex.deadline_at or grace_end, grace_end))
        return get_job(job_id)
