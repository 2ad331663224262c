"""Fleet health as the dispatcher keeps it: drain, standby, maintenance after platform errors,
operators' node commands and the self-test history.

* ``Node.draining`` and ``Node.maintenance_reason`` (written only by :mod:`dispatcher.nodes`) are
  the truth for assignment: the dispatcher gives such a node no new job; a job it holds runs to
  its end. An operator changes them with a :class:`~gym_raas_mqtt.protocol.NodeCommand` on the
  node's cmd topic (``raas node send NODE drain``, which the node's agent obeys too) or with the
  dashboard, which writes the row. The dispatcher re-reads the rows every tick and sends the node
  what changed without it (its own commands come back on its subscription and are ignored).
* A node whose last ``maintenance_after_errors`` executions all ended ``error`` (platform faults:
  the count is kept by :func:`dispatcher.nodes.execution_ended`) goes to maintenance with the
  reason: the dispatcher records it and sends the node ``maintenance``, and assigns nothing to it
  until ``clear_maintenance``; an execution the user's code ran to its end resets the count.
* ``Node.standby`` (set by the autoscaler or an operator) keeps a node in standby: no job is
  assigned to it from the moment it is set; the node is told ``standby`` (it turns its motor off
  once idle) and, when cleared, ``wake`` (it resets and self-tests before it reports ``idle``).
* A node that comes up on a new session is told again (its agent may have restarted).
* Heartbeats keep ``Node.last_seen`` fresh; self-test results become ``SelfTest`` rows; requeued
  jobs say where they wait (:mod:`dispatcher.waits`).

Owned by the dispatcher's worker thread (not thread-safe).
"""

from __future__ import annotations

import logging
from typing import Callable, Collection

from dispatcher import nodes, queue, waits
from dispatcher.fleet import FleetView
from dispatcher.models import Job, Node
from dispatcher.publisher import Publisher
from gym_raas_mqtt import protocol
from gym_raas_mqtt.protocol import JobState, NodeCommandKind, NodeStatus, TopicKind

log = logging.getLogger(__name__)

OPERATOR = "an operator"
"""Who a command came from when it came on the cmd topic or the dashboard."""
KINDS = (TopicKind.NODE_HEARTBEAT, TopicKind.NODE_SELFTEST, TopicKind.NODE_CMD)
"""The node topics :meth:`FleetHealth.on_message` handles."""


