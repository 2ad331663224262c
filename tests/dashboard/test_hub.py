"""The live-update fan-out: bounded queues, stream caps, per-user authorization, bad payloads."""

from __future__ import annotations

import time
from typing import Any

import pytest

from dashboard.hub import Hub, Subscriber, TooManyStreams
from gym_raas_mqtt import mqtt, protocol
from gym_raas_mqtt.protocol import JobState, JobStatus, LogChunk, NodeState, NodeStatus
from gym_raas_mqtt.protocol import TelemetryBatch, TopicKind


def telemetry(job: str, seq0: int, n: int = 2) -> tuple[str, bytes]:
    seq = tuple(range(seq0, seq0 + n))
    batch = TelemetryBatch(job_id=job, node_id="n1", episode_id=1, seq=seq,
                           t=tuple(s * 0.05 for s in seq), theta=(0.1,) * n, theta_dot=(0.0,) * n,
                           u_desired=(0.5,) * n, u_applied=(0.5,) * n, reward=(-1.0,) * n,
                           deadline_miss=(False,) * n)
    return protocol.topic(TopicKind.JOB_TELEMETRY, owner=owner_of[job], job=job), batch.to_bytes()


owner_of = {"j-alice": "alice", "j-bob": "bob"}


def state(job: str, st: JobState = JobState.RUNNING) -> tuple[str, bytes]:
    msg = JobStatus(job_id=job, owner=owner_of[job], state=st, ts=1.0, node_id="n1")
    return protocol.topic(TopicKind.JOB_STATE, owner=owner_of[job], job=job), msg.to_bytes()


def node(node_id: str, st: NodeStatus = NodeStatus.IDLE) -> tuple[str, bytes]:
    return (protocol.topic(TopicKind.NODE_STATE, node=node_id),
            NodeState(state=st, session=1, ts=2.0).to_bytes())


def test_queue_is_bounded_and_drops_oldest() -> None:
    hub = Hub(queue_size=4)
    s = hub.open("alice", jobs=["j-alice"])
    s.get(0)  # the snapshot (bus state)
    for i in range(10):
        hub.publish_message(*telemetry("j-alice", i * 2))
    events = s.get(0)
    assert len(events) == 4 and s.dropped == 6
    assert [e.data["seq"][0] for e in events] == [12, 14, 16, 18]  # the newest survive
    assert [e.id for e in events] == sorted(e.id for e in events)
    hub.close(s)
    assert hub.dropped_total == 6 and hub.open_streams == 0


def test_stream_caps_global_and_per_user() -> None:
    hub = Hub(max_streams=3, max_streams_per_user=2)
    a1, a2 = hub.open("alice"), hub.open("alice")
    with pytest.raises(TooManyStreams, match="you have 2"):
        hub.open("alice")
    b1 = hub.open("bob")
    with pytest.raises(TooManyStreams, match="limit of this server"):
        hub.open("carol")
    hub.close(a1)
    hub.open("carol")  # a slot is free again
    assert hub.open_streams == 3
    for s in (a2, b1):
        hub.close(s)


def test_users_only_see_their_own_jobs_and_everyone_sees_the_fleet() -> None:
    hub = Hub()
    alice = hub.open("alice", jobs=["j-alice", "j-bob"], all_jobs=True, fleet=True)
    bob = hub.open("bob", all_jobs=True)
    root = hub.open("root", admin=True, jobs=["j-bob"], fleet=True)
    for s in (alice, bob, root):
        s.get(0)
    for msg in (telemetry("j-bob", 0), state("j-bob"), state("j-alice"), node("n1")):
        hub.publish_message(*msg)
    seen = {name: [(e.name, e.job_id) for e in s.get(0)]
            for name, s in (("alice", alice), ("bob", bob), ("root", root))}
    # alice asked for bob's job but gets nothing of it
    assert seen["alice"] == [("state", "j-alice"), ("node", None)]
    # bob gets his job's state (jobs list) but not its telemetry (he did not open that job)
    assert seen["bob"] == [("state", "j-bob")]
    # an admin sees another user's job (but only the jobs it asked for)
    assert seen["root"] == [("telemetry", "j-bob"), ("state", "j-bob"), ("node", None)]


def test_late_joiner_gets_snapshot_of_what_it_may_see() -> None:
    hub = Hub()
    hub.set_connected(True)
    for msg in (node("n1", NodeStatus.BUSY), state("j-alice"), telemetry("j-alice", 0),
                state("j-bob"), telemetry("j-bob", 0)):
        hub.publish_message(*msg)
    hub.publish_message(protocol.topic(TopicKind.JOB_LOG, owner="alice", job="j-alice"),
                        LogChunk(job_id="j-alice", lines=("hello",)).to_bytes())
    s = hub.open("alice", jobs=["j-alice"], fleet=True)
    got = [(e.name, e.job_id) for e in s.get(0)]
    assert got[0] == ("bus", None)
    assert sorted(got[1:]) == sorted([("node", None), ("state", "j-alice"),
                                      ("telemetry", "j-alice"), ("log", "j-alice")])
    assert hub.live_progress("j-alice") == {"episode_id": 1, "step": 1, "episode_reward": -2.0,
                                            "theta": 0.1}
    assert hub.node_snapshot()["n1"]["state"]["state"] == "busy"


