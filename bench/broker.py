"""Broker setup costs and bus latency: start time, account creation, QoS 1 round trips, bursts.

Starts its own central and node-local Mosquitto (broker_config) in a temporary directory and
prints: first start / restart / start-on-running times, ``ensure_user`` and ``create_job_client``
latency, QoS 1 publish → delivery round trip over TCP and the unix socket (p50/p99), and messages
lost in a 10k QoS 1 burst into a subscriber consuming ≤ 5k msg/s with the project's limits and
with Mosquitto's defaults. Goals: start < 1 s, QoS 1 p50 < 1 ms, burst loss 0.

Usage: python bench/broker.py [--rtt 1000]
"""

from __future__ import annotations

import argparse
import queue
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

from broker_config import provision
from broker_config.config import BrokerConfig
from broker_config.runner import start_broker
from gym_raas_mqtt.mqtt import BrokerAddress, connect, make_client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ms(x: float) -> str:
    return f"{x * 1e3:.2f} ms"


def connected(address: BrokerAddress, on_message=None, max_inflight: int = 20):
    c = make_client(address)
    c.max_inflight_messages_set(max_inflight)
    ready = threading.Event()
    c.on_connect = lambda *a: ready.set()
    c.on_subscribe = lambda *a: ready.set()
    if on_message:
        c.on_message = on_message
    connect(c)
    c.loop_start()
    assert ready.wait(5)
    ready.clear()
    return c, ready


def rtt(address: BrokerAddress, n: int) -> tuple[float, float]:
    q: queue.Queue = queue.Queue()
    c, ready = connected(address, lambda cl, u, m: q.put(m.payload))
    c.subscribe("bench/rtt", qos=1)
    ready.wait(5)
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        c.publish("bench/rtt", b"x", qos=1)
        q.get(timeout=5)
        samples.append(time.perf_counter() - t0)
    c.disconnect()
    c.loop_stop()
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * len(samples))]


def burst(address: BrokerAddress, n: int = 10_000) -> int:
    seen: set[int] = set()
    count = [0]

    def on_message(cl, u, m):
        seen.add(int.from_bytes(m.payload, "big"))
        count[0] += 1
        if count[0] % 50 == 0:
            time.sleep(0.01)  # a consumer doing work: ≤ 5k msg/s

    sub, ready = connected(address, on_message)
    sub.subscribe("bench/burst", qos=1)
    ready.wait(5)
    pub, _ = connected(address, max_inflight=100)
    window = []
    for i in range(n):
        window.append(pub.publish("bench/burst", i.to_bytes(4, "big"), qos=1))
        if len(window) >= 1000:
            window.pop(0).wait_for_publish(10)
    for info in window:
        info.wait_for_publish(10)
    last = -1
    while len(seen) != last and len(seen) < n:
        last = len(seen)
        time.sleep(0.5)
    for c in (sub, pub):
        c.disconnect()
        c.loop_stop()
    return n - len(seen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rtt", type=int, default=1000, help="round trips per transport")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="raas-bench-", dir="/tmp") as tmp:
        root = Path(tmp)
        port = free_port()
        t0 = time.perf_counter()
        c = start_broker("central", root / "c", port=port)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        start_broker("central", root / "c", port=port)
        running = time.perf_counter() - t0
        c.stop()
        t0 = time.perf_counter()
        c = start_broker("central", root / "c", port=port)
        restart = time.perf_counter() - t0
        print(f"central start: first {ms(first)}, restart {ms(restart)}, "
              f"already running {ms(running)}")
        local = start_broker("local", root / "l", port=free_port(), node_id="bench", central_url="")
        try:
            us = []
            for i in range(20):
                t0 = time.perf_counter()
                provision.ensure_user(c.admin_address, f"u{i}")
                us.append(time.perf_counter() - t0)
            js = []
            for i in range(20):
                t0 = time.perf_counter()
                user, _ = provision.create_job_client(local.admin_address, "bench", f"j{i}")
                js.append(time.perf_counter() - t0)
                provision.delete_job_client(local.admin_address, user)
            print(f"ensure_user p50 {ms(statistics.median(us))}, "
                  f"create_job_client p50 {ms(statistics.median(js))}")
            admin_pw = local.secret("admin")
            for name, addr in (("tcp", c.admin_address),
                               ("unix", local.unix_address("admin", admin_pw))):
                p50, p99 = rtt(addr, args.rtt)
                print(f"QoS 1 publish→delivery ({name}, n={args.rtt}): p50 {ms(p50)}, "
                      f"p99 {ms(p99)}")
            print(f"10k QoS 1 burst, limits 100/20000: lost {burst(c.admin_address)}")
        finally:
            local.stop()
            c.stop()
        d = start_broker("central", root / "d", port=free_port(),
                         cfg=BrokerConfig(max_inflight=20, max_queued=1000))
        try:
            print(f"10k QoS 1 burst, Mosquitto defaults 20/1000: lost {burst(d.admin_address)}")
        finally:
            d.stop()


if __name__ == "__main__":
    main()
