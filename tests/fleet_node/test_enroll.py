"""Enrollment in one command: ``raas node enroll`` on the central host writes a bundle, and
``raas node install --root`` installs it into a scratch tree here; the node started from the
installed units and env files — node-local broker bridged over TLS, simulated motor node, agent —
joins a TLS-only central broker and runs a job end to end for a real dispatcher."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from dispatcher import queue as Q
from dispatcher.config import DispatcherConfig
from dispatcher.limits import QueueLimits
from dispatcher.service import Dispatcher
from fleet_node.agent import Agent
from fleet_node.config import AgentConfig
from fleet_node.enroll import EnrollError, check_node_url, read_bundle
from fleet_node.install import install, service_commands
from fleet_node.node_files import NodeSpec, node_files, read_env_file, relocate
from gym_raas_mqtt import protocol, results
from gym_raas_mqtt.config import load
from gym_raas_mqtt.protocol import JobSource, JobState, NodeStatus, SourceKind, TopicKind
from raas_platform.storage import LocalStore
from tests.fleet_node.agent.agent_harness import (Recorder, SubprocessRunner, git_repo,
                                                  wait_for)
from tests.fleet_node.agent.test_agent_jobs import RUN_ENV
from tests.security.tls_helpers import start_tls_central

RAAS = str(Path(sys.executable).with_name("raas"))
ROOT = Path(__file__).resolve().parents[2]
NODE = "pi-07"


def raas(*args: str, cwd: Path) -> str:
    out = subprocess.run([RAAS, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_bundle_holds_the_files_with_their_modes(tmp_path):
    spec = NodeSpec(NODE, "mqtts://central.lab.example:8883", "node-pw", "bridge-pw",
                    "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n", "s3://results")
    files = node_files(spec)
    assert files["etc/raas/secrets/node"] == "node-pw\n"
    assert read_env_file(files["etc/raas/node.env"]) == {
        "RAAS_NODE_ID": NODE, "RAAS_DATA_DIR": "/var/lib/raas",
        "RAAS_BROKER_DIR": "/var/lib/raas/broker-local",
        "RAAS_LOCAL_SOCKET": "/run/raas/sock/local.sock",
        "RAAS_LOCAL_MQTT_URL": "unix:///run/raas/sock/local.sock",
        "RAAS_CALIBRATION_FILE": "/etc/raas/calibration.toml",
        "RAAS_CENTRAL_MQTT_URL": "mqtts://central.lab.example:8883",
        "RAAS_CENTRAL_CA_FILE": "/etc/raas/ca.crt"}
    motor = files["etc/systemd/system/raas-motor.service"]
    assert "Requires=pigpiod.service raas-broker-local.service" in motor
    assert "ExecStopPost=-/usr/bin/pigs w ${RAAS_GPIO_MOTOR_FORWARD} 0" in motor
    assert "etc/systemd/system/pigpiod.service.d/raas.conf" in files
    pi5 = node_files(NodeSpec(**{**spec.__dict__, "motor_backend": "lgpio"}))
    assert "pigpiod" not in pi5["etc/systemd/system/raas-motor.service"]
    assert "SupplementaryGroups=gpio" in pi5["etc/systemd/system/raas-motor.service"]
    assert "ExecStopPost=-/usr/bin/pinctrl set ${RAAS_GPIO_MOTOR_FORWARD} op dl" in \
        pi5["etc/systemd/system/raas-motor.service"]
    assert relocate(files["etc/raas/agent.env"], "/srv/x/").count("/srv/x/var/lib/raas/") == 2
    assert relocate("x=/etc/raas", "/") == "x=/etc/raas"
    for url in ("mqtt://central.lab.example:1883", "tcp://10.0.0.1:1883", "unix:///x.sock"):
        with pytest.raises(EnrollError, match="TLS"):
            check_node_url(url)
    check_node_url("mqtt://127.0.0.1:1883")  # a node on the central host itself


def test_enrolled_units_and_env_files_match_the_hand_set_up_ones():
    """hardware/systemd/ documents the same node for a set-up by hand: the same directives,
    the same variables (values differ: examples there, this node's here)."""
    hardware = ROOT / "hardware" / "systemd"
    hand_set_up = {"pigpio": {"raas-motor": "", "raas-agent": "", "raas-broker-local": ""},
                   "lgpio": {"raas-motor": "lgpio/"}}  # unit → its folder in hardware/systemd
    for backend, units in hand_set_up.items():
        files = node_files(NodeSpec(NODE, "mqtts://c:8883", "a", "b", "x", "s3://r",
                                    motor_backend=backend))
        for unit, folder in units.items():
            ours = files[f"etc/systemd/system/{unit}.service"].splitlines()
            theirs = (hardware / f"{folder}{unit}.service").read_text().splitlines()
            assert {ln for ln in ours if ln and not ln.startswith("#")} == \
                {ln for ln in theirs if ln and not ln.startswith("#")}, unit
    for name in ("node", "broker-local", "agent"):
        ours = read_env_file(files[f"etc/raas/{name}.env"])
        assert set(ours) == set(read_env_file((hardware / "env" / f"{name}.env").read_text()))


def test_install_refuses_files_outside_the_nodes_folders(tmp_path):
    bundle = tmp_path / "evil.tar.gz"
    with tarfile.open(bundle, "w:gz") as tar:
        for name, text in (("raas-node-bundle.json", '{"format": 1, "node_id": "x", '
                            '"central_url": "mqtts://c", "files": ["etc/passwd"]}'),
                           ("etc/passwd", "root::0:0::/:/bin/sh\n")):
            path = tmp_path / "member"
            path.write_text(text)
            tar.add(path, name)
    with pytest.raises(EnrollError, match="outside"):
        install(bundle, tmp_path / "root")
    assert not (tmp_path / "root" / "etc" / "passwd").exists()


@pytest.fixture
def central(tmp_path):
    """A central broker with a TLS listener only (no plain-text port at all)."""
    c = start_tls_central(tmp_path / "central", plain=False)
    yield c
    c.handle.stop()


@pytest.fixture
def dispatcher(central, tmp_path):
    """The real dispatcher, reaching the TLS-only broker as a remote service would."""
    cfg = load(DispatcherConfig, environ={}, database_url=f"sqlite:///{tmp_path / 'raas.db'}",
               mqtt_url=f"mqtts://localhost:{central.tls_port}", mqtt_ca_file=central.ca,
               mqtt_password_file=central.handle.secrets / "dispatcher", tick_s=0.1,
               session_expiry_s=0)
    d = Dispatcher(cfg, QueueLimits(accept_timeout_s=30.0))
    d.start()
    assert d.ready.wait(10), "the dispatcher did not connect over TLS"
    Q.ensure_owner("alice", max_running=1)
    yield d
    d.stop()


class Services:
    """The node's services started as their installed units say (no systemd here): the broker
    and the motor node as processes, the agent in this process with the tests' subprocess
    runner in place of Docker."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.commands = service_commands(root)
        self.processes: list[subprocess.Popen] = []
        self.agent: Agent | None = None

    def start(self, service: str) -> dict[str, str]:
        env, argv = self.commands[service]
        base = {"PATH": os.environ["PATH"], "HOME": str(self.root)}
        log = open(self.root / f"{service}.log", "wb")
        self.processes.append(subprocess.Popen(argv, env={**base, **env}, stdout=log,
                                               stderr=subprocess.STDOUT))
        log.close()
        return env

    def log(self, service: str) -> str:
        return (self.root / f"{service}.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop(10)
        for proc in reversed(self.processes):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.broker
def test_an_enrolled_node_joins_the_tls_broker_and_runs_a_job(central, dispatcher, tmp_path):
    # on the central host: one command writes the bundle
    store = tmp_path / "store"
    out = raas("node", "enroll", NODE, "--broker-dir", str(central.handle.dir),
               "--motor-backend", "sim", "--raas-bin", RAAS, "--store-url", str(store),
               "-o", "pi-07.tar.gz", cwd=tmp_path)
    assert f"mqtts://localhost:{central.tls_port}" in out
    bundle = tmp_path / "pi-07.tar.gz"
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    manifest, files = read_bundle(bundle)
    assert manifest["node_id"] == NODE and "etc/raas/ca.crt" in files
    assert files["etc/raas/ca.crt"] == central.ca.read_bytes()

    # on the node: one command installs it (into a scratch root: nothing is started)
    root = Path(tempfile.mkdtemp(prefix="raas-root-", dir="/tmp"))  # short: a socket path
    try:
        out = raas("node", "install", str(bundle), "--root", str(root), cwd=tmp_path)
        assert "services not started" in out
        etc = root / "etc" / "raas"
        for name, mode in (("secrets/node", 0o600), ("secrets/bridge", 0o600),
                           ("node.env", 0o640), ("agent.env", 0o640), ("ca.crt", 0o644)):
            assert stat.S_IMODE((etc / name).stat().st_mode) == mode, name
        assert 'id = "pi-07-uncalibrated"' in (etc / "calibration.toml").read_text()
        (etc / "calibration.toml").write_text((etc / "calibration.toml").read_text().replace(
            "pi-07-uncalibrated", "pi-07-2026-12-01"))  # the robot gets calibrated ...
        install(bundle, root)  # ... and a re-install keeps its calibration
        assert "pi-07-2026-12-01" in (etc / "calibration.toml").read_text()
        run_the_node(central, dispatcher, root, store, tmp_path)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_the_node(central, dispatcher, root: Path, store: Path, tmp_path: Path) -> None:
    services = Services(root)
    watch = Recorder(central.handle.admin_address, protocol.node_filter(NODE),
                     protocol.topic_filter(TopicKind.JOB_TELEMETRY))
    try:
        services.start("raas-broker-local")
        secrets = root / "var" / "lib" / "raas" / "broker-local" / "secrets"
        wait_for(lambda: (root / "run/raas/sock/local.sock").exists() and
                 (secrets / "motor").exists(), 10, "the node-local broker")
        # its bridge reaches the central broker over TLS, verifying it with the bundle's CA
        wait_for(lambda: any(protocol.bridge_connected(p) for t, p, _, _ in watch.messages
                             if t == protocol.topic(TopicKind.NODE_BRIDGE, node=NODE)), 15,
                 "the bridge over TLS")
        services.start("raas-motor")
        env, argv = services.commands["raas-agent"]
        assert argv == [RAAS, "node", "agent"]
        # the agent from its installed env file; file:// repositories for this test's job
        cfg = load(AgentConfig, environ={**env, "RAAS_CLONE_SCHEMES": "file"})
        assert cfg.central_address().tls and cfg.node_id == NODE
        services.agent = agent = Agent(cfg, runner=SubprocessRunner()).start()
        wait_for(lambda: agent.status is NodeStatus.IDLE, 90, "the node's self-test")

        url = git_repo(tmp_path / "repo", {"run.py": RUN_ENV})
        job_id = Q.enqueue("alice", JobSource(SourceKind.GIT, url=url), 60.0,
                           limits=dispatcher.limits).id
        wait_for(lambda: Q.get_job(job_id).job_state.terminal, 90, f"job {job_id} to end")
        job = Q.get_job(job_id)
        assert job.job_state is JobState.SUCCEEDED, (job.reason, services.log("raas-motor"))
        summary = results.load_summary(LocalStore(store), job_id=job_id)
        assert summary["node_id"] == NODE and summary["steps"] == 60
        assert summary["calibration_id"] == "pi-07-2026-12-01"
        # the motor node's telemetry crossed the TLS bridge and was relayed to alice's topic
        relayed = [m for m, _, _ in watch.decoded(TopicKind.JOB_TELEMETRY) if m is not None]
        assert relayed and {m.job_id for m in relayed} == {job_id}
    finally:
        watch.close()
        services.stop()


def test_enroll_needs_a_running_tls_broker(tmp_path):
    out = subprocess.run([RAAS, "node", "enroll", NODE, "--broker-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "no central broker running" in out.stderr