@pytest.mark.parametrize("topic,payload", [
    ("raas/v1/jobs/alice/j-alice/telemetry", b"{not json"),
    ("raas/v1/jobs/alice/j-alice/telemetry", b'{"job_id": "j-alice", "seq": [1], "t": []}'),
    ("raas/v1/jobs/alice/j-alice/state", b'{"job_id": "j-alice", "owner": "alice", "ts": NaN}'),
    ("raas/v1/nodes/../state", b"{}"),
    ("somewhere/else", b"x"),
    ("raas/v1/jobs/alice/j-alice/telemetry", b"\xff\xfe" * 10),
])
def test_invalid_messages_are_dropped_without_raising(topic: str, payload: bytes) -> None:
    hub = Hub()
    s = hub.open("alice", jobs=["j-alice"], fleet=True)
    s.get(0)
    assert hub.publish_message(topic, payload) is None
    assert s.get(0) == [] and hub.rejected == 1


def test_cleared_retained_node_state_forgets_the_node() -> None:
    hub = Hub()
    hub.publish_message(*node("n1"))
    hub.publish_message(protocol.topic(TopicKind.NODE_STATE, node="n1"), b"")
    assert hub.node_snapshot() == {"n1": {}}


def test_bus_disconnect_is_announced() -> None:
    hub = Hub()
    s = hub.open("alice")
    s.get(0)
    hub.set_connected(False)
    (ev,) = s.get(0)
    assert ev.name == "bus" and ev.data == {"connected": False}
    assert ev.encode().startswith(f"id: {ev.id}\nevent: bus\ndata: ".encode())


class FakeLink:
    """Stands in for :class:`gym_raas_mqtt.mqtt.Link`: records how it was built and driven."""

    def __init__(self, address: Any, client_id: str, **options: Any) -> None:
        self.address, self.client_id, self.options = address, client_id, options
        self.started: list[float | None] = []
        self.closed = False

    def start(self, timeout_s: float | None = 10.0) -> "FakeLink":
        self.started.append(timeout_s)
        return self

    def close(self, goodbye: Any = None, timeout_s: float = 5.0) -> None:
        self.closed = True


def test_subscriber_wires_its_link_to_the_hub() -> None:
    hub = Hub()
    links: list[FakeLink] = []

    def factory(*args: Any, **options: Any) -> FakeLink:
        links.append(FakeLink(*args, **options))
        return links[-1]

    address = mqtt.BrokerAddress("tcp", "127.0.0.1", 1883, "dashboard", "pw")
    sub = Subscriber(hub, address, link_factory=factory)
    anonymous = mqtt.BrokerAddress("tcp", "127.0.0.1", 1883)
    Subscriber(hub, anonymous, link_factory=factory)
    Subscriber(hub, anonymous, link_factory=factory)
    link = links[0]
    # the broker binds a login to one client id, its username (issue 10): the subscriber uses it;
    # without a login (tests) each subscriber gets its own id, never a shared one
    assert link.address is address and link.client_id == "dashboard"
    assert links[1].client_id != links[2].client_id
    assert link.options["raw"] is True  # the hub decodes, and counts what it rejects
    assert sorted(link.options["subscriptions"]) == sorted(
        (protocol.topic_filter(k), protocol.TOPICS[k].qos)
        for k in (TopicKind.JOB_STATE, TopicKind.JOB_TELEMETRY, TopicKind.JOB_LOG,
                  TopicKind.NODE_STATE, TopicKind.NODE_META, TopicKind.NODE_HEARTBEAT))
    sub.start()
    assert link.started == [None]  # background: the dashboard serves while the broker is away

    s = hub.open("alice", jobs=["j-alice"], fleet=True)
    s.get(0)
    link.options["on_up"]()
    link.options["on_message"](*state("j-alice"))
    link.options["on_message"]("raas/v1/jobs/alice/j-alice/state", b"{not json")
    link.options["on_down"]()
    assert [(e.name, e.data.get("connected")) for e in s.get(0)] == [
        ("bus", True), ("state", None), ("bus", False)]
    assert hub.rejected == 1 and not hub.connected
    sub.stop()
    assert link.closed


@pytest.mark.broker
def test_subscriber_on_the_real_broker(broker: Any, uid: str) -> None:
    hub = Hub()
    sub = Subscriber(hub, broker.service("dashboard"))
    sub.start()
    try:
        deadline = time.monotonic() + 10
        while not hub.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert hub.connected
        pub = mqtt.Link(broker.admin, f"pub-{uid}", name="test").start()
        try:
            pub.send(protocol.topic(TopicKind.NODE_STATE, node=uid),
                     NodeState(state=NodeStatus.IDLE, session=1, ts=2.0)).wait_for_publish(5)
            while uid not in hub.node_snapshot() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert hub.node_snapshot()[uid]["state"]["state"] == "idle"
            pub.send(protocol.topic(TopicKind.NODE_STATE, node=uid), None).wait_for_publish(5)
        finally:
            pub.close()
    finally:
        sub.stop()
    assert not hub.connected
