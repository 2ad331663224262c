"""What TLS costs a client: connect → CONNACK over the central broker's TLS listener versus its
plain-text loopback listener, and a QoS 1 round trip over each, in the same run.

Starts its own central Mosquitto (broker_config) with a local CA and certificate (ECDSA P-256,
``raas broker ca|cert``) in a temporary directory. Each connect is a fresh TCP connection, a full
TLS handshake (no session resumption: the platform's clients connect once and stay connected)
and an MQTT 5 CONNECT as ``admin``; the numbers are medians (and p90) over ``--connects``
attempts, alternating plain and TLS so both see the same machine load.

Usage: python bench/tls_connect.py [--connects 50] [--rtt 500]
"""

from __future__ import annotations

import argparse
import ipaddress
import queue
import statistics
import tempfile
import threading
import time
from pathlib import Path

from _localbus import free_port
from broker_config import tls
from broker_config.config import BrokerConfig
from broker_config.runner import start_broker
from gym_raas_mqtt.config import load
from gym_raas_mqtt.mqtt import BrokerAddress, connect, make_client, shutdown


def connect_time(address: BrokerAddress) -> tuple[float, str]:
    """Seconds from ``connect()`` to CONNACK for a new client, and the TLS version ("plain"
    without)."""
    c = make_client(address, f"bench-{time.monotonic_ns()}")
    acked = threading.Event()
    c.on_connect = lambda *a: acked.set()
    t0 = time.perf_counter()
    connect(c)
    while not acked.is_set():
        c.loop(0.01)
    dt = time.perf_counter() - t0
    sock = c.socket()
    version = sock.version() if hasattr(sock, "version") else "plain"
    shutdown(c)
    return dt, version


def round_trips(address: BrokerAddress, n: int) -> list[float]:
    """QoS 1 publish → delivery to ourselves, ``n`` times [s]."""
    got: queue.Queue = queue.Queue()
    c = make_client(address, f"bench-rtt-{time.monotonic_ns()}")
    ready = threading.Event()
    c.on_connect = lambda cl, *a: cl.subscribe("bench/tls", qos=1)
    c.on_subscribe = lambda *a: ready.set()
    c.on_message = lambda cl, u, m: got.put(m.payload)
    connect(c)
    c.loop_start()
    assert ready.wait(5)
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        c.publish("bench/tls", str(i).encode(), qos=1)
        got.get(timeout=5)
        samples.append(time.perf_counter() - t0)
    shutdown(c)
    return samples


def summary(name: str, samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=10)
    return (f"{name:<28} median {statistics.median(samples) * 1e3:6.2f} ms   "
            f"p90 {q[-1] * 1e3:6.2f} ms   (n={len(samples)})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--connects", type=int, default=50)
    p.add_argument("--rtt", type=int, default=500)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="raas-bench-tls-") as tmp:
        run = Path(tmp)
        tls.make_ca(run / "tls")
        tls.make_server_cert(run / "tls", ["localhost"], [ipaddress.ip_address("127.0.0.1")])
        cfg = load(BrokerConfig, environ={}, tls_port=free_port())
        handle = start_broker("central", run, cfg=cfg, port=free_port())
        try:
            password = handle.secret("admin")
            plain = handle.address("admin", password)
            secure = handle.tls_address("admin", password)
            connect_time(plain)  # warm-up: imports, first handshake
            _, version = connect_time(secure)
            times: dict[str, list[float]] = {"plain": [], "tls": []}
            for _ in range(args.connects):
                times["plain"].append(connect_time(plain)[0])
                times["tls"].append(connect_time(secure)[0])
            print(f"mosquitto central broker, {args.connects} connects each, ECDSA P-256 "
                  f"certificate, {version} negotiated")
            print(summary("connect→CONNACK plain", times["plain"]))
            print(summary("connect→CONNACK TLS", times["tls"]))
            extra = statistics.median(times["tls"]) - statistics.median(times["plain"])
            print(f"{'TLS handshake cost':<28} median +{extra * 1e3:.2f} ms per connect")
            print(summary("QoS 1 round trip plain", round_trips(plain, args.rtt)))
            print(summary("QoS 1 round trip TLS", round_trips(secure, args.rtt)))
        finally:
            handle.stop()


if __name__ == "__main__":
    main()