class FleetHealth:
    """The dispatcher's record of which nodes take no new job, and why.

    Args:
        publisher: sends node commands and job states.
        fleet: the dispatcher's view of the fleet (presence).
        registry: batched writes of node rows (presence, last seen).
        clock: wall clock [s since the epoch].
        errors_to_maintenance: consecutive ``error`` executions that put a node in maintenance.
    """

    def __init__(self, publisher: Publisher, fleet: FleetView, registry: nodes.NodeRegistry,
                 clock: Callable[[], float], errors_to_maintenance: int) -> None:
        self.publisher = publisher
        self.fleet = fleet
        self.registry = registry
        self.clock = clock
        self.errors_to_maintenance = errors_to_maintenance
        self.draining: set[str] = set()
        self.held: dict[str, str] = {}  # node → why it is in maintenance
        self.standby: set[str] = set()  # kept in standby

    @property
    def excluded(self) -> set[str]:
        """Nodes that get no new job: draining, in maintenance or kept in standby."""
        return self.draining | set(self.held) | self.standby

    def assignable(self) -> tuple[list[str], set[str]]:
        """``(free, busy)``: nodes that may take a job now, and the other usable nodes (a
        requeued job may wait for one of those rather than return where it failed)."""
        excluded = self.excluded
        free = self.fleet.idle(excluded)
        return free, set(self.fleet.usable(excluded)) - set(free)

    def load(self) -> None:
        """Read the flags from the database (at start: the database is the truth)."""
        self.draining, self.held = nodes.draining_nodes(), nodes.held_nodes()
        self.standby = nodes.standby_nodes()

    def refresh(self) -> None:
        """Pick up what others wrote (the dashboard), tell the nodes, and put nodes with too
        many consecutive errors in maintenance (a tick)."""
        draining, held, standby = nodes.draining_nodes(), nodes.held_nodes(), nodes.standby_nodes()
        K = NodeCommandKind
        told = [(n, K.DRAIN, f"drained by {OPERATOR}") for n in draining - self.draining]
        told += [(n, K.RESUME, f"resumed by {OPERATOR}") for n in self.draining - draining]
        told += [(n, K.MAINTENANCE, why) for n, why in held.items() if n not in self.held]
        told += [(n, K.CLEAR_MAINTENANCE, f"cleared by {OPERATOR}") for n in self.held
                 if n not in held]
        told += [(n, K.STANDBY, f"standby by {OPERATOR}") for n in standby - self.standby]
        told += [(n, K.WAKE, f"woken by {OPERATOR}") for n in self.standby - standby]
        # before sending: a command never precedes it
        self.draining, self.held, self.standby = draining, held, standby
        for node_id, kind, reason in told:
            self.publisher.command(node_id, kind, reason)
        self.check_errors()

    def check_errors(self, node_id: str | None = None, last_error: str | None = None) -> None:
        """Put nodes (or just ``node_id``) whose run of ``error`` executions is long enough in
        maintenance; ``last_error`` is the latest one's reason, for the node's."""
        for nid, streak in nodes.error_streaks(self.errors_to_maintenance).items():
            if node_id is not None and nid != node_id:
                continue
            why = f"{streak} consecutive job executions ended with a platform error"
            if last_error and nid == node_id:
                why += f" (last: {last_error[:300]})"
            self.hold(nid, why)

    def set_standby(self, node_ids: Collection[str], standby: bool, reason: str) -> set[str]:
        """Keep ``node_ids`` in standby (or wake them) now: recorded, excluded from assignment
        (or no longer), and told; returns the nodes whose flag changed."""
        known = nodes.set_standby(node_ids, standby, self.clock())
        if standby:
            self.standby |= known
        else:
            self.standby -= known
        for node_id in sorted(known):
            kind = NodeCommandKind.STANDBY if standby else NodeCommandKind.WAKE
            self.publisher.command(node_id, kind, reason)
        return known

    def hold(self, node_id: str, reason: str) -> None:
        """Put ``node_id`` in maintenance now: recorded, and the node is told."""
        if not nodes.set_maintenance(node_id, reason, self.clock()):
            log.warning("maintenance of unknown node %s not recorded: %s", node_id, reason)
            return
        self.held[node_id] = reason
        log.warning("node %s → maintenance: %s", node_id, reason)
        self.publisher.command(node_id, NodeCommandKind.MAINTENANCE, reason)

    def on_message(self, parsed: protocol.ParsedTopic, msg: protocol.Message, topic: str,
                   payload: bytes) -> None:
        """A node's heartbeat, self-test result, or a command on its cmd topic (:data:`KINDS`)."""
        node_id = parsed.node
        assert node_id is not None
        if isinstance(msg, protocol.NodeHeartbeat):
            now = self.clock()
            if self.fleet.on_heartbeat(node_id, msg, now):
                self.registry.note(node_id, last_seen=now)
        elif isinstance(msg, protocol.NodeSelfTest):
            self.registry.flush()  # the node's row first: its history refers to it
            self.on_selftest(node_id, msg)
        elif isinstance(msg, protocol.NodeCommand) and not self.publisher.sent_by_me(topic,
                                                                                     payload):
            self.on_command(node_id, msg)

    def after_change(self, job: Job) -> None:
        """The job changed: when its last execution ended ``error``, count it against its node
        and, if it was requeued, say where it waits."""
        requeued = job.job_state == JobState.QUEUED and job.attempts > 0
        if not (requeued or job.job_state == JobState.ERROR) or not job.node_id:
            return
        self.check_errors(job.node_id, queue.get_execution(job.id, job.attempts).reason)
        if requeued:
            self.refresh_waits()

    def refresh_waits(self) -> None:
        """Requeued jobs say where they wait, from the fleet as it is now."""
        excluded = self.excluded
        waits.refresh(self.publisher, self.fleet.usable(excluded), self.fleet.idle(excluded))

    def on_command(self, node_id: str, cmd: protocol.NodeCommand) -> None:
        """A command on a node's cmd topic that the dispatcher did not send (an operator's):
        record drain, resume, maintenance and clear_maintenance; the node acts on it itself."""
        kind = cmd.command
        if kind in (NodeCommandKind.DRAIN, NodeCommandKind.RESUME):
            draining = kind is NodeCommandKind.DRAIN
            known = nodes.set_draining(node_id, draining)
            if known and draining:
                self.draining.add(node_id)
            elif known:
                self.draining.discard(node_id)
        elif kind is NodeCommandKind.MAINTENANCE:
            reason = cmd.reason or f"maintenance by {OPERATOR}"
            known = nodes.set_maintenance(node_id, reason, self.clock())
            if known:
                self.held[node_id] = reason
        elif kind is NodeCommandKind.CLEAR_MAINTENANCE:
            known = nodes.clear_maintenance(node_id)
            self.held.pop(node_id, None)
        elif kind in (NodeCommandKind.STANDBY, NodeCommandKind.WAKE):
            standby = kind is NodeCommandKind.STANDBY
            nodes.set_standby([node_id], standby, self.clock())
            known = Node.get_or_none(Node.id == node_id) is not None
            self.standby = self.standby | {node_id} if standby else self.standby - {node_id}
        else:
            return  # cancel_job, rebirth: the node's business
        if known:
            log.info("node %s: %s by %s (%s)", node_id, kind.value, OPERATOR, cmd.reason)
        else:
            log.warning("node %s: %s for a node this dispatcher has never seen", node_id,
                        kind.value)

    def on_born(self, node_id: str) -> None:
        """The node came up on a new session: tell it again what it may have forgotten (and
        record its boot when it starts with a reset)."""
        if self.fleet.nodes[node_id].state is NodeStatus.RESETTING:
            nodes.record_boot(node_id, self.clock(), "birth")
        if node_id in self.draining:
            self.publisher.command(node_id, NodeCommandKind.DRAIN, f"drained by {OPERATOR}")
        if node_id in self.held:
            self.publisher.command(node_id, NodeCommandKind.MAINTENANCE, self.held[node_id])
        if node_id in self.standby:
            self.publisher.command(node_id, NodeCommandKind.STANDBY, "kept in standby")

    def on_selftest(self, node_id: str, msg: protocol.NodeSelfTest) -> None:
        """Record a node's self-test result in its history (its row must exist)."""
        if not nodes.record_selftest(node_id, msg.ok, msg.details, msg.ts,
                                     duration_s=msg.duration_s, max_error_rad=msg.max_error_rad,
                                     rms_error_rad=msg.rms_error_rad, reason=msg.reason):
            log.warning("self-test of unknown node %s not recorded", node_id)
