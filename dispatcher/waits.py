"""Where a requeued job waits: the reason it shows (job page, API, retained state) while queued.

A job requeued after an ``error`` prefers a node where it has not failed
(:func:`dispatcher.queue.assign_batch`): it waits for one even while a node that failed it is
free, and returns to such a node only when no other node can take it. Its reason says which case
it is in, e.g. ``requeued after an error on pi-3 (node pi-3 lost for 30 s); waiting for another
node: only pi-3 is free``. The dispatcher refreshes these reasons every tick and whenever a job is
requeued, from its view of the fleet.
"""

from __future__ import annotations

from typing import Collection, Sequence

from dispatcher import queue
from dispatcher.publisher import Publisher

NAMES_SHOWN = 3
"""Node names listed in a reason (then "…")."""


def _names(node_ids: Sequence[str]) -> str:
    shown = ", ".join(node_ids[:NAMES_SHOWN])
    return shown + (", …" if len(node_ids) > NAMES_SHOWN else "")


def wait_note(failed: Collection[str], usable: Collection[str], free: Collection[str]) -> str:
    """Where a requeued job waits.

    Args:
        failed: nodes where it ended ``error``.
        usable: nodes that run jobs now or soon (idle, busy, resetting; not draining, suspect or
            in maintenance).
        free: the usable nodes that could take a job now.
    """
    others = sorted(n for n in usable if n not in failed)
    if others:
        free_failed = sorted(n for n in free if n in failed)
        if free_failed and not set(free) - set(failed):
            verb = "is" if len(free_failed) == 1 else "are"
            return f"waiting for another node: only {_names(free_failed)} {verb} free"
        return f"waiting for another node ({_names(others)})"
    if usable:
        return f"waiting for {_names(sorted(usable))} (no other node can take it)"
    return "waiting for a node (none is available)"


def refresh(publisher: Publisher, usable: Collection[str], free: Collection[str]) -> int:
    """Rewrite the reason of every requeued job that waits somewhere else now, and publish its
    state; returns how many changed."""
    jobs = queue.requeued_jobs()
    if not jobs:
        return 0
    failed = queue.errored_on([j.job_id for j in jobs])
    changed = 0
    for job in jobs:
        note = wait_note(failed.get(job.job_id, set()), usable, free)
        reason = f"{queue.requeue_reason(job.node_id, job.error)}; {note}"
        if reason != job.reason and queue.note_wait(job.job_id, reason):
            publisher.status(queue.get_job(job.job_id))
            changed += 1
    return changed
