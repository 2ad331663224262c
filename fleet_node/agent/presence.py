"""The node's presence on the central broker: retained meta and state (birth), will and goodbye,
heartbeats and self-test reports.

House-style boundary 3 (Sparkplug's bdSeq): every CONNECT carries a will ``lost`` with a fresh
session number, raised and fsync'd first, so a late will is always older than the birth that
follows it; each (re)connection announces meta, then state, both retained at QoS 1; every status
change republishes the state; a clean exit publishes ``offline`` itself (a clean DISCONNECT sends no
will). Between state changes a heartbeat (QoS 0, not retained) keeps the fleet's "last seen"
fresh; it comes from the agent's control loop, so it also says that loop runs (the broker's
keepalive only proves paho's network thread does). Self-test results go out after the birth of
the connection they are sent on (queued while there is none).
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Callable

from fleet_node.agent.replies import SendCentral
from fleet_node.node_key import NodeKey
from fleet_node.session import SessionCounter
from gym_raas_mqtt import __version__
from gym_raas_mqtt.mqtt import Will
from gym_raas_mqtt.protocol import (DispatcherState, MotorState, NodeHeartbeat, NodeMeta,
                                    NodeSelfTest, NodeState, NodeStatus, TopicKind, topic)

log = logging.getLogger(__name__)

PENDING_REPORTS = 8
"""Self-test results kept while there is no connection (the oldest are dropped)."""


def node_meta(motor: MotorState | None, image_digest: str | None, ts: float,
              key: NodeKey | None = None) -> NodeMeta:
    """The node's description from its motor node's last state (``unknown`` before one), its
    runner image and its signing key's public half, at ``ts`` [s since the epoch]."""
    return NodeMeta(backend=(motor.backend if motor and motor.backend else "unknown"),
                    software_version=__version__,
                    calibration_id=(motor.calibration_id if motor and motor.calibration_id
                                    else "unknown"),
                    ts=ts, image_digest=image_digest, hostname=socket.gethostname()[:64],
                    public_key=key.public_key_b64 if key else None)


class Presence:
    """Publishes what the fleet knows of this node: its meta and its state.

    Args:
        node_id: this node.
        session: the durable session counter.
        meta: builds the node's current meta (backend, calibration, image).
        send: sends on the central broker; returns None while there is no connection.
        status: the state before the first announcement.
        will_delay_s: MQTT 5 will delay [s]: a reconnect within it publishes no ``lost``.
        heartbeat_s: period of the heartbeat [s].
        clock: wall clock [s since the epoch] for timestamps.
    """

    def __init__(self, node_id: str, session: SessionCounter, meta: Callable[[], NodeMeta],
                 send: SendCentral, *, status: NodeStatus, will_delay_s: int,
                 heartbeat_s: float, clock: Callable[[], float]) -> None:
        self.node_id = node_id
        self.session = session
        self._meta = meta
        self._send = send
        self._clock = clock
        self.will_delay_s = will_delay_s
        self.heartbeat_s = heartbeat_s
        self.state_topic = topic(TopicKind.NODE_STATE, node=node_id)
        self.meta_topic = topic(TopicKind.NODE_META, node=node_id)
        self.heartbeat_topic = topic(TopicKind.NODE_HEARTBEAT, node=node_id)
        self.selftest_topic = topic(TopicKind.NODE_SELFTEST, node=node_id)
        self._lock = threading.RLock()  # nobody publishes a state between a meta and its state
        self.status = status
        self.reason: str | None = None
        self._job_id: str | None = None
        self._born = False  # meta + state announced on the current connection
        self._last_meta: tuple[str, str, str | None] | None = None
        self._dispatcher_ts = 0.0  # the newest dispatcher birth seen
        self._next_beat = 0.0  # time.monotonic() of the next heartbeat
        self._pending: list[NodeSelfTest] = []  # reports waiting for a birth

    def meta(self) -> NodeMeta:
        """The node's meta as the next announcement would carry it."""
        return self._meta()

    def will(self) -> Will:
        """The retained last will of the next CONNECT: ``lost`` with a new session number."""
        try:
            session = self.session.next()
        except OSError as e:  # keep going: presence still works, ordering by session degrades
            log.error("session counter not written: %s", e)
            session = self.session.value
        return Will(self.state_topic,
                    NodeState(NodeStatus.LOST, session, self._clock(),
                              reason="agent connection lost").to_bytes(),
                    delay_s=self.will_delay_s)

    def goodbye(self) -> Will:
        """Go ``offline``; returns the retained state a clean exit publishes itself."""
        with self._lock:
            self.status, self.reason, self._job_id = NodeStatus.OFFLINE, "agent stopped", None
            return Will(self.state_topic, self._state().to_bytes(), qos=1, retain=True)

    def connection_lost(self) -> None:
        """The next connection announces itself again (paho's thread)."""
        self._born = False

    def announce(self) -> None:
        """Publish retained meta, then retained state (birth; also on rebirth)."""
        with self._lock:
            meta = self.meta()
            if self._send(self.meta_topic, meta) is None:
                return  # not connected yet: the connection's birth follows
            self._last_meta = (meta.backend, meta.calibration_id, meta.image_digest)
            self._born = True
            self._publish_state()
            pending, self._pending = self._pending, []
            for report in pending:
                self._send(self.selftest_topic, report)

    def beat(self, now: float) -> None:
        """Send a heartbeat if one is due (``now``: :func:`time.monotonic` [s]); nothing before
        this connection's birth."""
        if now < self._next_beat or not self._born:
            return
        self._next_beat = now + self.heartbeat_s
        self._send(self.heartbeat_topic, NodeHeartbeat(self.session.value, self._clock()))

    def report_selftest(self, result: NodeSelfTest) -> None:
        """Send a self-test result now, or after the next birth while there is no connection."""
        with self._lock:
            if self._born and self._send(self.selftest_topic, result) is not None:
                return
            self._pending = (self._pending + [result])[-PENDING_REPORTS:]

    def on_dispatcher_state(self, msg: DispatcherState) -> None:
        """Announce again when a newer dispatcher birth appears (it may have lost what we
        said); the first one is the retained birth the connection just subscribed to."""
        if msg.online and msg.ts > self._dispatcher_ts:
            first = self._dispatcher_ts == 0.0
            self._dispatcher_ts = msg.ts
            if not first:
                log.info("dispatcher birth (ts %.3f): re-announcing", msg.ts)
                self.announce()

    def announce_meta_if_changed(self) -> None:
        """Announce again if backend, calibration or image changed since the last birth."""
        meta = self.meta()
        if (meta.backend, meta.calibration_id, meta.image_digest) != self._last_meta:
            self.announce()

    def set(self, status: NodeStatus, reason: str | None = None,
            job_id: str | None = None) -> None:
        """Change the node's state and publish it (before this connection's birth, the birth
        carries it).

        Args:
            status: the new state.
            reason: why (maintenance), one line.
            job_id: the job a ``busy`` node runs.
        """
        with self._lock:
            self.status, self.reason = status, reason
            self._job_id = job_id if status is NodeStatus.BUSY else None
            born = self._born
        log.info("node %s: %s%s", self.node_id, status.value, f" ({reason})" if reason else "")
        if born:
            self._publish_state()

    def _state(self) -> NodeState:
        return NodeState(self.status, self.session.value, self._clock(), job_id=self._job_id,
                         reason=self.reason)

    def _publish_state(self) -> None:
        with self._lock:
            self._send(self.state_topic, self._state())
