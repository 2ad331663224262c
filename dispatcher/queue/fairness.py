"""The fair-queue rule, written once: which queued job starts next.

FIFO by submit time (then id), skipping owners who already hold ``Owner.max_running`` assigned or
running jobs; ``max_running`` 0 suspends an owner. :class:`FairQueue` applies the rule to jobs
fetched in FIFO order; assignment (:mod:`.assignment`) takes one wave of it for the idle nodes, and
queue positions (:mod:`.positions`) play it out wave after wave.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from dispatcher import db
from dispatcher.models import Job

ACTIVE_BY_OWNER_SQL = ('SELECT "owner_id", COUNT(*) FROM "job" '
                       'WHERE "state" IN (\'assigned\', \'running\') GROUP BY "owner_id"')

# The first queued jobs, in FIFO order, of owners below their cap. Uses the (state, submitted_at)
# index and stops at the LIMIT, so its cost does not grow with the queue's length; the capped
# owners it filters out are few (at most one per busy node).
CANDIDATES_SQL = """
SELECT j.* FROM "job" j JOIN "owner" o ON o."name" = j."owner_id"
WHERE j."state" = 'queued' AND o."max_running" > 0 AND j."owner_id" NOT IN (
    SELECT a."owner_id" FROM "job" a JOIN "owner" ao ON ao."name" = a."owner_id"
    WHERE a."state" IN ('assigned', 'running')
    GROUP BY a."owner_id", ao."max_running" HAVING COUNT(*) >= ao."max_running")
ORDER BY j."submitted_at", j."id" LIMIT ?"""


@dataclass(frozen=True)
class Queued:
    """A queued job as the rule sees it."""

    job_id: str
    owner: str
    row: Any = None  # the Job row when fetched for assignment


def active_by_owner() -> dict[str, int]:
    """Assigned + running jobs per owner."""
    return {owner: n for owner, n in db.execute(ACTIVE_BY_OWNER_SQL).fetchall()}


def caps() -> dict[str, int]:
    """``max_running`` per owner."""
    return {name: cap for name, cap in db.execute('SELECT "name", "max_running" FROM "owner"')}


def candidates(limit: int) -> list[Queued]:
    """Up to ``limit`` queued jobs, FIFO, of owners below their cap (rows included)."""
    return [Queued(j.id, j.owner_id, j) for j in Job.raw(db.sql(CANDIDATES_SQL), limit)]


def all_queued() -> list[Queued]:
    """Every queued job, FIFO (what queue positions are computed over)."""
    rows = db.execute('SELECT "id", "owner_id" FROM "job" WHERE "state" = \'queued\' '
                      'ORDER BY "submitted_at", "id"').fetchall()
    return [Queued(jid, owner) for jid, owner in rows]


class FairQueue:
    """Queued jobs (given in FIFO order) released one at a time under the per-owner cap.

    Args:
        jobs: queued jobs in FIFO order.
        caps: ``max_running`` per owner (missing or 0: the owner's jobs never start).
        active: jobs each owner already holds (count against the cap until :meth:`new_wave`).
    """

    def __init__(self, jobs: Iterable[Queued], caps: Mapping[str, int],
                 active: Mapping[str, int]) -> None:
        self._caps = dict(caps)
        self._per_owner: dict[str, list[tuple[int, Queued]]] = {}
        for i, job in enumerate(jobs):
            if self._caps.get(job.owner, 0) > 0:
                self._per_owner.setdefault(job.owner, []).append((i, job))
        self._head = {o: 0 for o in self._per_owner}
        self._room = {o: self._caps[o] - active.get(o, 0) for o in self._per_owner}
        self._heap: list[tuple[int, str]] = []
        self._blocked: list[str] = []  # owners at their cap with jobs left
        for owner in self._per_owner:
            self._offer(owner)

    def _offer(self, owner: str) -> None:
        """Put the owner's next job forward: eligible now, or blocked until the wave ends."""
        jobs, head = self._per_owner[owner], self._head[owner]
        if head >= len(jobs):
            return
        if self._room[owner] > 0:
            heapq.heappush(self._heap, (jobs[head][0], owner))
        else:
            self._blocked.append(owner)

    def pop(self) -> Queued | None:
        """The next job to start in this wave, or None when no owner has room left."""
        if not self._heap:
            return None
        _, owner = heapq.heappop(self._heap)
        job = self._per_owner[owner][self._head[owner]][1]
        self._head[owner] += 1
        self._room[owner] -= 1
        self._offer(owner)
        return job

    def new_wave(self) -> bool:
        """Every running job finishes: each owner's room is its cap again. Returns whether any
        job is left."""
        for owner in self._per_owner:
            self._room[owner] = self._caps[owner]
        blocked, self._blocked = self._blocked, []
        for owner in blocked:
            self._offer(owner)
        return bool(self._heap)
