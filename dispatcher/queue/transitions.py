"""The one writer of job and job-execution state: named transitions, checked, each with its event.

Every transition is checked against :data:`TRANSITIONS`, done as ``UPDATE ... WHERE state =
<expected>`` with a row-count check (a concurrent writer makes it fail, never silently overwrite),
and writes a :class:`~dispatcher.models.JobEvent` in the same transaction. Callers open the
transaction (:func:`dispatcher.db.transaction`); the functions here only write inside it. The
decisions — which transition, when — are made by :mod:`.submissions`, :mod:`.assignment` and
:mod:`.executions`.

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

An execution's end is also accounted on its node (run time, run of platform errors) by
:func:`dispatcher.nodes.execution_ended`, in the same transaction: exactly once per execution.
A job's end queues its owner's webhook deliveries (:func:`dispatcher.webhooks.outbox.job_ended`)
in the same transaction too: a transactional outbox, so a delivery exists iff the end committed.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from dispatcher import db, nodes
from dispatcher.errors import StaleVersion, TransitionError
from dispatcher.models import Execution, Job
from dispatcher.webhooks import outbox
from gym_raas_mqtt.protocol import JobState

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

RESULT_FIELDS = ("reason", "commit_sha", "result_key", "summary")
"""What a node's final update may set on the job (see :func:`result_fields`)."""
SUMMARY_COLUMNS = {"return": ("total_return", float),
                   "seconds_upright": ("seconds_upright", float), "steps": ("steps", int),
                   "episodes": ("episodes", int), "duration_s": ("duration_s", float),
                   "deadline_misses": ("deadline_misses", int)}
"""Summary key → (job column, type): the runs table's sort columns, written with the summary."""


def allowed(name: str, from_state: JobState | None, to_state: JobState) -> bool:
    """Whether transition ``name`` may move an execution from ``from_state`` to ``to_state``."""
    sources, targets = TRANSITIONS[name]
    ok_from = (from_state is None and not sources) or from_state in sources
    return bool(ok_from) and to_state in targets


def require(name: str, from_state: JobState | None, to_state: JobState, what: str) -> None:
    """Raise :class:`TransitionError` unless :func:`allowed`; ``what`` names the row in the
    message."""
    if not allowed(name, from_state, to_state):
        src = from_state.value if from_state else "nothing"
        raise TransitionError(f"{name}: {what} is {src}; {name} cannot make it {to_state.value}")


