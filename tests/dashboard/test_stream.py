"""Live updates end to end: a real Mosquitto, the dashboard's single subscriber, a real waitress
server, and server-sent events read over HTTP."""

from __future__ import annotations

import queue
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from dashboard_helpers import make_user
from gym_raas_mqtt import mqtt, protocol
from gym_raas_mqtt.cli.api import Api
from gym_raas_mqtt.protocol import JobState, JobStatus, LogChunk, TelemetryBatch, TopicKind

pytestmark = pytest.mark.broker


def batch(job: str, seq0: int, n: int = 5) -> TelemetryBatch:
    seq = tuple(range(seq0, seq0 + n))
    return TelemetryBatch(job_id=job, node_id="node-a", episode_id=1, seq=seq,
                          t=tuple(s * 0.05 for s in seq), theta=(3.0,) * n,
                          theta_dot=(0.1,) * n, u_desired=(2.5,) * n, u_applied=(2.0,) * n,
                          reward=(-9.0,) * n, deadline_miss=(False,) * n)


def collect(api: Api, query: dict[str, str]) -> "queue.Queue[tuple[str, Any]]":
    out: queue.Queue = queue.Queue()

    def run() -> None:
        try:
            for item in api.events(query, timeout=10):
                out.put(item)
        except Exception as e:  # surfaced to the test through the queue
            out.put(("error", repr(e)))

    threading.Thread(target=run, daemon=True).start()
    return out


def wait_for(events: "queue.Queue", name: str, timeout_s: float = 5.0,
             match: Any = lambda data: True) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            got, data = events.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if got == name and match(data):
            return data
        assert got != "error", data
    raise AssertionError(f"no {name!r} event within {timeout_s} s")


def test_telemetry_published_on_the_broker_arrives_as_sse(live: Any, uid: str) -> None:
    alice, bob = make_user(live.app, uid + "a"), make_user(live.app, uid + "b")
    api_a, api_b = Api(live.url, alice.token), Api(live.url, bob.token)
    job_a = api_a.json("POST", "/api/v1/jobs", {"url": "https://x.org/a"})["id"]
    job_b = api_b.json("POST", "/api/v1/jobs", {"url": "https://x.org/b"})["id"]
    events = collect(api_a, {"job": job_a, "jobs": "1"})
    assert wait_for(events, "bus") == {"connected": True}

    # bob's job first: alice must never see it
    live.pub.publish(protocol.topic(TopicKind.JOB_TELEMETRY, owner=bob.name, job=job_b),
                     batch(job_b, 0).to_bytes(), qos=0)
    live.pub.publish(protocol.topic(TopicKind.JOB_STATE, owner=alice.name, job=job_a),
                     JobStatus(job_id=job_a, owner=alice.name, state=JobState.RUNNING, ts=1.0,
                               execution=1, node_id="node-a").to_bytes(), qos=1, retain=True)
    assert wait_for(events, "state")["state"] == "running"
    live.pub.publish(protocol.topic(TopicKind.JOB_TELEMETRY, owner=alice.name, job=job_a),
                     batch(job_a, 40).to_bytes(), qos=0)
    data = wait_for(events, "telemetry")
    assert data["job_id"] == job_a and data["seq"] == [40, 41, 42, 43, 44]
    live.pub.publish(protocol.topic(TopicKind.JOB_LOG, owner=alice.name, job=job_a),
                     LogChunk(job_id=job_a, seq=1, lines=("swing-up done",)).to_bytes())
    assert wait_for(events, "log")["lines"] == ["swing-up done"]
    # a malformed payload is dropped; the stream carries on
    live.pub.publish(protocol.topic(TopicKind.JOB_TELEMETRY, owner=alice.name, job=job_a), b"{bad")
    live.pub.publish(protocol.topic(TopicKind.JOB_TELEMETRY, owner=alice.name, job=job_a),
                     batch(job_a, 45).to_bytes())
    assert wait_for(events, "telemetry")["seq"][0] == 45
    seen = []
    while not events.empty():
        seen.append(events.get_nowait())
    assert all(d.get("job_id") != job_b for _, d in seen if isinstance(d, dict))
    # the API's live progress comes from the same subscriber (the CLI's progress line)
    progress = api_a.json("GET", f"/api/v1/jobs/{job_a}")["live"]
    assert progress["step"] == 49 and progress["episode_reward"] == pytest.approx(-90.0)


def test_stream_auth_and_caps(live: Any, uid: str) -> None:
    alice, bob = make_user(live.app, uid + "a"), make_user(live.app, uid + "b")
    job_b = Api(live.url, bob.token).json("POST", "/api/v1/jobs", {"url": "https://x.org/b"})["id"]

    def status(path: str, token: str | None) -> int:
        req = urllib.request.Request(live.url + path)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    assert status("/stream?fleet=1", None) == 401
    assert status(f"/stream?job={job_b}", alice.token) == 403
    streams = [collect(Api(live.url, alice.token), {"fleet": "1"}) for _ in range(3)]
    for s in streams:
        wait_for(s, "bus")
    assert status("/stream?fleet=1", alice.token) == 503  # cap of 3 reached
    hub = live.app.extensions["raas_hub"]
    assert hub.open_streams == 3
    # keep-alives keep flowing on idle streams (0.3 s here); a node event reaches all three
    live.pub.publish(protocol.topic(TopicKind.NODE_STATE, node=uid + "z"),
                     protocol.NodeState(state=protocol.NodeStatus.IDLE, session=3,
                                        ts=time.time()).to_bytes(), qos=1)
    for s in streams:
        wait_for(s, "node", match=lambda d: d["node_id"] == uid + "z")


def test_users_get_broker_credentials_for_their_own_job_topics(live: Any, broker: Any,
                                                               uid: str) -> None:
    alice = make_user(live.app, uid + "a")
    api = Api(live.url, alice.token)
    creds = api.json("POST", "/api/v1/me/broker-credentials")
    assert creds["username"] == f"user-{alice.name}"
    assert creds["topic_filter"] == f"raas/v1/jobs/{alice.name}/+/#"
    job = api.json("POST", "/api/v1/jobs", {"url": "https://x.org/a"})["id"]
    got: queue.Queue = queue.Queue()
    # the login may connect only with its own client id, its username
    sub = mqtt.make_client(broker.address(creds["username"], creds["password"]), creds["username"])
    sub.on_message = lambda c, u, m: got.put(m.topic)
    mqtt.connect(sub)
    sub.loop_start()
    try:
        sub.subscribe(creds["topic_filter"], qos=1)
        sub.subscribe(protocol.topic_filter(TopicKind.JOB_TELEMETRY, owner=uid + "b"), qos=0)
        time.sleep(0.3)
        live.pub.publish(protocol.topic(TopicKind.JOB_TELEMETRY, owner=uid + "b", job="j-bob"),
                         batch("j-bob", 0).to_bytes())
        topic = protocol.topic(TopicKind.JOB_TELEMETRY, owner=alice.name, job=job)
        live.pub.publish(topic, batch(job, 0).to_bytes())
        assert got.get(timeout=5) == topic  # bob's message (sent first) never arrives
        time.sleep(0.2)
        assert got.empty()
    finally:
        sub.disconnect()
        sub.loop_stop()
