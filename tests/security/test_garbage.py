"""Valid logins sending garbage (issue 10, item 4): every service stays up, logs exactly one line per
message it drops and never a traceback, and no real update is lost.

The services run for real on real brokers: the dispatcher (with its relay), a fleet node's agent
and motor node, and the dashboard's live-update hub. Every role publishes malformed payloads to
every topic its ACL allows (broker_config/acl.py) — one message at a time, and the test waits for
each consumer of that topic to log its one "dropped" line. Then out-of-order but well-formed
messages, then a real job, which must run end to end.

A login holds one connection at a time (logins are bound to client ids), so the garbage of the
logins the services under test are using (the dispatcher's, the real node's agent and motor
node's) is sent by the operator's admin login, on exactly the topics that role may publish; the
other roles (another node's agent and bridge, a job, a user) use their own logins.

Finding covered: "The dispatcher drops node updates" (a node ``meta`` before its state failed the
batch of node updates with a NOT NULL traceback), and deliverable 4 as a whole.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from broker_config import acl, provision
from dashboard.hub import Hub, Subscriber
from dispatcher import queue as Q
from dispatcher.models import Node
from gym_raas_mqtt import protocol, results
from gym_raas_mqtt.mqtt import BrokerAddress, Link
from gym_raas_mqtt.protocol import JobSource, JobState, NodeStatus, SourceKind
from gym_raas_mqtt.protocol import TopicKind as K
from tests.fleet_node.agent.agent_harness import git_repo, make_node, wait_for
from tests.fleet_node.agent.test_agent_jobs import RUN_ENV, dispatcher  # noqa: F401

pytestmark = pytest.mark.broker

GARBAGE = (b"\x00\xff\xfe", b"{", b"[]", b"null", b"42", b'{"unknown": 1}', b'{"x": NaN}',
           b'{"state": 12, "session": "one"}', b"[" * 5000, b"x" * (600 * 1024))
"""Payloads no message type accepts (the empty payload is not here: it clears a retained one)."""

# Which service logs the drop of a message on each topic kind (logger names)
DISPATCHER, RELAY, HUB = "dispatcher.service", "dispatcher.relay", "dashboard.hub"
AGENT_LINK, MOTOR = "gym_raas_mqtt.mqtt.link", "fleet_node.motor.node"


class DropLog(logging.Handler):
    """Counts "dropped" records per logger, and keeps every record with a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: dict[str, int] = {}
        self.tracebacks: list[logging.LogRecord] = []
        self.multiline: list[str] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        with self._lock:
            if record.exc_info or "Traceback" in msg:
                self.tracebacks.append(record)
            if record.levelno >= logging.WARNING and "\n" in msg:
                self.multiline.append(msg[:200])
            if "dropped" in msg and record.levelno >= logging.WARNING:
                self.counts[record.name] = self.counts.get(record.name, 0) + 1

    def count(self, name: str) -> int:
        with self._lock:
            return self.counts.get(name, 0)


@pytest.fixture
def drops():
    handler = DropLog()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old)


class Sender:
    """One login's connection (its own client id; admin: any)."""

    def __init__(self, address: BrokerAddress, node: str | None = None) -> None:
        cid = acl.client_id(address.username, node) if address.username != "admin" else None
        self.link = Link(address, cid or f"fuzz-{time.monotonic_ns()}", name="fuzz").start(5)

    def send(self, topic: str, payload: bytes, qos: int = 1) -> int:
        info = self.link.publish(topic, payload, qos=qos)
        if qos:
            info.wait_for_publish(5)
        return info.rc

    def close(self) -> None:
        self.link.close()


def fuzz(sender: Sender, topic: str, consumers: tuple[str, ...], drops: DropLog) -> int:
    """Send every garbage payload to ``topic``; each consumer must log exactly one drop each."""
    for payload in GARBAGE:
        before = {c: drops.count(c) for c in consumers}
        sender.send(topic, payload)
        for c in consumers:
            wait_for(lambda c=c: drops.count(c) >= before[c] + 1, 10,
                     f"{c} to drop {payload[:20]!r} on {topic}")
        time.sleep(0.02)  # a second line for the same message would show up here
        for c in consumers:
            assert drops.count(c) == before[c] + 1, (c, topic, payload[:40])
    return len(GARBAGE)


