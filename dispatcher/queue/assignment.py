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
        return tr.create_execution(job_id, job.attempts, node_id, t, limits.accept_timeout_s)


def _errored_on(job_ids: list[str]) -> dict[str, set[str]]:
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


def assign_batch(node_ids: Iterable[str], *, limits: QueueLimits, now: float | None = None
                 ) -> list[tuple[str, Job, Execution]]:
    """Give each of the idle ``node_ids`` the fair queue's next job, in one transaction.

    Jobs go in fair-queue order (:mod:`.fairness`). A requeued job prefers a free node where it
    has not ended ``error`` before; when every free node has failed it, it takes one anyway, so
    it is never starved. One query fetches a window of candidates, so a burst of idle nodes costs
    one SELECT (per window) plus the writes of each assignment, and one commit.

    Returns:
        ``(node_id, job, execution)`` per assignment made (publish them after this returns: the
        transaction is committed then).
    """
    t = time.time() if now is None else now
    free = list(dict.fromkeys(node_ids))
    out: list[tuple[str, Job, Execution]] = []
    with db.transaction():
        while free:
            window = 4 * len(free) + 16
            cands = fairness.candidates(window)
            fair = fairness.FairQueue(cands, fairness.caps(), fairness.active_by_owner())
            errored = _errored_on([c.job_id for c in cands if c.row.attempts > 0])
            made, deferred = 0, []
            while free and (cand := fair.pop()) is not None:
                bad = errored.get(cand.job_id, ())
                node = free[0] if len(free) == 1 else next((n for n in free if n not in bad),
                                                            None)
                if node is None:  # every free node failed it: after the others
                    deferred.append(cand)
                    continue
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
    try:
        ex = tr.create_execution(job.id, job.attempts, node, t, limits.accept_timeout_s)
    except TransitionError:
        return 0
    job.state, job.attempts, job.node_id = tr.A.value, ex.number, node
    free.remove(node)
    out.append((node, job, ex))
    return 1
