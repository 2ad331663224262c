"""Dispatcher fixtures: a private Mosquitto per service test. (The job database on SQLite and
PostgreSQL, ``db``/``db_url``, comes from tests/databases.py for the whole suite, so every queue
contract test runs against both.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from dispatcher import queue as Q
from dispatcher.service import Dispatcher
from dispatcher_fakes import LIMITS, SRC, Clock, FakeNode, settings
from tests.net import free_port, wait_port

class MiniBroker:
    """A private Mosquitto (one superuser) that a test may stop and restart on the same port.

    The dispatcher subscribes to every node's retained state, so its service tests use their own
    broker: retained states left by other suites' nodes would otherwise attract assignments.
    """

    def __init__(self, workdir: Path) -> None:
        from gym_raas_mqtt.mqtt import BrokerAddress

        self.workdir = workdir
        self.port = free_port()
        password = uuid.uuid4().hex
        pwfile = workdir / "passwd"
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "admin", password],
                       check=True, capture_output=True)
        (workdir / "acl").write_text("user admin\ntopic readwrite #\n")
        (workdir / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous false\npassword_file {pwfile}\n"
            f"acl_file {workdir / 'acl'}\nset_tcp_nodelay true\nmax_inflight_messages 100\n"
            "max_queued_messages 20000\npersistence false\nlog_dest stderr\nlog_type error\n"
            "log_type warning\n" + ("user root\n" if os.geteuid() == 0 else ""))
        self.admin = BrokerAddress("tcp", "127.0.0.1", self.port, "admin", password)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return self.admin.url(with_credentials=True)

    def start(self) -> None:
        with open(self.workdir / "log", "ab") as log:
            self.process = subprocess.Popen(
                ["mosquitto", "-c", str(self.workdir / "mosquitto.conf")], stderr=log)
        wait_port("127.0.0.1", self.port)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def mini_broker(tmp_path_factory: pytest.TempPathFactory) -> MiniBroker:
    """A fresh private Mosquitto for one test (≈ 20 ms to start)."""
    if not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed (make test installs it)")
    b = MiniBroker(tmp_path_factory.mktemp("mini-mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def env(request, mini_broker, tmp_path, uid):
    """A running in-process dispatcher with an injected clock, plus helpers (SQLite unless the
    test parametrises ``env`` indirectly with ``"postgresql"``)."""
    clock = Clock()
    if getattr(request, "param", "sqlite") == "postgresql":
        db_url = request.getfixturevalue("db_url_postgresql")
    else:
        db_url = f"sqlite:///{tmp_path / 'raas.db'}"
    cfg = settings(mini_broker, db_url, uid)
    disp = Dispatcher(cfg, LIMITS, clock=clock)
    disp.start()
    assert disp.ready.wait(5)
    nodes: list[FakeNode] = []

    class Env:
        broker, dispatcher, config = mini_broker, disp, cfg

        @staticmethod
        def node(name: str, session: int = 1) -> FakeNode:
            n = FakeNode(mini_broker.admin, f"{uid}-{name}", session).start()
            nodes.append(n)
            deadline = time.monotonic() + 5  # until the dispatcher has seen its birth
            while getattr(disp.nodes.get(n.node_id), "session", None) != session:
                assert time.monotonic() < deadline
                time.sleep(0.005)
            return n

        @staticmethod
        def submit(owner: str = "alice", time_limit_s: float = 10, max_running: int = 1) -> str:
            Q.ensure_owner(owner, max_running)
            clock.advance(0.001)  # distinct submit times: FIFO is by submit time
            return Q.enqueue(owner, SRC, time_limit_s, limits=disp.limits, now=clock()).id

        @staticmethod
        def advance(s: float) -> None:
            clock.advance(s)
            disp.tick_now()
            disp.wait_idle()

    Env.clock = clock
    yield Env
    for n in nodes:
        n.close()
    disp.stop()
