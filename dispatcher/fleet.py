"""The dispatcher's view of the fleet: each node's presence and the execution it holds.

Presence rules (docs/job-lifecycle.md, Sparkplug's bdSeq): a node's retained state carries its
session; a ``lost`` (its will) whose session is older than the latest birth is a late will and is
ignored. A current ``lost`` makes the node *suspect*; after the grace period its execution ends
``error`` and the job is requeued. A node that reports ``idle``/``offline``/``maintenance``/
``standby`` while the dispatcher believes it runs a job has dropped that job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Collection

from gym_raas_mqtt import protocol
from gym_raas_mqtt.protocol import JobState, NodeStatus

log = logging.getLogger(__name__)


@dataclass
class NodeView:
    """What the dispatcher believes about one node (rebuilt from retained messages)."""

    state: NodeStatus | None = None  # None: not heard from since start
    session: int = -1
    job_id: str | None = None
    suspect_since: float | None = None  # a current `lost` (or silence after start) since then
    seen_at: float | None = None


@dataclass
class Holding:
    """The execution a node holds (assigned or running), as last written by the queue."""

    job_id: str
    execution: int
    state: JobState
    owner: str

RELEASE_GRACE_S = 30.0
"""How long a node's telemetry and logs of an execution it no longer holds are still relayed:
its last batches race the final update on another connection."""


@dataclass(frozen=True)
class StateVerdict:
    """What a node's state message means for the jobs.

    Attributes:
        stale: a late will (older session): nothing changed.
        dropped_job: the node no longer runs the execution it holds (end it ``error``).
        foreign_job: a job the node runs but does not hold here (tell it to cancel).
        born: the node is up on a session newer than any seen (it may have restarted and
            forgotten what it was told).
    """

    stale: bool = False
    dropped_job: str | None = None
    foreign_job: str | None = None
    born: bool = False


ALIVE = frozenset({NodeStatus.IDLE, NodeStatus.BUSY, NodeStatus.RESETTING})
"""States of a node that runs jobs now or will soon."""


@dataclass
class FleetView:
    """Nodes by id and the execution each holds; owned by the dispatcher's worker thread."""

    nodes: dict[str, NodeView] = field(default_factory=dict)
    holding: dict[str, Holding] = field(default_factory=dict)
    released: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)

    def owner_of(self, node_id: str, job_id: str, now: float) -> str | None:
        """The owner of ``job_id`` if ``node_id`` holds it (or released it less than
        :data:`RELEASE_GRACE_S` ago), else None. Safe to call from another thread."""
        held = self.holding.get(node_id)
        if held is not None and held.job_id == job_id:
            return held.owner
        owner, until = self.released.get((node_id, job_id), (None, 0.0))
        return owner if now < until else None

    def on_state(self, node_id: str, msg: protocol.NodeState | None, now: float) -> StateVerdict:
        """Apply a node's retained state (None: cleared, the node left the fleet)."""
        view = self.nodes.setdefault(node_id, NodeView())
        if msg is None:
            view.state, view.suspect_since = NodeStatus.OFFLINE, view.suspect_since or now
            return StateVerdict()
        if msg.session < view.session:
            log.info("ignored %s of node %s: session %d is older than %d (late will)",
                     msg.state.value, node_id, msg.session, view.session)
            return StateVerdict(stale=True)
        born = msg.session > view.session and msg.state not in (NodeStatus.LOST,
                                                                NodeStatus.OFFLINE)
        view.session, view.job_id, view.seen_at, view.state = (msg.session, msg.job_id, now,
                                                              msg.state)
        if msg.state == NodeStatus.LOST:
            if view.suspect_since is None:
                view.suspect_since = now
                log.warning("node %s lost (session %d)", node_id, msg.session)
        else:
            view.suspect_since = None
        held = self.holding.get(node_id)
        busy_with = msg.job_id if msg.state == NodeStatus.BUSY else None
        if held is None:
            return StateVerdict(foreign_job=busy_with, born=born)
        if msg.state in (NodeStatus.IDLE, NodeStatus.OFFLINE, NodeStatus.MAINTENANCE,
                         NodeStatus.STANDBY) and held.state == JobState.RUNNING:
            return StateVerdict(dropped_job=held.job_id, born=born)
        if busy_with and busy_with != held.job_id:
            return StateVerdict(foreign_job=busy_with, born=born)
        return StateVerdict(born=born)

    def on_heartbeat(self, node_id: str, msg: protocol.NodeHeartbeat, now: float) -> bool:
        """A node's heartbeat; returns whether it counts (sent on the session we know)."""
        view = self.nodes.get(node_id)
        if view is None or msg.session != view.session:
            return False
        view.seen_at = now
        return True

    def suspect_all_holders(self, now: float) -> None:
        """After (re)connecting, a node holding an execution is unconfirmed until its retained
        state arrives; one that never shows up is handled like a lost one after the grace."""
        for node_id in self.holding:
            view = self.nodes.setdefault(node_id, NodeView())
            if view.state != NodeStatus.LOST or view.suspect_since is None:
                view.suspect_since = now

    def lost_too_long(self, now: float, grace_s: float) -> list[tuple[str, float]]:
        """``(node, seconds suspect)`` of nodes holding an execution, suspect for ≥ ``grace_s``."""
        return [(n, now - v.suspect_since) for n, v in self.nodes.items()
                if v.suspect_since is not None and n in self.holding
                and now - v.suspect_since >= grace_s]

    def idle(self, excluded: Collection[str]) -> list[str]:
        """Nodes that may take a job now: idle, not suspect, holding nothing, not ``excluded``
        (draining or in the dispatcher's maintenance)."""
        return [n for n, v in self.nodes.items()
                if v.state == NodeStatus.IDLE and v.suspect_since is None
                and n not in self.holding and n not in excluded]

    def usable(self, excluded: Collection[str]) -> list[str]:
        """Nodes that run jobs now or will soon: :data:`ALIVE`, not suspect, not ``excluded``."""
        return [n for n, v in self.nodes.items()
                if v.state in ALIVE and v.suspect_since is None and n not in excluded]

    def release(self, job_id: str, state: JobState, execution: int, now: float) -> list[str]:
        """The job's state changed (at ``now``): update or drop the holdings of it; returns the
        nodes that no longer hold it (their retained assignment must be cleared)."""
        released = []
        for node_id, h in list(self.holding.items()):
            if h.job_id != job_id:
                continue
            if state in (JobState.ASSIGNED, JobState.RUNNING) and h.execution == execution:
                h.state = state
            else:  # that execution ended (finished, expired, errored, canceled)
                del self.holding[node_id]
                released.append(node_id)
                self.released[(node_id, job_id)] = (h.owner, now + RELEASE_GRACE_S)
        if released:  # forget what is past its grace
            self.released = {k: v for k, v in self.released.items() if v[1] > now}
        return released
