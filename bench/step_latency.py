"""Step latency over the node-local bus: env.step round trips vs. pyzmq REQ/REP, in one run.

A node-local Mosquitto (broker_config) and a motor node in lockstep (``raas node motor --lockstep``,
its own process, as deployed) serve a RaasPendulumEnv with the bus backend, once through the unix
socket and once through loopback TCP; every ``env.step`` is timed (encode Action, broker, motor
node steps the model, broker, decode Observation, build the observation array). In the same run a
pyzmq REQ/REP pair (server in its own process) exchanges the same payload bytes (an Action request,
an Observation reply) over ipc:// and tcp://. Finally a QoS 1 round trip (publish, echo by a second
client, PUBACKs both ways) with and without TCP_NODELAY on the clients shows that the project's
sockets do set it (without: ~40 ms from Nagle plus delayed ACK).

Goals: bus p99 ≤ 2 ms; bus p50 ≤ 4 × the ZMQ p50 (same transport).

Usage: python bench/step_latency.py [--steps 5000] [--qos1 200]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time

import numpy as np

import _localbus as lb
from gym_raas_mqtt.envs.pendulum import RaasPendulumEnv
from gym_raas_mqtt.mqtt import BrokerAddress, connect, make_client
from gym_raas_mqtt.protocol import Action, Observation, TopicKind, topic

ZMQ_SERVER = """
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.REP)
s.bind(sys.argv[1])
reply = sys.argv[2].encode()
print("ready", flush=True)
while True:
    msg = s.recv()
    if msg == b"quit":
        s.send(b"")
        break
    s.send(reply)