def result_fields(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """The job fields a node's update ``details`` may set, type-checked and length-capped."""
    d = dict(details or {})
    out: dict[str, Any] = {}
    for name, cap in (("reason", 2000), ("commit_sha", 64), ("result_key", 512)):
        if isinstance(d.get(name), str):
            out[name] = d[name][:cap]
    if isinstance(d.get("summary"), dict):
        out["summary"] = d["summary"]
    return out


def summary_row(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The job columns that store ``summary`` (:data:`SUMMARY_COLUMNS` and the JSON itself); a
    figure missing, not a finite number, or a bool is NULL."""
    row: dict[str, Any] = {"summary": Job.summary.db_value(summary)}
    for key, (column, kind) in SUMMARY_COLUMNS.items():
        value = summary.get(key)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = number and math.isfinite(value)
        row[column] = kind(value) if ok else None
    return row


def record_event(job_id: str, execution: int | None, from_state: JobState | None,
                 to_state: JobState, actor: str, reason: str | None, at: float) -> None:
    """Write the audit row of a transition (inside the transition's transaction)."""
    db.execute('INSERT INTO "jobevent" ("job_id", "execution", "from_state", "to_state", "at", '
               '"actor", "reason") VALUES (?, ?, ?, ?, ?, ?, ?)', job_id, execution,
               from_state.value if from_state else None, to_state.value, at, actor[:64], reason)


def create_job(fields: Mapping[str, Any], actor: str, t: float) -> Job:
    """``enqueue``: insert a job in state ``queued`` with its event and its tags' rows.
    ``fields`` are the :class:`~dispatcher.models.Job` columns besides the state."""
    job = Job.create(state=Q.value, **fields)
    for tag in fields.get("tags") or ():
        db.execute('INSERT INTO "jobtag" ("job_id", "tag") VALUES (?, ?)', job.id, tag)
    record_event(job.id, None, None, Q, actor, "submitted", t)
    return job


def create_execution(job_id: str, attempts: int, node_id: str, t: float,
                     accept_timeout_s: float, reason: str | None = None) -> Execution:
    """``assign``: queued job ``job_id`` (at ``attempts`` executions) gets execution
    ``attempts + 1`` on ``node_id``, to be accepted within ``accept_timeout_s``; ``reason``
    replaces the job's (a retry says where it runs instead of where it waited).

    Raises:
        TransitionError: the job is no longer queued at that attempt.
    """
    number = attempts + 1
    fields: dict[str, Any] = {"state": A.value, "attempts": number, "node_id": node_id}
    if reason is not None:
        fields["reason"] = reason
    n = db.update("job", fields, '"id" = ? AND "state" = ? AND "attempts" = ?', job_id, Q.value,
                  attempts)
    if n != 1:
        raise TransitionError(f"assign: job {job_id} is no longer queued")
    deadline = t + accept_timeout_s
    db.execute('INSERT INTO "execution" ("job_id", "number", "node_id", "state", "version", '
               '"assigned_at", "deadline_at") VALUES (?, ?, ?, ?, 1, ?, ?)',
               job_id, number, node_id, A.value, t, deadline)
    record_event(job_id, number, Q, A, "dispatcher:assign", f"assigned to {node_id}", t)
    return Execution(job=job_id, number=number, node_id=node_id, state=A.value, version=1,
                     assigned_at=t, deadline_at=deadline)


def change(name: str, ex: Execution, to: JobState, t: float, actor: str, reason: str | None, *,
           job_to: JobState | None = None, version: int | None = None,
           ex_fields: Mapping[str, Any] | None = None,
           job_fields: Mapping[str, Any] | None = None) -> JobState:
    """Move execution ``ex`` (and its job) along transition ``name``.

    Args:
        to: the execution's new state.
        job_to: the job's new state when it differs (``queued`` after a requeued ``error``).
        version: the version the caller read; None skips that check.
        ex_fields, job_fields: other columns to set in the same UPDATEs.

    Returns:
        The job's new state. ``ex`` is updated in place (state, version).

    Raises:
        TransitionError: not allowed, or another writer changed the rows first.
        StaleVersion: ``version`` is not the execution's.
    """
    frm = JobState(ex.state)
    require(name, frm, to, f"execution {ex.number} of job {ex.job_id}")
    if version is not None and version != ex.version:
        raise StaleVersion(f"version {version} is stale: execution {ex.number} of job "
                           f"{ex.job_id} is at version {ex.version}")
    job_to = job_to or to
    efields = dict(ex_fields or {})
    if to.terminal:
        efields.setdefault("finished_at", t)
    efields.update(state=to.value, version=ex.version + 1)
    n = db.update("execution", efields, '"job_id" = ? AND "number" = ? AND "state" = ? AND '
                  '"version" = ?', ex.job_id, ex.number, frm.value, ex.version)
    if n != 1:
        raise TransitionError(f"{name}: execution {ex.number} of job {ex.job_id} changed "
                              "concurrently")
    jfields = dict(job_fields or {})
    if job_to.terminal:
        jfields.setdefault("finished_at", t)
    jfields["state"] = job_to.value
    if "summary" in jfields:
        jfields.update(summary_row(jfields["summary"]))
    n = db.update("job", jfields, '"id" = ? AND "state" = ? AND "attempts" = ?', ex.job_id,
                  frm.value, ex.number)
    if n != 1:
        raise TransitionError(f"{name}: job {ex.job_id} is not at execution {ex.number} in "
                              f"state {frm.value}")
    record_event(ex.job_id, ex.number, frm, to, actor, reason, t)
    if job_to != to:  # the job moves on (requeued): record that too
        record_event(ex.job_id, ex.number, to, job_to, actor, "requeued", t)
    if to.terminal:
        nodes.execution_ended(ex.node_id, to, ex.started_at, efields["finished_at"])
    if job_to.terminal:
        outbox.job_ended(ex.job_id, job_to, t)  # the webhooks' deliveries commit with the state
    ex.state, ex.version = to.value, ex.version + 1
    return job_to


def cancel_queued(job_id: str, t: float, actor: str, why: str) -> None:
    """``cancel`` of a job still queued (it has no current execution).

    Raises:
        TransitionError: it is no longer queued.
    """
    n = db.update("job", {"state": C.value, "finished_at": t, "reason": why,
                          "cancel_requested": True}, '"id" = ? AND "state" = ?', job_id, Q.value)
    if n != 1:
        raise TransitionError(f"cancel: job {job_id} changed concurrently")
    record_event(job_id, None, Q, C, actor, why, t)
    outbox.job_ended(job_id, C, t)


def request_cancel(ex: Execution, t: float, actor: str, deadline_at: float) -> None:
    """Mark running execution ``ex``'s job ``cancel_requested`` (the node is told to stop) and
    bring its deadline forward to ``deadline_at``. The state stays ``running``."""
    n = db.update("job", {"cancel_requested": True}, '"id" = ? AND "state" = ?', ex.job_id,
                  R.value)
    db.update("execution", {"deadline_at": deadline_at}, '"id" = ?', ex.id)
    if n == 1:
        record_event(ex.job_id, ex.number, R, R, actor, f"cancel requested by {actor}", t)


def fill_results(job_id: str, fields: Mapping[str, Any]) -> None:
    """Set result fields (commit_sha, result_key, summary) of a finished job that lacks them —
    a node's late final update after the dispatcher had already ended the execution. No event:
    the state does not change."""
    values = dict(fields)
    if "summary" in values:
        values.update(summary_row(values["summary"]))
    if values:
        db.update("job", values, '"id" = ?', job_id)


def set_wait_reason(job_id: str, reason: str) -> bool:
    """Say where queued job ``job_id`` waits (its reason; no state change, no event). Returns
    False when it is no longer queued or already says so."""
    return db.update("job", {"reason": reason}, '"id" = ? AND "state" = ? AND '
                     '("reason" IS NULL OR "reason" <> ?)', job_id, Q.value, reason) == 1


def move_accept_deadlines(t: float, accept_timeout_s: float) -> int:
    """Give every assigned execution at least ``accept_timeout_s`` from ``t`` to be accepted.
    No state changes, no events. Returns the number of executions moved."""
    return db.update("execution", {"deadline_at": t + accept_timeout_s},
                     '"state" = ? AND "deadline_at" < ?', A.value, t + accept_timeout_s)
