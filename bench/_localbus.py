"""Shared by the motor-node benchmarks: a node-local broker and a motor node process to measure."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from broker_config.runner import BrokerHandle, start_broker
from gym_raas_mqtt.mqtt import BrokerAddress

NODE_ID = "bench-node"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_broker() -> Iterator[BrokerHandle]:
    """A node-local Mosquitto from broker_config (unix socket + loopback TCP, no bridge)."""
    tmp = Path(tempfile.mkdtemp(prefix="raas-bench-"))
    handle = start_broker("local", tmp / "run", port=free_port(), node_id=NODE_ID,
                          socket_path=tmp / "sock" / "local.sock", central_url="")
    try:
        yield handle
    finally:
        handle.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def admin(handle: BrokerHandle, transport: str) -> BrokerAddress:
    a = handle.admin_address
    return handle.unix_address(a.username, a.password) if transport == "unix" else a


@contextlib.contextmanager
def motor_process(address: BrokerAddress, *extra: str, **env: str) -> Iterator[subprocess.Popen]:
    """``raas node motor`` in its own process (as deployed), serving ``NODE_ID``."""
    data = tempfile.mkdtemp(prefix="raas-bench-data-")
    pw = Path(data) / "pw"
    pw.write_text(address.password or "")
    environ = {**os.environ, "RAAS_NODE_ID": NODE_ID, "RAAS_LOCAL_MQTT_URL": address.url(),
               "RAAS_MOTOR_MQTT_USERNAME": address.username or "",
               "RAAS_MOTOR_MQTT_PASSWORD_FILE": str(pw), "RAAS_DATA_DIR": data, **env}
    proc = subprocess.Popen([sys.executable, "-m", "gym_raas_mqtt.cli", "node", "motor", *extra],
                            env=environ)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data, ignore_errors=True)


def wait_for_motor(address: BrokerAddress, timeout_s: float = 20.0):
    """A connected BusBackend once the motor node is up."""
    from gym_raas_mqtt.backends.bus import BusBackend, BusConfig
    from gym_raas_mqtt.errors import BackendError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return BusBackend(BusConfig(mqtt_url=address.url(), node_id=NODE_ID,
                                        username=address.username, password=address.password))
        except BackendError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def percentiles_ms(samples_s) -> dict[str, float]:
    a = np.asarray(samples_s, dtype=float) * 1e3
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "max": float(a.max()), "mean": float(a.mean()), "n": len(a)}


def machine() -> str:
    import platform

    load = os.getloadavg()
    return (f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