"""


def bus_steps(address: BrokerAddress, steps: int) -> tuple[list[float], int]:
    backend = lb.wait_for_motor(address)
    env = RaasPendulumEnv(backend=backend)
    env.reset(seed=0)
    action = np.array([0.5], np.float32)
    for _ in range(300):  # warm-up
        env.step(action)
    times, misses = [], 0
    clock = time.perf_counter
    for i in range(steps):
        if i % 200 == 0:
            env.reset()
        t0 = clock()
        _, _, _, _, info = env.step(action)
        times.append(clock() - t0)
        misses += info["deadline_miss"]
    env.close()
    return times, misses


def zmq_round_trips(endpoint: str, steps: int) -> list[float]:
    import zmq

    request = Action(1, 12345, 0.5123456789).to_bytes()
    reply = Observation(1, 12345, 3.0123456789012345, -0.123456789012345, 0.5123456789,
                        617.25).to_bytes()
    server = subprocess.Popen([sys.executable, "-c", ZMQ_SERVER, endpoint, reply.decode()],
                              stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready"
    ctx = zmq.Context()
    s = ctx.socket(zmq.REQ)
    s.connect(endpoint)
    for _ in range(300):
        s.send(request)
        s.recv()
    times = []
    clock = time.perf_counter
    for _ in range(steps):
        t0 = clock()
        s.send(request)
        s.recv()
        times.append(clock() - t0)
    s.send(b"quit")
    s.recv()
    s.close()
    ctx.term()
    server.wait(5)
    server.stdout.close()
    return times


PAHO_ECHO = """
import sys
from gym_raas_mqtt.mqtt import BrokerAddress, connect, make_client
from gym_raas_mqtt.protocol import TopicKind, topic
url, user, pw, node, reply = sys.argv[1:6]
t_act, t_obs = topic(TopicKind.ENV_ACT, node=node), topic(TopicKind.ENV_OBS, node=node)
c = make_client(BrokerAddress.parse(url, username=user, password=pw))
c.on_connect = lambda c, *a: (c.subscribe(t_act, 0), print("ready", flush=True))
c.on_message = lambda c, u, m: c.publish(t_obs, reply.encode(), qos=0)
connect(c)
c.loop_forever()
"""


def paho_floor(address: BrokerAddress, steps: int) -> list[float]:
    """Raw paho QoS 0 request/echo through the broker, echo in its own process, no decoding:
    the floor under env.step set by paho + Mosquitto (same driving style as the bus backend)."""
    import select

    node = "bench-floor"
    reply = Observation(1, 12345, 3.0123456789012345, -0.123456789012345, 0.5123456789,
                        617.25).to_bytes()
    echo = subprocess.Popen([sys.executable, "-c", PAHO_ECHO, address.url(), address.username,
                             address.password, node, reply.decode()], stdout=subprocess.PIPE,
                            text=True)
    assert echo.stdout.readline().strip() == "ready"
    got = []
    c = make_client(address)
    c.on_message = lambda c, u, m: got.append(1)
    connect(c)
    t_act, t_obs = topic(TopicKind.ENV_ACT, node=node), topic(TopicKind.ENV_OBS, node=node)
    c.subscribe(t_obs, 0)
    for _ in range(20):
        c.loop(0.05)
    payload = Action(1, 12345, 0.5123456789).to_bytes()
    times = []
    for i in range(steps + 300):
        got.clear()
        t0 = time.perf_counter()
        c.publish(t_act, payload, qos=0)
        while not got:
            if select.select([c.socket()], [], [], 1.0)[0]:
                c.loop_read()
        if i >= 300:
            times.append(time.perf_counter() - t0)
    c.disconnect()
    echo.terminate()
    echo.wait(5)
    echo.stdout.close()
    return times


def qos1_round_trips(address: BrokerAddress, n: int, nodelay: bool) -> tuple[list[float], int]:
    """Requester publishes QoS 1 on the act topic; an echo client republishes QoS 1 on obs."""
    node = "bench-qos"
    t_act, t_obs = topic(TopicKind.ENV_ACT, node=node), topic(TopicKind.ENV_OBS, node=node)
    got = threading.Event()
    ready = threading.Semaphore(0)

    def client(on_message):
        c = make_client(address)
        if not nodelay:
            c.on_socket_open = None  # paho's default: Nagle stays on
        c.on_message = on_message
        c.on_subscribe = lambda *a: ready.release()
        connect(c)
        c.loop_start()
        return c

    echo = client(lambda c, u, m: c.publish(t_obs, m.payload, qos=1))
    echo.subscribe(t_act, 1)
    req = client(lambda c, u, m: got.set())
    req.subscribe(t_obs, 1)
    ready.acquire(timeout=5)
    ready.acquire(timeout=5)
    sock = req.socket()
    flag = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) if sock else -1
    payload = Action(1, 1, 0.5).to_bytes()
    times = []
    for i in range(n + 10):
        got.clear()
        t0 = time.perf_counter()
        req.publish(t_act, payload, qos=1)
        if not got.wait(2.0):
            raise RuntimeError("QoS 1 echo lost")
        if i >= 10:
            times.append(time.perf_counter() - t0)
        time.sleep(0.001)
    for c in (req, echo):
        c.disconnect()
        c.loop_stop()
    return times, flag


def row(name: str, times) -> dict:
    p = lb.percentiles_ms(times)
    print(f"| {name} | {p['p50']:.3f} | {p['p99']:.3f} | {p['max']:.2f} | {p['n']} |")
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--qos1", type=int, default=200)
    args = ap.parse_args()
    results: dict[str, dict] = {}
    with lb.local_broker() as broker:
        unix, tcp = lb.admin(broker, "unix"), lb.admin(broker, "tcp")
        bus = {}
        for name, address in (("unix", unix), ("tcp", tcp)):
            with lb.motor_process(address, "--backend", "sim", "--lockstep"):
                bus[name] = bus_steps(address, args.steps)
        floor_unix = paho_floor(unix, args.steps)
        floor_tcp = paho_floor(tcp, args.steps)
        zmq_ipc = zmq_round_trips(f"ipc:///tmp/raas-bench-zmq-{time.time_ns()}", args.steps)
        zmq_tcp = zmq_round_trips(f"tcp://127.0.0.1:{lb.free_port()}", args.steps)
        q_on, flag_on = qos1_round_trips(tcp, args.qos1, nodelay=True)
        q_off, flag_off = qos1_round_trips(tcp, max(20, args.qos1 // 4), nodelay=False)
    print(lb.machine())
    print(f"motor node in lockstep (own process), {args.steps} steps per row after 300 warm-up\n")
    print("| round trip | p50 ms | p99 ms | max ms | n |")
    print("|---|---|---|---|---|")
    results["bus_unix"] = row("env.step, bus over unix socket", bus["unix"][0])
    results["bus_tcp"] = row("env.step, bus over TCP", bus["tcp"][0])
    results["floor_unix"] = row("raw paho QoS 0 echo (no decoding), unix socket", floor_unix)
    results["floor_tcp"] = row("raw paho QoS 0 echo (no decoding), TCP", floor_tcp)
    results["zmq_ipc"] = row("pyzmq REQ/REP ipc://, same bytes", zmq_ipc)
    results["zmq_tcp"] = row("pyzmq REQ/REP tcp://, same bytes", zmq_tcp)
    results["qos1_on"] = row(f"MQTT QoS 1 echo, TCP_NODELAY={flag_on}", q_on)
    results["qos1_off"] = row(f"MQTT QoS 1 echo, TCP_NODELAY={flag_off} (paho default)", q_off)
    print()
    for name, zname in (("bus_unix", "zmq_ipc"), ("bus_tcp", "zmq_tcp")):
        b, z = results[name], results[zname]
        ok99 = "ok" if b["p99"] <= 2.0 else "MISSED"
        ratio = b["p50"] / z["p50"]
        ok50 = "ok" if ratio <= 4.0 else "MISSED"
        print(f"{name}: p99 {b['p99']:.3f} ms (goal ≤ 2: {ok99}); p50 / {zname} p50 = "
              f"{ratio:.2f} (goal ≤ 4: {ok50}); deadline_miss flags: {bus[name[4:]][1]}")


if __name__ == "__main__":
    main()
