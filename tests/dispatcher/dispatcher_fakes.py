"""Scripted fake fleet nodes for the dispatcher's service tests: real paho clients, real topics
(and the service tests' clock, settings and policy).

A :class:`FakeNode` speaks the node side of docs/job-lifecycle.md by hand: it publishes its retained
state (with a session and a ``lost`` will), collects what arrives on its ``jobs/next``, ``cmd`` and
update-reply topics, and sends the updates the test tells it to.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from dispatcher.config import DispatcherConfig
from dispatcher.limits import QueueLimits
from gym_raas_mqtt import mqtt, protocol
from gym_raas_mqtt.config import load
from gym_raas_mqtt.protocol import JobSource, JobState, NodeStatus, SourceKind, TopicKind

WAIT_S = 5.0
SRC = JobSource(SourceKind.GIT, url="https://example.org/u/ctrl.git")


class Clock:
    """An injected wall clock that only moves when told."""

    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def settings(broker, db_url: str, uid: str, **kw) -> DispatcherConfig:
    return load(DispatcherConfig, environ={}, database_url=db_url,
                mqtt_url=broker.url, mqtt_username=None, client_id=f"disp-{uid}",
                lost_grace_s=10.0, tick_s=0.05, **kw)


LIMITS = QueueLimits(accept_timeout_s=5.0, time_limit_grace_s=2.0, cancel_grace_s=5.0)


def wait_until(pred, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


class FakeNode:
    def __init__(self, address: mqtt.BrokerAddress, node_id: str, session: int = 1) -> None:
        self.node_id, self.session = node_id, session
        self.address = address
        self.next: queue.Queue[protocol.JobAssignment | None] = queue.Queue()
        self.replies: queue.Queue[tuple[bool, protocol.JobUpdateReply]] = queue.Queue()
        self.commands: queue.Queue[protocol.NodeCommand] = queue.Queue()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.state_now = (NodeStatus.IDLE, None)
        self.client: Any = None

    def start(self, state: NodeStatus = NodeStatus.IDLE, job_id: str | None = None) -> "FakeNode":
        self.state_now = (state, job_id)
        will = mqtt.Will(protocol.topic(TopicKind.NODE_STATE, node=self.node_id),
                         protocol.NodeState(state=NodeStatus.LOST, session=self.session,
                                            ts=time.time()).to_bytes())
        c = mqtt.make_client(self.address, f"fake-{self.node_id}-{self.session}", will=will)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_disconnect = lambda *a: self.connected.clear()
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.reconnect_delay_set(0.05, 0.5)
        self.client = c
        mqtt.connect(c, keepalive_s=5)
        c.loop_start()
        assert self.connected.wait(WAIT_S) and self.subscribed.wait(WAIT_S)
        return self

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        n = self.node_id
        client.subscribe([(protocol.topic(TopicKind.NODE_JOB_NEXT, node=n), 1),
                          (protocol.topic(TopicKind.NODE_CMD, node=n), 1),
                          (protocol.topic_filter(TopicKind.NODE_JOB_ACCEPTED, node=n), 1),
                          (protocol.topic_filter(TopicKind.NODE_JOB_REJECTED, node=n), 1)])
        self._publish_state(*self.state_now)  # birth on every (re)connect
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        parsed, m = protocol.decode(msg.topic, bytes(msg.payload))
        if parsed.kind == TopicKind.NODE_JOB_NEXT:
            self.next.put(m)
        elif parsed.kind == TopicKind.NODE_CMD:
            self.commands.put(m)
        else:
            self.replies.put((parsed.kind == TopicKind.NODE_JOB_ACCEPTED, m))

    def _publish_state(self, state: NodeStatus, job_id: str | None) -> Any:
        msg = protocol.NodeState(state=state, session=self.session, ts=time.time(), job_id=job_id)
        return self.client.publish(protocol.topic(TopicKind.NODE_STATE, node=self.node_id),
                                   msg.to_bytes(), qos=1, retain=True)

    def set_state(self, state: NodeStatus, job_id: str | None = None) -> None:
        self.state_now = (state, job_id)
        self._publish_state(state, job_id).wait_for_publish(WAIT_S)

    def assignment(self, timeout_s: float = WAIT_S) -> protocol.JobAssignment:
        """The next non-empty jobs/next payload (skips clears)."""
        deadline = time.monotonic() + timeout_s
        while True:
            m = self.next.get(timeout=max(0.0, deadline - time.monotonic()))
            if m is not None:
                return m

    def cleared(self, timeout_s: float = WAIT_S) -> None:
        """Wait for an empty jobs/next (the dispatcher withdrew the assignment)."""
        deadline = time.monotonic() + timeout_s
        while self.next.get(timeout=max(0.0, deadline - time.monotonic())) is not None:
            pass

    def send(self, job_id: str, execution: int, status: JobState, version: int,
             **details: Any) -> None:
        upd = protocol.JobUpdate(job_id=job_id, execution=execution, expected_version=version,
                                 status=status, ts=time.time(), details=details)
        self.client.publish(protocol.topic(TopicKind.NODE_JOB_UPDATE, node=self.node_id,
                                           job=job_id), upd.to_bytes(), qos=1)

    def reply(self, timeout_s: float = WAIT_S) -> tuple[bool, protocol.JobUpdateReply]:
        return self.replies.get(timeout=timeout_s)

    def update(self, job_id: str, execution: int, status: JobState, version: int,
               **details: Any) -> tuple[bool, protocol.JobUpdateReply]:
        self.send(job_id, execution, status, version, **details)
        return self.reply()

    def run(self, a: protocol.JobAssignment, status: JobState = JobState.SUCCEEDED,
            **details: Any) -> int:
        """Accept, run and finish assignment ``a`` like a well-behaved agent; final version."""
        ok, r = self.update(a.job_id, a.execution, JobState.RUNNING, a.version)
        assert ok, r
        self.set_state(NodeStatus.BUSY, a.job_id)
        ok, r = self.update(a.job_id, a.execution, status, r.version, **details)
        assert ok, r
        self.set_state(NodeStatus.IDLE)
        return r.version

    def crash(self) -> None:
        """Vanish without DISCONNECT: the broker publishes the ``lost`` will."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        try:
            self.client.disconnect()
            self.client.loop_stop()
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass


class Watcher:
    """A plain subscriber recording (topic, payload, retain) of everything under a filter."""

    def __init__(self, address: mqtt.BrokerAddress, *filters: str) -> None:
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.subscribed = threading.Event()
        c = mqtt.make_client(address)
        c.on_connect = lambda cl, *a: cl.subscribe([(f, 1) for f in filters])
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = lambda cl, ud, m: self.messages.put((m.topic, bytes(m.payload), m.retain))
        mqtt.connect(c)
        c.loop_start()
        assert self.subscribed.wait(WAIT_S)
        self.client = c

    def wait_for(self, pred: Any, timeout_s: float = WAIT_S) -> tuple[str, bytes, bool]:
        deadline = time.monotonic() + timeout_s
        while True:
            item = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            if pred(*item):
                return item

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
