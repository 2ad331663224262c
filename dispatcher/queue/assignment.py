"""Assignment: idle nodes get the fair queue's next jobs, in one transaction per burst."""

from __future__ import annotations

import time
from typing import Iterable

from dispatcher import db
from dispatcher.errors import TransitionError
from dispatcher.limits import QueueLimits
from dispatcher.models import Execution, Job
from dispatcher.queue import fairness
from dispatcher.queue import transitions as tr
from dispatcher.queue.reads import get_job


def assign(job_id: str, node_id: str, *, limits: QueueLimits,
           now: float | None = None) -> Execution:
    """Create the next execution of queued job ``job_id`` on ``node_id`` (state ``assigned``),
    whatever the fair queue would choose (tests, operators). Its acceptance deadline is
    ``now + limits.accept_timeout_s``.

    Raises:
        UnknownJob: no such job.
        TransitionError: the job is not queued (any more).
    """
    t = time.time() if now is None else now
    with db.transaction():
        job = get_job(job_id)
        tr.require("assign", job.job_state, tr.A, f"job {job_id}")
        return tr.create_execution(job_id, job.attempts, node_id, t, limits.accept_timeout_s,
                                   retry_reason(job, node_id))


def retry_reason(job: Job, node_id: str) -> str | None:
    """The reason a requeued job shows once it is assigned again (None for a first attempt)."""
    if job.attempts == 0:
        return None
    return f"attempt {job.attempts + 1} on {node_id} after an error on {job.node_id}"


def errored_on(job_ids: list[str]) -> dict[str, set[str]]:
    """For requeued jobs: the nodes where an earlier execution ended ``error``."""
    if not job_ids:
        return {}
    marks = ", ".join("?" for _ in job_ids)
    out: dict[str, set[str]] = {}
    for jid, nid in db.execute(f'SELECT "job_id", "node_id" FROM "execution" WHERE '
                               f'"state" = \'error\' AND "job_id" IN ({marks})',
                               *job_ids).fetchall():
        out.setdefault(jid, set()).add(nid)
    return out


def assign_batch(node_ids: Iterable[str], *, limits: QueueLimits, now: float | None = None,
                 busy: Iterable[str] = ()) -> list[tuple[str, Job, Execution]]:
    """Give each of the idle ``node_ids`` the fair queue's next job, in one transaction.

    Jobs go in fair-queue order (:mod:`.fairness`). A requeued job prefers a node where it has
    not ended ``error`` before: a free one, else it waits for one of the ``busy`` nodes (usable
    nodes that are not free now); only when no such node exists does it take a free node that
    failed it, so it is never starved. One query fetches a window of candidates, so a burst of
    idle nodes costs one SELECT (per window) plus the writes of each assignment, and one commit.

    Returns:
        ``(node_id, job, execution)`` per assignment made (publish them after this returns: the
        transaction is committed then).
    """
    t = time.time() if now is None else now
    free = list(dict.fromkeys(node_ids))
    busy = set(busy)
    out: list[tuple[str, Job, Execution]] = []
    with db.transaction():
        while free:
            window = 4 * len(free) + 16
            cands = fairness.candidates(window)
            fair = fairness.FairQueue(cands, fairness.caps(), fairness.active_by_owner())
            errored = errored_on([c.job_id for c in cands if c.row.attempts > 0])
            made, deferred = 0, []
            while free and (cand := fair.pop()) is not None:
                bad = errored.get(cand.job_id, ())
                node = next((n for n in free if n not in bad), None)
                if node is None:
                    if busy - set(bad):  # waits for a busy node that has not failed it
                        continue
                    if len(free) > 1:  # every free node failed it: after the others
                        deferred.append(cand)
                        continue
                    node = free[0]
                made += _take(cand.row, node, t, limits, free, out)
            for cand in deferred:
                if free:
                    made += _take(cand.row, free[0], t, limits, free, out)
            if made == 0 or len(cands) < window:
                break
    return out


def _take(job: Job, node: str, t: float, limits: QueueLimits, free: list[str],
          out: list[tuple[str, Job, Execution]]) -> int:
    """Assign ``job`` to ``node`` (removed from ``free``); returns 1, or 0 when a concurrent
    cancel got there first."""
    reason = retry_reason(job, node)
    try:
        ex = tr.create_execution(job.id, job.attempts, node, t, limits.accept_timeout_s, reason)
    except TransitionError:
        return 0
    job.state, job.attempts, job.node_id = tr.A.value, ex.number, node
    if reason is not None:
        job.reason = reason
    free.remove(node)
    out.append((node, job, ex))
    return 1
