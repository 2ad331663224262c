"""What nodes and time do to job executions: acceptance, results, platform faults, deadlines."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping

from dispatcher import db
from dispatcher.errors import TransitionError
from dispatcher.limits import QueueLimits
from dispatcher.models import Execution
from dispatcher.queue import transitions as tr
from dispatcher.queue.reads import executions_on, find_execution, get_execution, get_job
from gym_raas_mqtt import protocol
from gym_raas_mqtt.protocol import JobState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpdateOutcome:
    """The answer to a node's :class:`~gym_raas_mqtt.protocol.JobUpdate`.

    Attributes:
        accepted: whether the update is (or already was) applied.
        version: the execution's current version (the next ``expected_version``).
        reason: why it was rejected (None when accepted).
        changed: False for an idempotent duplicate or a rejection (nothing was written).
    """

    accepted: bool
    version: int
    reason: str | None = None
    changed: bool = False


@dataclass(frozen=True)
class Expired:
    """An execution ended by :func:`expire_leases` or :func:`node_lost`."""

    job_id: str
    execution: int
    node_id: str
    state: JobState  # the execution's new state
    job_state: JobState  # the job's new state (queued when requeued)


def _now(now: float | None) -> float:
    return time.time() if now is None else now


# ------------------------------------------------------------------ in a caller's transaction
def _start(ex: Execution, t: float, actor: str, version: int | None, limits: QueueLimits) -> None:
    job = get_job(ex.job_id)
    tr.change("start", ex, tr.R, t, actor, f"running on {ex.node_id}", version=version,
              ex_fields={"started_at": t,
                         "deadline_at": t + job.time_limit_s + limits.time_limit_grace_s},
              job_fields={"started_at": job.started_at or t})


def _finish(ex: Execution, status: JobState, details: Mapping[str, Any] | None, t: float,
            actor: str, version: int | None) -> None:
    res = tr.result_fields(details)
    name = "finish" if JobState(ex.state) == tr.R else "fail"
    tr.change(name, ex, status, t, actor, res.get("reason") or f"{status.value} on {ex.node_id}",
              version=version, ex_fields={"reason": res.get("reason")}, job_fields=res)


def _error(ex: Execution, reason: str, t: float, actor: str, version: int | None) -> JobState:
    job = get_job(ex.job_id)
    job_to = tr.Q if job.attempts < job.max_attempts else tr.E
    why = reason if job_to == tr.Q else f"{reason}; gave up after {job.attempts} attempt(s)"
    # a requeued job's reason says why; the dispatcher adds where it waits (dispatcher.waits)
    job_reason = requeue_reason(ex.node_id, reason) if job_to == tr.Q else why
    return tr.change("error", ex, tr.E, t, actor, why, job_to=job_to, version=version,
                     ex_fields={"reason": reason}, job_fields={"reason": job_reason})


def requeue_reason(node_id: str, reason: str | None) -> str:
    """The reason of a job requeued after its execution on ``node_id`` ended ``error``."""
    return f"requeued after an error on {node_id} ({(reason or 'no reason given')[:300]})"


# ------------------------------------------------------------------ public, one transaction each
def start(job_id: str, number: int, *, limits: QueueLimits, version: int | None = None,
          actor: str = "node", now: float | None = None) -> Execution:
    """The node accepted execution ``number``: ``assigned`` → ``running``.

    The execution's deadline becomes ``now + time_limit_s + limits.time_limit_grace_s``.

    Raises:
        UnknownJob, TransitionError, StaleVersion.
    """
    t = _now(now)
    with db.transaction():
        ex = get_execution(job_id, number)
        _start(ex, t, actor, version, limits)
        return ex


def finish(job_id: str, number: int, status: JobState, details: Mapping[str, Any] | None = None,
           *, version: int | None = None, actor: str = "node", now: float | None = None
           ) -> Execution:
    """End running execution ``number`` as succeeded | failed | timed_out | canceled.

    ``failed`` is also accepted from ``assigned`` (user's fault before it ran, e.g. a bad ref).

    Args:
        details: ``{reason, commit_sha, result_key, summary}`` as sent by the node (all optional).

    Raises:
        UnknownJob, TransitionError, StaleVersion.
    """
    t = _now(now)
    with db.transaction():
        ex = get_execution(job_id, number)
        _finish(ex, JobState(status), details, t, actor, version)
        return ex


def fail(job_id: str, number: int, reason: str, *, version: int | None = None,
         actor: str = "node", now: float | None = None) -> Execution:
    """End execution ``number`` ``failed`` (the user's code is at fault)."""
    return finish(job_id, number, tr.F, {"reason": reason}, version=version, actor=actor, now=now)


def error_and_requeue(job_id: str, number: int, reason: str, *, version: int | None = None,
                      actor: str = "dispatcher:error", now: float | None = None) -> JobState:
    """A platform fault ended execution ``number``: it becomes ``error``; the job goes back to
    ``queued`` (keeping its submit time) or, after ``max_attempts`` executions, ends ``error``.

    Returns:
        The job's new state (``queued`` or ``error``).

    Raises:
        UnknownJob, TransitionError, StaleVersion.
    """
    t = _now(now)
    with db.transaction():
        return _error(get_execution(job_id, number), reason, t, actor, version)


def apply_update(node_id: str, update: protocol.JobUpdate, *, limits: QueueLimits,
                 now: float | None = None) -> UpdateOutcome:
    """Apply a node's :class:`~gym_raas_mqtt.protocol.JobUpdate` (see docs/job-lifecycle.md).

    * running (from assigned) → :func:`start`; succeeded | failed | timed_out | canceled →
      :func:`finish`; error → :func:`error_and_requeue`.
    * ``expected_version`` must equal the execution's version, else rejected (stale).
    * An update restating the execution's current state with an older version is a duplicate:
      accepted again with the current version, nothing written (missing result details of a
      terminal execution are filled in, e.g. a node reporting ``timed_out`` after the dispatcher
      already expired it).
    * Updates for another node's execution, or after a terminal state, are rejected.
    """
    t = _now(now)
    seen = [0]  # the version read, for the answer when the change is refused
    try:
        with db.transaction():  # a TransitionError leaves the block: everything is rolled back
            return _apply(node_id, update, JobState(update.status), t, limits, seen)
    except TransitionError as e:
        return UpdateOutcome(False, seen[0], str(e))


def _apply(node_id: str, update: protocol.JobUpdate, status: JobState, t: float,
           limits: QueueLimits, seen: list[int]) -> UpdateOutcome:
    ex = find_execution(update.job_id, update.execution)
    if ex is None:
        return UpdateOutcome(False, 0, f"no execution {update.execution} of job {update.job_id}")
    seen[0] = ex.version
    if ex.node_id != node_id:
        return UpdateOutcome(False, ex.version, f"execution {ex.number} of job {ex.job_id} is "
                                                f"assigned to another node")
    cur = JobState(ex.state)
    if status == cur and update.expected_version < ex.version:
        if cur.terminal and cur != tr.E:
            _fill_missing_results(ex, update.details)
        return UpdateOutcome(True, ex.version, None, changed=False)
    if cur.terminal:
        return UpdateOutcome(False, ex.version, f"execution already {cur.value}")
    if update.expected_version != ex.version:
        return UpdateOutcome(False, ex.version, f"stale version {update.expected_version}, "
                                                f"current is {ex.version}")
    actor = f"node:{node_id}"
    if status == tr.R:
        _start(ex, t, actor, ex.version, limits)
    elif status == tr.E:
        reason = tr.result_fields(update.details).get("reason") or "node reported error"
        _error(ex, reason, t, actor, ex.version)
    elif status in (tr.S, tr.F, tr.T, tr.C):
        _finish(ex, status, update.details, t, actor, ex.version)
    else:
        return UpdateOutcome(False, ex.version, f"a node cannot set {status.value}")
    return UpdateOutcome(True, ex.version, None, changed=True)


def _fill_missing_results(ex: Execution, details: Mapping[str, Any] | None) -> None:
    res = {k: v for k, v in tr.result_fields(details).items()
           if k in ("commit_sha", "result_key", "summary")}
    if not res:
        return
    job = get_job(ex.job_id)
    if job.attempts == ex.number:
        tr.fill_results(ex.job_id, {k: v for k, v in res.items() if getattr(job, k) is None})


def expire_leases(now: float | None = None, *, limits: QueueLimits) -> list[Expired]:
    """End executions past their deadline.

    * assigned, not accepted by ``deadline_at`` → ``error`` (job requeued or ``error``);
    * running past time limit + grace → ``timed_out`` (``canceled`` if a cancel was requested).

    Returns:
        One :class:`Expired` per ended execution (the caller tells the node to stop).
    """
    t = _now(now)
    out: list[Expired] = []
    due = [row[0] for row in db.execute(
        'SELECT "id" FROM "execution" WHERE "state" IN (?, ?) AND "deadline_at" < ?',
        tr.A.value, tr.R.value, t).fetchall()]
    for ex_id in due:
        try:
            with db.transaction():
                ex = Execution.get_by_id(ex_id)
                if ex.deadline_at is None or ex.deadline_at >= t:
                    continue
                if ex.state == tr.A.value:
                    why = f"not accepted by {ex.node_id} within {limits.accept_timeout_s:g} s"
                    job_to = _error(ex, why, t, "dispatcher:expire", None)
                    out.append(Expired(ex.job_id, ex.number, ex.node_id, tr.E, job_to))
                elif ex.state == tr.R.value:
                    job = get_job(ex.job_id)
                    to = tr.C if job.cancel_requested else tr.T
                    why = ("canceled; the node did not confirm" if to == tr.C else
                           f"time limit of {job.time_limit_s:g} s exceeded")
                    tr.change("expire", ex, to, t, "dispatcher:expire", why,
                              ex_fields={"reason": why}, job_fields={"reason": why})
                    out.append(Expired(ex.job_id, ex.number, ex.node_id, to, to))
        except TransitionError as e:  # changed under us (node update, cancel): fine
            log.info("expire: %s", e)
    return out


def note_wait(job_id: str, reason: str) -> bool:
    """Set a queued job's reason to say where it waits (no state change, no event); returns
    whether it changed."""
    with db.transaction():
        return tr.set_wait_reason(job_id, reason)


def extend_accept_deadlines(now: float | None = None, *, limits: QueueLimits) -> int:
    """Give every assigned execution at least ``limits.accept_timeout_s`` from ``now`` to be
    accepted (the dispatcher calls it on reconnecting: nodes could not reach it meanwhile).

    Returns:
        The number of executions whose deadline moved. No state changes, no events.
    """
    t = _now(now)
    with db.transaction():
        return tr.move_accept_deadlines(t, limits.accept_timeout_s)


def node_lost(node_id: str, reason: str, *, now: float | None = None) -> list[Expired]:
    """End every active execution on ``node_id`` as ``error`` (the jobs are requeued)."""
    t = _now(now)
    out = []
    for ex in executions_on(node_id):
        try:
            with db.transaction():
                job_to = _error(ex, reason, t, "dispatcher:node-lost", None)
            out.append(Expired(ex.job_id, ex.number, node_id, tr.E, job_to))
        except TransitionError as e:
            log.info("node_lost: %s", e)
    return out
