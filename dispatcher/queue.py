"""Job and job-execution state: the only code that changes it, through named, checked transitions.

Every transition is checked against :data:`TRANSITIONS`, done as ``UPDATE ... WHERE state =
<expected>`` with a row-count check (a concurrent writer makes it fail, never silently overwrite),
and writes a :class:`~dispatcher.models.JobEvent` in the same transaction. The same code runs on
SQLite (WAL; write transactions are ``BEGIN IMMEDIATE`` so two processes never deadlock on a lock
upgrade) and PostgreSQL.

Job states (``protocol.JobState``; diagram and the node's side in docs/job-lifecycle.md)::

    queued -assign-> assigned -start-> running -finish-> succeeded | failed | timed_out | canceled
    queued | assigned -cancel-> canceled         assigned | running -fail-> failed
    running -expire-> timed_out | canceled       assigned | running -error-> queued | error

A job's state mirrors its current execution's, except after ``error``: the execution ends
``error`` and the job goes back to ``queued`` (same submit time, so it keeps its place) until
``max_attempts`` executions have been made. Execution versions start at 1 and are bumped by every
change; a node's update must quote the current version (``expected_version``).

Event actors: ``dispatcher:<why>`` and ``node:<id>`` for the dispatcher's own writes (a colon
never occurs in an owner name), the owner's or admin's name for ``enqueue``/``cancel``.

Fair queue: FIFO by submit time, at most ``Owner.max_running`` assigned+running jobs per owner
(0 suspends an owner). The public API used by the dashboard is :func:`enqueue`, :func:`cancel`,
:func:`queue_position` and :func:`queue_positions`; their signatures are stable.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from peewee import SqliteDatabase

from dispatcher.models import Execution, Job, JobEvent, Owner, database
from dispatcher import positions as _positions
from dispatcher.errors import InvalidSubmission, QueueError, StaleVersion, TransitionError, UnknownJob  # noqa: F401
from dispatcher.limits import QueueLimits
from gym_raas_mqtt import protocol
from gym_raas_mqtt.protocol import JobState, JobSource

log = logging.getLogger(__name__)

Q, A, R = JobState.QUEUED, JobState.ASSIGNED, JobState.RUNNING
S, F, T, C, E = (JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELED,
                 JobState.ERROR)
ACTIVE_STATES = frozenset({A, R})
"""States in which a job holds a node (and counts against its owner's ``max_running``)."""

TRANSITIONS: Mapping[str, tuple[frozenset[JobState], frozenset[JobState]]] = {
    # name: (allowed source states, allowed target states) of the job's current execution
    "enqueue": (frozenset(), frozenset({Q})),
    "assign": (frozenset({Q}), frozenset({A})),
    "start": (frozenset({A}), frozenset({R})),
    "finish": (frozenset({R}), frozenset({S, F, T, C})),
    "fail": (frozenset({A, R}), frozenset({F})),  # user's fault, possibly before it ran (bad ref)
    "cancel": (frozenset({Q, A}), frozenset({C})),  # running: cancel is requested from the node
    "error": (frozenset({A, R}), frozenset({E})),  # platform fault: job requeued or ends `error`
    "expire": (frozenset({R}), frozenset({T, C})),  # time limit or unconfirmed cancel
}
"""Every state change the platform makes. Anything else raises :class:`TransitionError`."""


def default_limits() -> QueueLimits:
    """Limits from the ``RAAS_*`` environment (what the dispatcher itself uses)."""
    from gym_raas_mqtt.config import load

    return load(QueueLimits)


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


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def allowed(name: str, from_state: JobState | None, to_state: JobState) -> bool:
    """Whether transition ``name`` may move an execution from ``from_state`` to ``to_state``."""
    sources, targets = TRANSITIONS[name]
    ok_from = (from_state is None and not sources) or from_state in sources
    return bool(ok_from) and to_state in targets


def _require(name: str, from_state: JobState | None, to_state: JobState, what: str) -> None:
    if not allowed(name, from_state, to_state):
        src = from_state.value if from_state else "nothing"
        raise TransitionError(f"{name}: {what} is {src}; {name} cannot make it {to_state.value}")


def _tx() -> Any:
    """A write transaction: ``BEGIN IMMEDIATE`` on SQLite, ``BEGIN`` on PostgreSQL."""
    if isinstance(database.obj, SqliteDatabase):
        return database.atomic("IMMEDIATE")
    return database.atomic()


def _now(now: float | None) -> float:
    return time.time() if now is None else now


# Hot paths use plain SQL (same text for SQLite and PostgreSQL, ``?`` turned into the driver's
# placeholder once and cached): building a peewee query costs ~0.4 ms of Python, more than
# SQLite takes to run it, and the dispatcher runs several per job.
_SQL_CACHE: dict[tuple[str, str], str] = {}


def _sql(text: str) -> str:
    key = (database.param, text)
    out = _SQL_CACHE.get(key)
    if out is None:
        out = _SQL_CACHE[key] = text if key[0] == "?" else text.replace("?", key[0])
    return out


def _exec(text: str, *params: Any) -> Any:
    return database.execute_sql(_sql(text), params)


def _update(table: str, fields: Mapping[str, Any], where: str, *params: Any) -> int:
    """``UPDATE table SET fields WHERE where``; returns the row count."""
    sets = ", ".join(f'"{c}" = ?' for c in fields)
    return _exec(f'UPDATE "{table}" SET {sets} WHERE {where}', *fields.values(), *params).rowcount


def _event(job_id: str, execution: int | None, from_state: JobState | None, to_state: JobState,
           actor: str, reason: str | None, at: float) -> None:
    _exec('INSERT INTO "jobevent" ("job_id", "execution", "from_state", "to_state", "at", '
          '"actor", "reason") VALUES (?, ?, ?, ?, ?, ?, ?)', job_id, execution,
          from_state.value if from_state else None, to_state.value, at, actor[:64], reason)


def get_job(job_id: str) -> Job:
    """The job ``job_id``.

    Raises:
        UnknownJob: there is none.
    """
    job = next(iter(Job.raw(_sql('SELECT * FROM "job" WHERE "id" = ?'), job_id)), None)
    if job is None:
        raise UnknownJob(f"no job {job_id!r}")
    return job


def get_execution(job_id: str, number: int) -> Execution:
    """Execution ``number`` (1-based) of job ``job_id``.

    Raises:
        UnknownJob: there is none.
    """
    ex = _find_execution(job_id, number)
    if ex is None:
        raise UnknownJob(f"no execution {number} of job {job_id!r}")
    return ex


def _find_execution(job_id: str, number: int) -> Execution | None:
    return next(iter(Execution.raw(_sql('SELECT * FROM "execution" WHERE "job_id" = ? AND '
                                        '"number" = ?'), job_id, number)), None)


def check_time_limit(time_limit_s: float | None, limits: QueueLimits) -> float:
    """See :meth:`QueueLimits.time_limit`."""
    return limits.time_limit(time_limit_s)


# ------------------------------------------------------------------------------------------------
# transitions
# ------------------------------------------------------------------------------------------------
def enqueue(owner: str, source: JobSource, time_limit_s: float | None = None, *,
            limits: QueueLimits | None = None, now: float | None = None,
            job_id: str | None = None) -> Job:
    """Submit a job: it enters the queue in state ``queued`` (stable API, used by the dashboard).

    Args:
        owner: the submitting :class:`~dispatcher.models.Owner`'s name (must exist).
        source: where the code comes from (git URL + ref, or an uploaded archive key).
        time_limit_s: wall-clock limit of the run [s]; None = ``limits.default_time_limit_s``.
        limits: bounds to apply; None = from the ``RAAS_*`` environment (:func:`default_limits`).
        now: submit time [s since the epoch]; None = the wall clock.
        job_id: the new job's id (default: a fresh random one).

    Returns:
        The created job.

    Raises:
        InvalidSubmission: unknown owner, time limit out of bounds, or invalid source.
    """
    limits = limits or default_limits()
    limit = check_time_limit(time_limit_s, limits)
    if not isinstance(source, JobSource):
        raise InvalidSubmission(f"source must be a protocol.JobSource, got {type(source).__name__}")
    try:
        protocol.check_id(owner, "owner")
        if job_id is not None:
            protocol.check_id(job_id, "job id")
    except protocol.ProtocolError as e:
        raise InvalidSubmission(str(e)) from e
    t = _now(now)
    with _tx():
        if Owner.get_or_none(Owner.name == owner) is None:
            raise InvalidSubmission(f"unknown owner {owner!r}")
        fields: dict[str, Any] = dict(
            owner=owner, state=Q.value, source_kind=source.kind.value, source_url=source.url,
            source_ref=source.ref, archive_key=source.archive_key, time_limit_s=limit,
            submitted_at=t, max_attempts=limits.max_attempts)
        if job_id is not None:
            fields["id"] = job_id
        job = Job.create(**fields)
        _event(job.id, None, None, Q, owner, "submitted", t)
    return job


def next_job(node_id: str | None = None, *, avoid_repeat: bool = False) -> Job | None:
    """The job the fair queue would assign next (one query), or None.

    Args:
        node_id: the node that would take it (used by ``avoid_repeat``).
        avoid_repeat: skip jobs that already ended ``error`` on ``node_id`` (requeued jobs go to
            another node when one is free).
    """
    params: list[Any] = []
    repeat = ""
    if avoid_repeat and node_id:
        repeat = (' AND j."id" NOT IN (SELECT x."job_id" FROM "execution" x '
                  'WHERE x."node_id" = ? AND x."state" = \'error\')')
        params.append(node_id)
    return next(iter(Job.raw(_sql(_NEXT_JOB_SQL + repeat + _NEXT_JOB_ORDER), *params)), None)


# Queued jobs in submit order whose owner is below max_running (the capped owners are few: at
# most one per node). Uses the (state, submitted_at) and (owner_id, state) indexes.
_NEXT_JOB_SQL = """
SELECT j.* FROM "job" j JOIN "owner" o ON o."name" = j."owner_id"
WHERE j."state" = 'queued' AND o."max_running" > 0 AND j."owner_id" NOT IN (
    SELECT a."owner_id" FROM "job" a JOIN "owner" ao ON ao."name" = a."owner_id"
    WHERE a."state" IN ('assigned', 'running')
    GROUP BY a."owner_id", ao."max_running" HAVING COUNT(*) >= ao."max_running")"""
_NEXT_JOB_ORDER = ' ORDER BY j."submitted_at", j."id" LIMIT 1'


def _assign(job_id: str, attempts: int, node_id: str, t: float, limits: QueueLimits
            ) -> Execution:
    number = attempts + 1
    n = _update("job", {"state": A.value, "attempts": number, "node_id": node_id},
                '"id" = ? AND "state" = ? AND "attempts" = ?', job_id, Q.value, attempts)
    if n != 1:
        raise TransitionError(f"assign: job {job_id} is no longer queued")
    deadline = t + limits.accept_timeout_s
    _exec('INSERT INTO "execution" ("job_id", "number", "node_id", "state", "version", '
          '"assigned_at", "deadline_at") VALUES (?, ?, ?, ?, 1, ?, ?)',
          job_id, number, node_id, A.value, t, deadline)
    ex = Execution(job=job_id, number=number, node_id=node_id, state=A.value, version=1,
                   assigned_at=t, deadline_at=deadline)
    _event(job_id, number, Q, A, "dispatcher:assign", f"assigned to {node_id}", t)
    return ex


def assign(job_id: str, node_id: str, *, limits: QueueLimits | None = None,
           now: float | None = None) -> Execution:
    """Create the next execution of queued job ``job_id`` on ``node_id`` (state ``assigned``).

    This is the primitive; the fair policy is :func:`assign_next`. The acceptance deadline is
    ``now + limits.accept_timeout_s``.

    Raises:
        UnknownJob: no such job.
        TransitionError: the job is not queued (any more).
    """
    limits = limits or default_limits()
    t = _now(now)
    with _tx():
        job = get_job(job_id)
        _require("assign", job.job_state, A, f"job {job_id}")
        return _assign(job_id, job.attempts, node_id, t, limits)


def assign_next(node_id: str, *, avoid_repeat: bool = False, limits: QueueLimits | None = None,
                now: float | None = None) -> tuple[Job, Execution] | None:
    """Assign the fair queue's next eligible job to ``node_id``; None if nothing is eligible.

    One selecting query plus the writes, in one transaction.
    """
    limits = limits or default_limits()
    t = _now(now)
    with _tx():
        for _ in range(3):  # a job canceled between SELECT and UPDATE: take the next one
            job = next_job(node_id, avoid_repeat=avoid_repeat)
            if job is None:
                return None
            try:
                ex = _assign(job.id, job.attempts, node_id, t, limits)
            except TransitionError:
                continue
            job.state, job.attempts, job.node_id = A.value, ex.number, node_id
            return job, ex
    return None


_BATCH_SQL = ("""
SELECT j.*, o."max_running" AS cap, (
    SELECT COUNT(*) FROM "job" a
    WHERE a."owner_id" = j."owner_id" AND a."state" IN ('assigned', 'running')) AS active
FROM "job" j JOIN "owner" o ON o."name" = j."owner_id"
WHERE j."state" = 'queued' AND o."max_running" > 0 AND j."owner_id" NOT IN (
    SELECT a."owner_id" FROM "job" a JOIN "owner" ao ON ao."name" = a."owner_id"
    WHERE a."state" IN ('assigned', 'running')
    GROUP BY a."owner_id", ao."max_running" HAVING COUNT(*) >= ao."max_running")
ORDER BY j."submitted_at", j."id" LIMIT ?""")


def assign_batch(node_ids: Iterable[str], *, limits: QueueLimits | None = None,
                 now: float | None = None) -> list[tuple[str, Job, Execution]]:
    """Give each of the idle ``node_ids`` the fair queue's next job, in one transaction.

    Same policy as calling :func:`assign_next` per node, but job-major: the earliest eligible job
    goes to the first listed node where it has not already ended ``error`` (when another node is
    free; else to any), then the next job, until nodes or eligible jobs run out. One query
    fetches a window of candidates with their owner's cap and active count, so a burst of idle
    nodes costs one SELECT plus the writes of each assignment, and one commit.

    Returns:
        ``(node_id, job, execution)`` per assignment made (publish them after this returns: the
        transaction is committed then).
    """
    limits = limits or default_limits()
    t = _now(now)
    free = list(dict.fromkeys(node_ids))
    out: list[tuple[str, Job, Execution]] = []
    if not free:
        return out
    with _tx():
        while free:
            window = 4 * len(free) + 16
            cands = list(Job.raw(_sql(_BATCH_SQL), window))
            errored: dict[str, set[str]] = {}
            retried = [c.id for c in cands if c.attempts > 0]
            if retried:
                marks = ", ".join("?" for _ in retried)
                for jid, nid in _exec(f'SELECT "job_id", "node_id" FROM "execution" WHERE '
                                      f'"state" = \'error\' AND "job_id" IN ({marks})',
                                      *retried).fetchall():
                    errored.setdefault(jid, set()).add(nid)
            used: dict[str, int] = {}
            made = 0
            for avoid in (True, False):
                for c in cands:
                    if not free:
                        break
                    if c.state != Q.value or c.active + used.get(c.owner_id, 0) >= c.cap:
                        continue
                    bad = errored.get(c.id, ())
                    if avoid and len(free) > 1:
                        node = next((n for n in free if n not in bad), None)
                    else:
                        node = free[0]
                    if node is None:
                        continue
                    ex = _assign(c.id, c.attempts, node, t, limits)
                    c.state, c.attempts, c.node_id = A.value, ex.number, node
                    used[c.owner_id] = used.get(c.owner_id, 0) + 1
                    free.remove(node)
                    out.append((node, c, ex))
                    made += 1
            if made == 0 or len(cands) < window:
                break
    return out


def _change(name: str, ex: Execution, to: JobState, t: float, actor: str, reason: str | None,
            job_to: JobState | None = None, version: int | None = None,
            ex_fields: Mapping[str, Any] | None = None,
            job_fields: Mapping[str, Any] | None = None) -> JobState:
    """Move execution ``ex`` (and its job) along transition ``name``; inside a transaction.

    Returns:
        The job's new state.
    """
    frm = JobState(ex.state)
    _require(name, frm, to, f"execution {ex.number} of job {ex.job_id}")
    if version is not None and version != ex.version:
        raise StaleVersion(f"version {version} is stale: execution {ex.number} of job "
                           f"{ex.job_id} is at version {ex.version}")
    job_to = job_to or to
    efields = dict(ex_fields or {})
    if to.terminal:
        efields.setdefault("finished_at", t)
    efields.update(state=to.value, version=ex.version + 1)
    n = _update("execution", efields, '"job_id" = ? AND "number" = ? AND "state" = ? AND '
                '"version" = ?', ex.job_id, ex.number, frm.value, ex.version)
    if n != 1:
        raise TransitionError(f"{name}: execution {ex.number} of job {ex.job_id} changed "
                              "concurrently")
    jfields = dict(job_fields or {})
    if job_to.terminal:
        jfields.setdefault("finished_at", t)
    jfields["state"] = job_to.value
    if "summary" in jfields:
        jfields["summary"] = Job.summary.db_value(jfields["summary"])
    n = _update("job", jfields, '"id" = ? AND "state" = ? AND "attempts" = ?', ex.job_id,
                frm.value, ex.number)
    if n != 1:
        raise TransitionError(f"{name}: job {ex.job_id} is not at execution {ex.number} in "
                              f"state {frm.value}")
    _event(ex.job_id, ex.number, frm, to, actor, reason, t)
    if job_to != to:  # the job moves on (requeued): record that too
        _event(ex.job_id, ex.number, to, job_to, actor, "requeued", t)
    ex.state, ex.version = to.value, ex.version + 1
    return job_to


def _result_fields(details: Mapping[str, Any] | None) -> dict[str, Any]:
    d = dict(details or {})
    out: dict[str, Any] = {}
    if isinstance(d.get("reason"), str):
        out["reason"] = d["reason"][:2000]
    if isinstance(d.get("commit_sha"), str):
        out["commit_sha"] = d["commit_sha"][:64]
    if isinstance(d.get("result_key"), str):
        out["result_key"] = d["result_key"][:512]
    if isinstance(d.get("summary"), dict):
        out["summary"] = d["summary"]
    return out


def start(job_id: str, number: int, *, version: int | None = None, actor: str = "node",
          limits: QueueLimits | None = None, now: float | None = None) -> Execution:
    """The node accepted execution ``number``: ``assigned`` → ``running``.

    The execution's deadline becomes ``now + time_limit_s + limits.time_limit_grace_s``.

    Raises:
        UnknownJob, TransitionError, StaleVersion.
    """
    limits = limits or default_limits()
    t = _now(now)
    with _tx():
        ex = get_execution(job_id, number)
        _start_with(ex, t, actor, version, limits)
        return ex


def _start_with(ex: Execution, t: float, actor: str, version: int | None,
                limits: QueueLimits) -> None:
    job = get_job(ex.job_id)
    _change("start", ex, R, t, actor, f"running on {ex.node_id}", version=version,
            ex_fields={"started_at": t,
                       "deadline_at": t + job.time_limit_s + limits.time_limit_grace_s},
            job_fields={"started_at": job.started_at or t})


def _finish_with(ex: Execution, status: JobState, details: Mapping[str, Any] | None, t: float,
                 actor: str, version: int | None) -> None:
    res = _result_fields(details)
    name = "finish" if JobState(ex.state) == R else "fail"
    _change(name, ex, status, t, actor, res.get("reason") or f"{status.value} on {ex.node_id}",
            version=version, ex_fields={"reason": res.get("reason")}, job_fields=res)


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
    with _tx():
        ex = get_execution(job_id, number)
        _finish_with(ex, JobState(status), details, t, actor, version)
        return ex


def fail(job_id: str, number: int, reason: str, *, version: int | None = None,
         actor: str = "node", now: float | None = None) -> Execution:
    """End execution ``number`` ``failed`` (the user's code is at fault)."""
    return finish(job_id, number, F, {"reason": reason}, version=version, actor=actor, now=now)


def _error_with(ex: Execution, reason: str, t: float, actor: str, version: int | None) -> JobState:
    job = get_job(ex.job_id)
    job_to = Q if job.attempts < job.max_attempts else E
    why = reason if job_to == Q else f"{reason}; gave up after {job.attempts} attempt(s)"
    return _change("error", ex, E, t, actor, why, job_to=job_to, version=version,
                   ex_fields={"reason": reason}, job_fields={"reason": why})


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
    with _tx():
        return _error_with(get_execution(job_id, number), reason, t, actor, version)


def cancel(job_id: str, actor: str, *, reason: str | None = None,
           limits: QueueLimits | None = None, now: float | None = None) -> Job:
    """Cancel a job (stable API, used by the dashboard).

    A queued or assigned job ends ``canceled`` at once (an assigned execution's version is bumped,
    so the node's acceptance is rejected). A running job gets ``cancel_requested``: the dispatcher
    sends the node ``cancel_job``; the node ends it ``canceled``, or the queue does after
    ``limits.cancel_grace_s``. Canceling a finished job changes nothing.

    Args:
        actor: who cancels (owner name, admin name) — recorded in the job's events.

    Returns:
        The job after the call.

    Raises:
        UnknownJob: no such job.
    """
    limits = limits or default_limits()
    t = _now(now)
    why = reason or f"canceled by {actor}"
    with _tx():
        job = get_job(job_id)
        state = job.job_state
        if state == Q:
            n = (Job.update(state=C.value, finished_at=t, reason=why, cancel_requested=True)
                 .where((Job.id == job_id) & (Job.state == Q.value)).execute())
            if n != 1:
                raise TransitionError(f"cancel: job {job_id} changed concurrently")
            _event(job_id, None, Q, C, actor, why, t)
        elif state in ACTIVE_STATES:
            ex = get_execution(job_id, job.attempts)
            if state == A:
                _change("cancel", ex, C, t, actor, why, ex_fields={"reason": why},
                        job_fields={"reason": why, "cancel_requested": True})
            elif not job.cancel_requested:
                n = (Job.update(cancel_requested=True)
                     .where((Job.id == job_id) & (Job.state == R.value)).execute())
                deadline = min(ex.deadline_at or t + limits.cancel_grace_s,
                               t + limits.cancel_grace_s)
                Execution.update(deadline_at=deadline).where(Execution.id == ex.id).execute()
                if n == 1:
                    _event(job_id, ex.number, R, R, actor, f"cancel requested by {actor}", t)
        return get_job(job_id)


def apply_update(node_id: str, update: protocol.JobUpdate, *, limits: QueueLimits | None = None,
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
    limits = limits or default_limits()
    t = _now(now)
    status = JobState(update.status)
    seen = [0]  # the version read, for the answer when the change is refused
    try:
        with _tx():  # a TransitionError leaves the block: everything written is rolled back
            return _apply_update(node_id, update, status, t, limits, seen)
    except TransitionError as e:
        return UpdateOutcome(False, seen[0], str(e))


def _apply_update(node_id: str, update: protocol.JobUpdate, status: JobState, t: float,
                  limits: QueueLimits, seen: list[int]) -> UpdateOutcome:
    ex = _find_execution(update.job_id, update.execution)
    if ex is None:
        return UpdateOutcome(False, 0, f"no execution {update.execution} of job {update.job_id}")
    seen[0] = ex.version
    if ex.node_id != node_id:
        return UpdateOutcome(False, ex.version, f"execution {ex.number} of job {ex.job_id} is "
                                                f"assigned to another node")
    cur = JobState(ex.state)
    if status == cur and update.expected_version < ex.version:
        if cur.terminal and cur != E:
            res = {k: v for k, v in _result_fields(update.details).items()
                   if k in ("commit_sha", "result_key", "summary")}
            if res:
                job = get_job(ex.job_id)
                missing = {k: v for k, v in res.items() if getattr(job, k) is None}
                if missing and job.attempts == ex.number:
                    Job.update(**missing).where(Job.id == ex.job_id).execute()
        return UpdateOutcome(True, ex.version, None, changed=False)
    if cur.terminal:
        return UpdateOutcome(False, ex.version, f"execution already {cur.value}")
    if update.expected_version != ex.version:
        return UpdateOutcome(False, ex.version, f"stale version {update.expected_version}, "
                                                f"current is {ex.version}")
    actor = f"node:{node_id}"
    if status == R:
        _start_with(ex, t, actor, ex.version, limits)
    elif status == E:
        reason = _result_fields(update.details).get("reason") or "node reported error"
        _error_with(ex, reason, t, actor, ex.version)
    elif status in (S, F, T, C):
        _finish_with(ex, status, update.details, t, actor, ex.version)
    else:
        return UpdateOutcome(False, ex.version, f"a node cannot set {status.value}")
    return UpdateOutcome(True, ex.version, None, changed=True)


def expire_leases(now: float | None = None, *, limits: QueueLimits | None = None
                  ) -> list[Expired]:
    """End executions past their deadline.

    * assigned, not accepted by ``deadline_at`` → ``error`` (job requeued or ``error``);
    * running past time limit + grace → ``timed_out`` (``canceled`` if a cancel was requested).

    Returns:
        One :class:`Expired` per ended execution (the caller tells the node to stop).
    """
    limits = limits or default_limits()
    t = _now(now)
    out: list[Expired] = []
    due = list(Execution.select(Execution.id).where(
        Execution.state.in_([A.value, R.value]) & (Execution.deadline_at < t)))
    for row in due:
        try:
            with _tx():
                ex = Execution.get_by_id(row.id)
                if ex.deadline_at is None or ex.deadline_at >= t:
                    continue
                state = JobState(ex.state)
                if state == A:
                    why = (f"not accepted by {ex.node_id} within "
                           f"{limits.accept_timeout_s:g} s")
                    job_to = _error_with(ex, why, t, "dispatcher:expire", None)
                    out.append(Expired(ex.job_id, ex.number, ex.node_id, E, job_to))
                elif state == R:
                    job = Job.get_by_id(ex.job_id)
                    to = C if job.cancel_requested else T
                    why = ("canceled; the node did not confirm" if to == C else
                           f"time limit of {job.time_limit_s:g} s exceeded")
                    _change("expire", ex, to, t, "dispatcher:expire", why,
                            ex_fields={"reason": why}, job_fields={"reason": why})
                    out.append(Expired(ex.job_id, ex.number, ex.node_id, to, to))
        except TransitionError as e:  # changed under us (node update, cancel): fine
            log.info("expire: %s", e)
    return out


def extend_accept_deadlines(now: float | None = None, *, limits: QueueLimits | None = None
                            ) -> int:
    """Give every assigned execution at least ``limits.accept_timeout_s`` from ``now`` to be
    accepted (the dispatcher calls it on reconnecting: nodes could not reach it meanwhile).

    Returns:
        The number of executions whose deadline moved. No state changes, no events.
    """
    limits = limits or default_limits()
    t = _now(now)
    with _tx():
        return _exec('UPDATE "execution" SET "deadline_at" = ? WHERE "state" = ? AND '
                     '"deadline_at" < ?', t + limits.accept_timeout_s, A.value,
                     t + limits.accept_timeout_s).rowcount


def node_lost(node_id: str, reason: str, *, now: float | None = None) -> list[Expired]:
    """End every active execution on ``node_id`` as ``error`` (the jobs are requeued)."""
    t = _now(now)
    out = []
    for ex in list(Execution.select().where((Execution.node_id == node_id)
                                            & Execution.state.in_([A.value, R.value]))):
        try:
            with _tx():
                job_to = _error_with(ex, reason, t, "dispatcher:node-lost", None)
            out.append(Expired(ex.job_id, ex.number, node_id, E, job_to))
        except TransitionError as e:
            log.info("node_lost: %s", e)
    return out


# ------------------------------------------------------------------------------------------------
# reads
# ------------------------------------------------------------------------------------------------
queue_position = _positions.queue_position  # stable API for the dashboard (see positions.py)
queue_positions = _positions.queue_positions


def active_executions() -> list[Execution]:
    """Every assigned or running execution (what the dispatcher reconciles on start)."""
    return list(Execution.select().where(Execution.state.in_([A.value, R.value]))
                .order_by(Execution.id))


def current_execution(job: Job) -> Execution | None:
    """The job's latest execution, or None before the first assignment."""
    if job.attempts == 0:
        return None
    return Execution.get_or_none((Execution.job == job.id) & (Execution.number == job.attempts))


def job_status(job: Job, ts: float | None = None) -> protocol.JobStatus:
    """The retained :class:`~gym_raas_mqtt.protocol.JobStatus` for ``job``."""
    return protocol.JobStatus(job_id=job.id, owner=job.owner_id, state=job.job_state,
                              ts=_now(ts), execution=job.attempts, node_id=job.node_id,
                              reason=job.reason, result_key=job.result_key)


def job_source(job: Job) -> JobSource:
    """The job's code source as the protocol message."""
    return JobSource(kind=protocol.SourceKind(job.source_kind), url=job.source_url,
                     ref=job.source_ref, archive_key=job.archive_key)


def assignment(job: Job, ex: Execution, ts: float | None = None) -> protocol.JobAssignment:
    """The retained :class:`~gym_raas_mqtt.protocol.JobAssignment` for execution ``ex``.

    ``version`` is the execution's current version: the ``expected_version`` of the node's next
    update.
    """
    return protocol.JobAssignment(job_id=job.id, owner=job.owner_id, execution=ex.number,
                                  version=ex.version, source=job_source(job),
                                  time_limit_s=job.time_limit_s, ts=_now(ts))


def events(job_id: str) -> list[JobEvent]:
    """The job's events, oldest first."""
    return list(JobEvent.select().where(JobEvent.job == job_id).order_by(JobEvent.id))


def ensure_owner(name: str, max_running: int = 1) -> Owner:
    """Create owner ``name`` if missing (used by tests, benchmarks and the seed command)."""
    protocol.check_id(name, "owner")
    owner, _ = Owner.get_or_create(name=name, defaults={"max_running": max_running})
    return owner


def iter_jobs(ids: Iterable[str]) -> list[Job]:
    """Jobs with the given ids (any order)."""
    ids = list(ids)
    return list(Job.select().where(Job.id.in_(ids))) if ids else []
