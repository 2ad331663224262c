"""Runtime directories, idempotent start/stop, persistence, and the ``raas broker`` command."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from broker_config import provision
from broker_config.runner import BrokerError, prepare, start_broker, stop_broker
from gym_raas_mqtt.cli import main
from gym_raas_mqtt.protocol import TopicKind as K
from gym_raas_mqtt.protocol import topic

pytestmark = pytest.mark.broker


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_start_is_fast_idempotent_and_private(tmp_path, probe):
    started = time.monotonic()
    h = start_broker("local", tmp_path, port=_port(), node_id="pi7", central_url="")
    try:
        assert time.monotonic() - started < 1.0
        again = start_broker("local", tmp_path, port=_port(), node_id="pi7", central_url="")
        assert again.pid == h.pid and again.port == h.port and again.node_id == "pi7"
        assert again.socket_path == h.socket_path
        # the plugin rewrites its JSON on every change: it must stay private (umask 077)
        provision.create_job_client(h.admin_address, "pi7", "j1")
        assert _mode(tmp_path / "dynamic-security.json") == 0o600
        assert _mode(tmp_path / "mosquitto.conf") == 0o600
        assert _mode(h.secrets) == 0o700
        assert all(_mode(f) == 0o600 for f in h.secrets.iterdir())
        assert {f.name for f in h.secrets.iterdir()} == {"admin", "motor", "agent"}
        assert _mode(h.socket_path) == 0o666
        conf = h.conf_path.read_text()
        for line in ("set_tcp_nodelay true", "max_inflight_messages 100",
                     "max_queued_messages 20000", "allow_anonymous false", "persistence true"):
            assert line in conf.splitlines()
    finally:
        h.stop()
    assert not h.running() and not h.pid_path.exists()
    assert stop_broker(tmp_path) is False


def test_restart_keeps_accounts_and_retained_messages(tmp_path, probe):
    port = _port()
    h = start_broker("central", tmp_path, port=port)
    try:
        pw = provision.ensure_node(h.admin_address, "pi3")
        node = probe(h.address("node-pi3", pw))
        state = topic(K.NODE_STATE, node="pi3")
        assert node.publish(state, b"retained-state", retain=True) < 0x80  # 0x10: no subscribers
        node.close()
        admin_pw = h.secret("admin")
        h.stop()
        h = start_broker("central", tmp_path, port=port)
        assert h.secret("admin") == admin_pw  # service passwords are stable
        probe(h.address("node-pi3", pw))  # runtime account survived
        w = probe(h.admin_address)
        assert w.subscribe(state) == 1
        assert w.expect(3) == (state, b"retained-state", True)  # persistence
        # a lost service password file is re-generated and the broker re-keyed on start
        old = h.secret("dispatcher")
        h.stop()
        (h.secrets / "dispatcher").unlink()
        h = start_broker("central", tmp_path, port=port)
        assert h.secret("dispatcher") != old
        probe(h.service_address("dispatcher"))
        assert probe(h.address("dispatcher", old), expect_ok=False).is_failure
    finally:
        h.stop()


def test_prepare_rejects_bad_input(tmp_path):
    with pytest.raises(BrokerError):
        prepare("edge", tmp_path)
    with pytest.raises(BrokerError, match="bridge"):
        prepare("local", tmp_path, node_id="pi1", central_url="mqtt://127.0.0.1:1883")
    with pytest.raises(Exception, match="node id"):
        prepare("local", tmp_path, node_id="bad/id")


def test_busy_port_is_reported(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(BrokerError, match="did not start"):
            start_broker("central", tmp_path, port=s.getsockname()[1], timeout_s=3)


def test_cli_background_add_node_add_user_stop(tmp_path, probe, capsys):
    d, port = str(tmp_path / "c"), _port()
    assert main(["broker", "central", "--dir", d, "--port", str(port), "--background"]) == 0
    try:
        assert main(["broker", "add-node", "--dir", d, "pi9"]) == 0
        assert main(["broker", "add-user", "--dir", d, "dora"]) == 0
        secrets = Path(d) / "secrets"
        from gym_raas_mqtt.mqtt import BrokerAddress

        for user in ("node-pi9", "bridge-pi9", "user-dora"):
            pw = (secrets / user).read_text().strip()
            probe(BrokerAddress("tcp", "127.0.0.1", port, user, pw))
        # a node-local broker bridged with the secret written by add-node
        ld = tmp_path / "l"
        assert main(["broker", "local", "--dir", str(ld), "--port", str(_port()), "--node-id",
                     "pi9", "--central-url", f"mqtt://127.0.0.1:{port}",
                     "--bridge-password-file", str(secrets / "bridge-pi9"), "--background"]) == 0
        assert main(["broker", "stop", "--dir", str(ld)]) == 0
    finally:
        assert main(["broker", "stop", "--dir", d]) == 0
    assert main(["broker", "stop", "--dir", d]) == 1
    assert main(["broker", "add-node", "--dir", d, "pi9"]) == 1  # no broker running
    assert "no central broker running" in capsys.readouterr().err


def test_cli_foreground_stops_on_sigterm(tmp_path):
    port = _port()
    with open(tmp_path / "err", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "gym_raas_mqtt.cli", "broker", "central",
                                 "--dir", str(tmp_path), "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "mosquitto.pid").exists() or not _listening(port):
            assert proc.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "err").read_text()
            time.sleep(0.02)
        mosquitto_pid = int((tmp_path / "mosquitto.pid").read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, (tmp_path / "err").read_text()
        assert not (tmp_path / "mosquitto.pid").exists()
        with pytest.raises(ProcessLookupError):
            os.kill(mosquitto_pid, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
