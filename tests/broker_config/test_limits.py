"""Guards for the measured broker settings: TCP_NODELAY (no 40 ms Nagle stalls) and the raised
in-flight/queue limits (no silent drops in a QoS 1 burst). Numbers: bench/ and bus-protocol.md."""

from __future__ import annotations

import statistics
import time

import pytest

from gym_raas_mqtt.protocol import TopicKind as K
from gym_raas_mqtt.protocol import topic

pytestmark = pytest.mark.broker


def test_qos1_round_trip_has_no_nagle_stall(broker, probe, uid):
    """50 QoS 1 publish → delivery round trips; Nagle + delayed ACK would make each ~40 ms."""
    p = probe(broker.admin)
    t = topic(K.JOB_LOG, owner=f"o{uid}", job="rtt")
    assert p.subscribe(t) == 1
    rtts = []
    for i in range(50):
        start = time.perf_counter()
        p.client.publish(t, str(i).encode(), qos=1)
        assert p.expect(2)[1] == str(i).encode()
        rtts.append(time.perf_counter() - start)
    p50 = statistics.median(rtts)
    assert p50 < 0.020, f"QoS 1 round trip p50 {p50 * 1e3:.1f} ms"


def _burst(address, probe, t: str, n: int = 10_000) -> int:
    """Publish ``n`` QoS 1 messages to a subscriber that consumes at most ~5k msg/s (sleeps 10 ms
    every 50 messages, like a real service doing work); return how many distinct ones arrived."""
    seen: set[int] = set()
    count = [0]

    def on_message(client, userdata, msg):
        seen.add(int.from_bytes(msg.payload, "big"))
        count[0] += 1
        if count[0] % 50 == 0:
            time.sleep(0.01)

    sub = probe(address)
    sub.client.on_message = on_message
    assert sub.subscribe(t) == 1
    pub = probe(address, max_inflight=100)
    window = []
    for i in range(n):
        window.append(pub.client.publish(t, i.to_bytes(4, "big"), qos=1))
        if len(window) >= 1000:  # paho scans its backlog linearly: keep it short
            window.pop(0).wait_for_publish(10)
    for info in window:
        info.wait_for_publish(10)
    deadline, last = time.monotonic() + 30, -1
    while len(seen) != last and len(seen) < n and time.monotonic() < deadline:
        last = len(seen)
        time.sleep(0.5)
    return len(seen)


def test_qos1_burst_of_10k_loses_nothing(broker, probe, uid):
    """With the project's limits (100 in flight, 20000 queued) nothing is lost."""
    n = _burst(broker.admin, probe, topic(K.JOB_LOG, owner=f"o{uid}", job="burst"))
    assert n == 10_000, f"lost {10_000 - n} of 10000 QoS 1 messages"


@pytest.mark.slow
def test_mosquitto_defaults_would_drop_silently(tmp_path, probe):
    """Shows the burst test can fail: Mosquitto's defaults (20 in flight, 1000 queued)."""
    import socket

    from broker_config.config import BrokerConfig
    from broker_config.runner import start_broker

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    h = start_broker("central", tmp_path, port=port,
                     cfg=BrokerConfig(max_inflight=20, max_queued=1000))
    try:
        n = _burst(h.admin_address, probe, topic(K.JOB_LOG, owner="o", job="burst"))
    finally:
        h.stop()
    assert n < 10_000