def test_garbage_from_every_role_leaves_every_service_up(broker, tmp_path, uid, drops):
    node = make_node(broker, tmp_path, f"g{uid}")
    other = f"o{uid}"  # another node: its agent's and bridge's own logins send garbage
    hub = Hub()
    sub = Subscriber(hub, broker.service("dashboard"))
    senders: list[Sender] = []
    try:
        node.start_motor()
        agent = node.start_agent()
        sub.start()
        wait_for(lambda: hub.connected, 10, "the hub's connection")
        wait_for(lambda: agent.status is NodeStatus.IDLE, 30, "the agent idle")
        admin = Sender(broker.admin)
        local_admin = Sender(node.local.admin_address)
        other_node = Sender(broker.address(provision.node_username(other),
                                           provision.ensure_node(broker.admin, other)))
        other_bridge = Sender(broker.address(provision.bridge_username(other),
                                             provision.ensure_bridge(broker.admin, other)))
        user, pw = provision.create_job_client(node.local.admin_address, node.node_id, f"j{uid}")
        job = Sender(node.local.unix_address(user, pw))
        senders += [admin, local_admin, other_node, other_bridge, job]
        n = node.node_id
        sent = 0
        # the dispatcher's topics, consumed by the agent (no dispatcher runs yet) and the hub
        for kind in (K.NODE_JOB_NEXT, K.NODE_CMD):
            sent += fuzz(admin, protocol.topic(kind, node=n), (AGENT_LINK,), drops)
        for kind in (K.NODE_JOB_ACCEPTED, K.NODE_JOB_REJECTED):
            sent += fuzz(admin, protocol.topic(kind, node=n, job="j1"), (AGENT_LINK,), drops)
        sent += fuzz(admin, protocol.topic(K.DISPATCHER_STATE), (AGENT_LINK,), drops)
        for kind in (K.JOB_STATE, K.JOB_TELEMETRY, K.JOB_LOG):
            sent += fuzz(admin, protocol.topic(kind, owner="alice", job="j1"), (HUB,), drops)
        # the motor node's topics (consumed by the agent), the agent's (by the motor node),
        # a job's (by the motor node) — on the node-local broker
        for kind in (K.ENV_MOTOR_STATE, K.ENV_SELFTEST_REPLY):
            sent += fuzz(local_admin, protocol.topic(kind, node=n), (AGENT_LINK,), drops)
        for kind in (K.ENV_ESTOP, K.ENV_JOB, K.ENV_SELFTEST):
            sent += fuzz(local_admin, protocol.topic(kind, node=n), (MOTOR,), drops)
        for kind in (K.ENV_ACT, K.ENV_RESET, K.ENV_STATE):
            sent += fuzz(job, protocol.topic(kind, node=n), (MOTOR,), drops)
        assert node.motor._thread.is_alive() and agent.status is NodeStatus.IDLE
        assert sent and not drops.tracebacks and not drops.multiline
    finally:
        for s in senders:
            s.close()
        sub.stop()
        node.close()
    assert not drops.tracebacks, [r.getMessage()[:200] for r in drops.tracebacks]


