"""Building blocks for the agent tests: a node (local broker + motor node + agent), a recorder of
central-broker traffic, a scripted dispatcher, and a subprocess runner standing in for Docker.

Everything here talks to real Mosquitto brokers; only the container is replaced (by a plain
subprocess, for the tests that are not marked ``docker``).
"""

from __future__ import annotations

import gc
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from broker_config.provision import ensure_bridge, ensure_node
from broker_config.runner import BrokerHandle, start_broker
from fleet_node.agent import Agent
from fleet_node.config import AgentConfig
from fleet_node.motor.config import MotorConfig
from fleet_node.motor.node import MotorNode
from fleet_node.runner import RunOutcome
from gym_raas_mqtt import protocol
from gym_raas_mqtt.mqtt import BrokerAddress, connect, make_client
from gym_raas_mqtt.protocol import JobState, LogStream, TopicKind
from raas_platform.storage import LocalStore
from tests.conftest import free_port


def wait_for(pred: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition") -> Any:
    """Poll ``pred`` until it returns something truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class Recorder:
    """A client that records every message on the given filters as (topic, payload, retain, t)."""

    def __init__(self, address: BrokerAddress, *filters: str) -> None:
        self.messages: list[tuple[str, bytes, bool, float]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = make_client(address)
        self.client.on_connect = lambda c, u, f, rc, p: (
            c.subscribe([(flt, 1) for flt in filters]), None)
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        connect(self.client, 10)
        self.client.loop_start()
        assert self._ready.wait(5), "recorder did not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain),
                                  time.monotonic()))

    def decoded(self, kind: TopicKind) -> list[tuple[Any, bool, float]]:
        """(message or None, retain flag, arrival time) of every message of ``kind``."""
        out = []
        with self._lock:
            msgs = list(self.messages)
        for name, payload, retain, t in msgs:
            try:
                parsed, msg = protocol.decode(name, payload)
            except protocol.ProtocolError:
                continue
            if parsed.kind is kind:
                out.append((msg, retain, t))
        return out

    def states(self) -> list[Any]:
        return [m for m, _, _ in self.decoded(TopicKind.NODE_STATE) if m is not None]

    def publish(self, name: str, payload: bytes, qos: int = 1, retain: bool = False,
                properties: Any = None) -> None:
        self.client.publish(name, payload, qos=qos, retain=retain,
                            properties=properties).wait_for_publish(5)

    def close(self) -> None:
        close_client(self.client)


def close_client(client: Any) -> None:
    """Disconnect, stop the loop and close paho's wake-up socket pair (else a ResourceWarning)."""
    done = threading.Event()
    client.on_disconnect = lambda *a: done.set()
    if client.disconnect() == 0:
        done.wait(2)
    client.loop_stop()
    client._reset_sockets()


class SubprocessRunner:
    """Runs ``python -u run.py`` as a plain subprocess (no sandbox: tests only), with the same
    signature and outcomes as :meth:`fleet_node.runner.DockerRunner.run_job`."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def image_id(self) -> str:
        return "sha256:test-subprocess-runner"

    def run_job(self, job_id: str, code_dir: Path, env: dict[str, str], socket_path: Path,
                time_limit_s: float | None = None, on_output: Any = None,
                cancel: threading.Event | None = None, args: Any = ()) -> RunOutcome:
        self.calls.append(job_id)
        full_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(code_dir.parent), **env,
                    "RAAS_MQTT_URL": f"unix://{socket_path}", "RAAS_JOB_ID": job_id}
        limit = time_limit_s or 120.0
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-u", "run.py", *args], cwd=code_dir,
                                env=full_env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)

        def pump() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                if on_output is not None:
                    on_output(LogStream.STDOUT, raw.decode(errors="replace").rstrip("\n"))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        killed = None
        while proc.poll() is None:
            if cancel is not None and cancel.is_set():
                killed = "canceled"
            elif time.monotonic() - started > limit:
                killed = "timed_out"
            if killed:
                proc.kill()
                break
            time.sleep(0.02)
        code = proc.wait()
        reader.join(2)
        assert proc.stdout is not None
        proc.stdout.close()
        common = dict(exit_code=code, duration_s=time.monotonic() - started,
                      image_id=self.image_id(), time_limit_s=limit)
        if killed == "timed_out":
            return RunOutcome(JobState.TIMED_OUT, reason=f"wall-clock limit of {limit:g} s",
                              **common)
        if killed == "canceled":
            return RunOutcome(JobState.FAILED, reason="canceled", **common)
        if code == 0:
            return RunOutcome(JobState.SUCCEEDED, **common)
        return RunOutcome(JobState.FAILED, reason=f"exit code {code}", **common)


@dataclass
class Node:
    """One fleet node under test: its local broker, motor node and agent (started on demand)."""

    node_id: str
    broker: Any  # the session's central TestBroker
    local: BrokerHandle
    data_dir: Path
    store: LocalStore
    central_password: str
    motor: MotorNode | None = None
    agent: Agent | None = None
    extra_dirs: list[Path] = field(default_factory=list)

    @property
    def central_address(self) -> BrokerAddress:
        return self.broker.address(f"node-{self.node_id}", self.central_password)

    def config(self, **overrides: Any) -> AgentConfig:
        values = dict(node_id=self.node_id, data_dir=self.data_dir, store_url=self.store.url,
                      local_socket=self.local.socket_path, clone_schemes=("file",),
                      will_delay_s=2, keepalive_s=5, heartbeat_s=30.0, update_retry_s=1.0,
                      start_timeout_s=5.0,
                      selftest_timeout_s=10.0, maintenance_retry_s=1.0, motor_wait_s=2.0,
                      log_flush_s=0.05)
        values.update(overrides)
        return AgentConfig(**values)

    def start_motor(self, motor: Any = None, **overrides: Any) -> MotorNode:
        """Start the node's motor node (sim, lockstep unless overridden) on driver ``motor``."""
        cfg = MotorConfig(node_id=self.node_id, lockstep=True, data_dir=self.data_dir,
                          **overrides)
        collect_dynsec_sockets()  # the motor node's loop starts with gc.collect()
        self.motor = MotorNode(cfg, motor=motor,
                               address=self.local.service_address("motor")).start()
        return self.motor

    def start_agent(self, runner: Any = None, **overrides: Any) -> Agent:
        self.agent = Agent(self.config(**overrides), runner=runner or SubprocessRunner(),
                           store=self.store, central=self.central_address,
                           local=self.local.service_address("agent"),
                           local_admin=self.local.admin_address).start()
        return self.agent

    def agent_env(self, **overrides: str) -> dict[str, str]:
        """Environment for ``raas node agent`` as a subprocess (same settings as config())."""
        pw = self.data_dir / "central.pw"
        pw.write_text(self.central_password)
        env = {**os.environ,
               "RAAS_NODE_ID": self.node_id, "RAAS_DATA_DIR": str(self.data_dir),
               "RAAS_STORE_URL": self.store.url,
               "RAAS_CENTRAL_MQTT_URL": self.broker.address().url(),
               "RAAS_AGENT_CENTRAL_PASSWORD_FILE": str(pw),
               "RAAS_LOCAL_MQTT_URL": self.local.address().url(),
               "RAAS_AGENT_LOCAL_PASSWORD_FILE": str(self.local.secrets / "agent"),
               "RAAS_AGENT_LOCAL_ADMIN_PASSWORD_FILE": str(self.local.secrets / "admin"),
               "RAAS_LOCAL_SOCKET": str(self.local.socket_path),
               "RAAS_AGENT_WILL_DELAY_S": "2", "RAAS_AGENT_KEEPALIVE_S": "5",
               "RAAS_AGENT_SELFTEST": "0", "RAAS_CLONE_SCHEMES": "file",
               "DOCKER_HOST": "unix:///nonexistent.sock"}
        env.update(overrides)
        return env

    def close(self) -> None:
        if self.agent is not None:
            self.agent.stop(10)
        if self.motor is not None:
            self.motor.close()
        self.local.stop()
        for d in self.extra_dirs:
            shutil.rmtree(d, ignore_errors=True)
        collect_dynsec_sockets()


def collect_dynsec_sockets() -> None:
    """Collect garbage now, ignoring ResourceWarnings: broker_config.dynsec.DynSec.close() leaves
    paho's wake-up socket pair to the garbage collector, which would otherwise report it in
    whichever later test happens to trigger a collection."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def make_node(broker: Any, tmp_path: Path, node_id: str, *, bridged: bool = False) -> Node:
    """A node with its own local broker (bridged to ``broker`` when asked: its job telemetry
    reaches the central broker) and a node-<id> account on ``broker``."""
    password = ensure_node(broker.admin, node_id)
    bridge = ensure_bridge(broker.admin, node_id) if bridged else None
    collect_dynsec_sockets()
    sock_dir = Path(tempfile.mkdtemp(prefix="raas-", dir="/tmp"))  # short: unix path limit
    local = start_broker("local", tmp_path / f"local-{node_id}", port=free_port(),
                         node_id=node_id, central_url=broker.address().url() if bridged else "",
                         bridge_password=bridge, socket_path=sock_dir / "local.sock")
    data = tmp_path / f"data-{node_id}"
    data.mkdir()
    store = LocalStore(tmp_path / "store")
    return Node(node_id, broker, local, data, store, password, extra_dirs=[sock_dir])


class ScriptedDispatcher:
    """Plays the dispatcher's side of the job protocol by hand (as the broker admin)."""

    def __init__(self, broker: Any, node_id: str) -> None:
        self.node_id = node_id
        self.updates: queue.Queue = queue.Queue()
        self.rec = Recorder(broker.admin, protocol.topic_filter(TopicKind.NODE_JOB_UPDATE,
                                                                node=node_id))
        self.rec.client.on_message = self._on_message

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            _, update = protocol.decode(msg.topic, msg.payload)
        except protocol.ProtocolError:
            return
        self.updates.put(update)

    def assign(self, assignment: protocol.JobAssignment | None) -> None:
        name = protocol.topic(TopicKind.NODE_JOB_NEXT, node=self.node_id)
        self.rec.publish(name, assignment.to_bytes() if assignment else b"", retain=True)

    def next_update(self, timeout_s: float = 10.0) -> protocol.JobUpdate:
        return self.updates.get(timeout=timeout_s)

    def reply(self, update: protocol.JobUpdate, accepted: bool, version: int | None = None,
              reason: str | None = None) -> None:
        kind = TopicKind.NODE_JOB_ACCEPTED if accepted else TopicKind.NODE_JOB_REJECTED
        msg = protocol.JobUpdateReply(
            job_id=update.job_id, execution=update.execution,
            version=version if version is not None else update.expected_version + int(accepted),
            accepted=accepted, ts=time.time(), reason=reason)
        self.rec.publish(protocol.topic(kind, node=self.node_id, job=update.job_id),
                         msg.to_bytes())

    def close(self) -> None:
        self.assign(None)
        self.rec.close()


def git_repo(path: Path, files: dict[str, str]) -> str:
    """Create a git repo with ``files`` committed; returns its file:// URL."""
    path.mkdir(parents=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    for name, text in files.items():
        (path / name).write_text(text)
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "job"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, env=env,
                       capture_output=True)
    return path.as_uri()
