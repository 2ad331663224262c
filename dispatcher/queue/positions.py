"""Queue positions: the order in which queued jobs will start, played out with the fair-queue rule."""

from __future__ import annotations

from dispatcher.models import Job, Node
from dispatcher.queue import fairness
from gym_raas_mqtt.protocol import JobState


def fleet_slots() -> int:
    """Nodes that can take jobs: idle, busy or resetting, not draining and not in the
    dispatcher's maintenance (at least 1)."""
    usable = ("idle", "busy", "resetting")
    n = Node.select().where(Node.state.in_(usable) & (Node.draining == False)  # noqa: E712
                            & Node.maintenance_reason.is_null()).count()
    return max(1, n)


def queue_positions(slots: int | None = None, *, until: str | None = None) -> dict[str, int]:
    """1-based dispatch position of every queued job.

    The order is the one :func:`~dispatcher.queue.assignment.assign_batch` would produce if the
    fleet's ``slots`` nodes worked in lockstep waves of equal-length jobs: each wave fills the
    free nodes from the :class:`~dispatcher.queue.fairness.FairQueue` (counting the jobs already
    assigned or running in the first wave), then every job of the wave finishes. With one node
    this is plain FIFO; with many it interleaves owners as the per-owner cap does. Position 1 is
    always the job the dispatcher assigns next. Jobs of suspended owners (``max_running`` 0) have
    none.

    Args:
        slots: fleet size to assume; None = nodes currently idle, busy or resetting (≥ 1).
        until: stop once this job is placed (what :func:`queue_position` uses).
    """
    slots = fleet_slots() if slots is None else max(1, int(slots))
    active = fairness.active_by_owner()
    fair = fairness.FairQueue(fairness.all_queued(), fairness.caps(), active)
    free = slots - sum(active.values())
    positions: dict[str, int] = {}
    while True:
        job = fair.pop() if free > 0 else None
        if job is None:  # the wave ends: every running job finishes
            if not fair.new_wave():
                return positions
            free = slots
            continue
        positions[job.job_id] = len(positions) + 1
        if job.job_id == until:
            return positions
        free -= 1


def queue_position(job_id: str, slots: int | None = None) -> int | None:
    """1-based dispatch position of queued job ``job_id`` (see :func:`queue_positions`); None when
    the job is not queued (or its owner is suspended)."""
    if Job.select().where((Job.id == job_id) & (Job.state == JobState.QUEUED.value)).count() == 0:
        return None
    return queue_positions(slots, until=job_id).get(job_id)