def test_garbage_to_the_dispatcher_loses_no_update(broker, tmp_path, uid, drops, dispatcher):
    """Node-role and bridge-role garbage reaches the dispatcher (and the hub); interleaved real
    updates, out-of-order messages and then a real job all come through."""
    node = make_node(broker, tmp_path, f"h{uid}", bridged=True)
    other = f"p{uid}"
    hub = Hub()
    sub = Subscriber(hub, broker.service("dashboard"))
    senders: list[Sender] = []
    try:
        node.start_motor()
        agent = node.start_agent()
        sub.start()
        wait_for(lambda: hub.connected, 10, "the hub's connection")
        wait_for(lambda: agent.status is NodeStatus.IDLE, 30, "the agent idle")
        agent_login = Sender(broker.address(provision.node_username(other),
                                            provision.ensure_node(broker.admin, other)))
        bridge = Sender(broker.address(provision.bridge_username(other),
                                       provision.ensure_bridge(broker.admin, other)))
        operator = Sender(broker.admin)  # raas node send's login: the dispatcher reads cmd
        senders += [agent_login, bridge, operator]
        # a node's meta before its state: the registry creates a complete row (no NOT NULL)
        meta = protocol.NodeMeta(backend="sim", software_version="x", calibration_id="c",
                                 ts=time.time())
        agent_login.send(protocol.topic(K.NODE_META, node=other), meta.to_bytes())
        for session in (1, 2, 3):  # real updates interleaved with garbage
            fuzz(agent_login, protocol.topic(K.NODE_STATE, node=other), (DISPATCHER, HUB), drops)
            fuzz(agent_login, protocol.topic(K.NODE_META, node=other), (DISPATCHER, HUB), drops)
            state = protocol.NodeState(NodeStatus.MAINTENANCE, session, time.time(),
                                       reason=f"real update {session}")
            agent_login.send(protocol.topic(K.NODE_STATE, node=other), state.to_bytes())
        fuzz(agent_login, protocol.topic(K.NODE_JOB_UPDATE, node=other, job="j1"),
             (DISPATCHER,), drops)
        fuzz(agent_login, protocol.topic(K.NODE_JOB_LOG, node=other, job="j1"), (RELAY,),
             drops)
        fuzz(agent_login, protocol.topic(K.NODE_HEARTBEAT, node=other), (DISPATCHER, HUB),
             drops)
        fuzz(agent_login, protocol.topic(K.NODE_SELFTEST, node=other), (DISPATCHER,), drops)
        fuzz(operator, protocol.topic(K.NODE_CMD, node=other), (DISPATCHER,), drops)
        fuzz(bridge, protocol.topic(K.NODE_JOB_TELEMETRY, node=other, job="j1"), (RELAY,),
             drops)
        bridge.send(protocol.topic(K.NODE_BRIDGE, node=other), b"not 0 or 1")
        # well-formed but out of order: a late will of an old session, an update for a job this
        # node never held, a log of a job it does not hold
        late = protocol.NodeState(NodeStatus.LOST, 1, time.time())
        agent_login.send(protocol.topic(K.NODE_STATE, node=other), late.to_bytes())
        upd = protocol.JobUpdate(job_id="nosuchjob", execution=1, expected_version=1,
                                 status=JobState.SUCCEEDED, ts=time.time())
        agent_login.send(protocol.topic(K.NODE_JOB_UPDATE, node=other, job="nosuchjob"),
                         upd.to_bytes())
        agent_login.send(protocol.topic(K.NODE_JOB_LOG, node=other, job="nosuchjob"),
                         protocol.LogChunk(job_id="nosuchjob", lines=("forged",)).to_bytes())
        dispatcher.wait_idle()
        time.sleep(0.3)
        dispatcher.wait_idle()
        row = wait_for(lambda: (lambda r: r if r and r.session == 3 else None)(
            Node.get_or_none(Node.id == other)), 10, "the node row")
        assert (row.state, row.session, row.backend) == ("maintenance", 3, "sim")
        assert dispatcher.connected.is_set() and dispatcher.nodes[other].session == 3
        # and a real job still runs end to end on the real node, live telemetry included
        url = git_repo(tmp_path / "repo", {"run.py": RUN_ENV})
        job_id = Q.enqueue("alice", JobSource(SourceKind.GIT, url=url), 30,
                           limits=dispatcher.limits).id
        stream = hub.open("alice", jobs=[job_id])  # the job page's stream
        done = wait_for(lambda: (lambda j: j if j.job_state.terminal else None)(
            Q.get_job(job_id)), 60, "the job to end")
        assert done.job_state is JobState.SUCCEEDED, done.reason
        assert results.load_summary(node.store, job_id)["steps"] == 60
        names = {e.name for e in stream.get(0)}
        assert {"state", "telemetry", "log"} <= names, (names, dispatcher.relay.relayed,
                                                        dispatcher.relay.dropped)
        hub.close(stream)
    finally:
        for s in senders:
            s.close()
        sub.stop()
        node.close()
    assert not drops.tracebacks, [r.getMessage()[:200] for r in drops.tracebacks]
    assert not drops.multiline, drops.multiline[:3]
