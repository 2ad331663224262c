"""Session fixtures that start real services: a Mosquitto broker (and, in sub-folders, more).

The broker is started once per test session from the project's own configuration
(``broker_config``) on a free loopback port, with authentication on. Tests isolate themselves by
using unique node/job ids (``uid`` fixture), never a shared one.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from gym_raas_mqtt.mqtt import BrokerAddress

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s} s")


@dataclass
class TestBroker:
    """A running Mosquitto: where it listens and the superuser's address."""

    host: str
    port: int
    admin: BrokerAddress
    workdir: Path
    process: subprocess.Popen

    def address(self, username: str | None = None, password: str | None = None) -> BrokerAddress:
        return BrokerAddress("tcp", self.host, self.port, username, password)

    @property
    def url(self) -> str:
        return self.admin.url(with_credentials=True)


def _start_plain_broker(workdir: Path) -> TestBroker:
    """Fallback broker: password file + ACL with one superuser (used until broker_config lands)."""
    port = free_port()
    password = uuid.uuid4().hex
    pwfile = workdir / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "test-admin", password],
                   check=True, capture_output=True)
    (workdir / "acl").write_text("user test-admin\ntopic readwrite #\n")
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {pwfile}\n"
        f"acl_file {workdir / 'acl'}\nset_tcp_nodelay true\nmax_inflight_messages 100\n"
        "max_queued_messages 20000\npersistence false\nlog_dest stderr\nlog_type error\n"
        "log_type warning\n"
    )
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=open(workdir / "log", "wb"))
    wait_port("127.0.0.1", port)
    return TestBroker("127.0.0.1", port, BrokerAddress("tcp", "127.0.0.1", port, "test-admin",
                                                        password), workdir, proc)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> TestBroker:
    """A real Mosquitto for the whole session (skips the test if mosquitto is not installed)."""
    if not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed (make test installs it)")
    b = _start_plain_broker(tmp_path_factory.mktemp("mosquitto"))
    yield b
    b.process.terminate()
    try:
        b.process.wait(5)
    except subprocess.TimeoutExpired:
        b.process.kill()


_counter = itertools.count()


@pytest.fixture
def uid() -> str:
    """A unique id for this test (node/job/owner ids), valid as a topic level."""
    return f"t{os.getpid()}x{next(_counter)}x{uuid.uuid4().hex[:6]}"
