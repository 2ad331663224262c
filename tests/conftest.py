"""Session fixtures that start real services: a Mosquitto broker (and, in sub-folders, more).

The broker is started once per test session from the project's own configuration
(``broker_config``) on a free loopback port, with authentication on. Tests isolate themselves by
using unique node/job ids (``uid`` fixture), never a shared one.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gym_raas_mqtt.mqtt import BrokerAddress
from tests.databases import (  # noqa: F401  (fixtures: the job database, both backends)
    db, db_url, db_url_postgresql, postgres, postgres_url)
from tests.net import free_port, wait_port  # noqa: F401  (imported from here by many tests)

if TYPE_CHECKING:
    from broker_config.runner import BrokerHandle

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class TestBroker:
    """The running central Mosquitto (from broker_config): where it listens and its superuser."""

    host: str
    port: int
    admin: BrokerAddress
    workdir: Path
    process: subprocess.Popen
    handle: "BrokerHandle"

    def address(self, username: str | None = None, password: str | None = None) -> BrokerAddress:
        return BrokerAddress("tcp", self.host, self.port, username, password)

    @property
    def url(self) -> str:
        return self.admin.url(with_credentials=True)

    @property
    def secrets(self) -> Path:
        """Password files of the service clients (admin, dispatcher, dashboard, readonly)."""
        return self.handle.secrets

    def service(self, username: str) -> BrokerAddress:
        """Address with the stored credentials of a service client, e.g. ``"dispatcher"``."""
        return self.handle.service_address(username)


@dataclass
class LocalTestBroker:
    """A running node-local Mosquitto for node ``node_id``, bridged to the session's ``broker``.

    Service clients: ``admin`` (superuser), ``motor``, ``agent``; per-job clients are made with
    ``broker_config.provision.create_job_client(local_broker.admin, local_broker.node_id, job)``.
    """

    node_id: str
    socket_path: Path
    port: int
    admin: BrokerAddress
    workdir: Path
    process: subprocess.Popen
    handle: "BrokerHandle"
    host: str = "127.0.0.1"

    def address(self, username: str | None = None, password: str | None = None) -> BrokerAddress:
        return BrokerAddress("tcp", self.host, self.port, username, password)

    def unix_address(self, username: str | None = None,
                     password: str | None = None) -> BrokerAddress:
        return BrokerAddress("unix", str(self.socket_path), 0, username, password)

    @property
    def secrets(self) -> Path:
        return self.handle.secrets

    def service(self, username: str) -> BrokerAddress:
        """TCP address with the stored credentials of ``"motor"``, ``"agent"`` or ``"admin"``."""
        return self.handle.service_address(username)


def _stop(handle) -> None:
    handle.stop()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> TestBroker:
    """The central Mosquitto, configured by broker_config (auth + dynamic security), for the whole
    session on a free port. ``broker.admin`` may publish and subscribe anything."""
    if not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed (make test installs it)")
    from broker_config.runner import start_broker

    handle = start_broker("central", tmp_path_factory.mktemp("central-broker"), port=free_port())
    b = TestBroker(handle.host, handle.port, handle.admin_address, handle.dir, handle.process,
                   handle)
    yield b
    _stop(handle)


@pytest.fixture(scope="session")
def local_broker(broker: TestBroker, tmp_path_factory: pytest.TempPathFactory) -> LocalTestBroker:
    """A node-local Mosquitto (unix socket + loopback TCP) whose bridge forwards job telemetry to
    the session's central ``broker``."""
    from broker_config.provision import ensure_bridge
    from broker_config.runner import start_broker

    node_id = f"lnode{os.getpid()}"
    bridge_pw = ensure_bridge(broker.admin, node_id)
    workdir = tmp_path_factory.mktemp("local-broker")
    # The socket's directory must be reachable by any uid (pytest's tmp is 0700), like the
    # directory an agent mounts into a job container.
    sock_dir = Path(tempfile.mkdtemp(prefix="raas-lb-"))
    handle = start_broker("local", workdir, port=free_port(), node_id=node_id,
                          socket_path=sock_dir / "local.sock",
                          central_url=broker.address().url(), bridge_password=bridge_pw)
    assert handle.socket_path is not None
    lb = LocalTestBroker(node_id, handle.socket_path, handle.port, handle.admin_address,
                         handle.dir, handle.process, handle)
    yield lb
    _stop(handle)
    shutil.rmtree(sock_dir, ignore_errors=True)


_counter = itertools.count()


@pytest.fixture
def uid() -> str:
    """A unique id for this test (node/job/owner ids), valid as a topic level."""
    return f"t{os.getpid()}x{next(_counter)}x{uuid.uuid4().hex[:6]}"


RUNNER_IMAGE = os.environ.get("RAAS_RUNNER_IMAGE", "raas-runner:latest")


@pytest.fixture(scope="session")
def docker():
    """A Docker SDK client for the local engine (``make test`` starts it with scripts/dockerd.sh).

    Skips, saying why, only when the engine cannot be reached."""
    try:
        import docker as docker_sdk
    except ImportError:
        pytest.skip("the docker SDK is not installed (pip install -e '.[node]')")
    try:
        client = docker_sdk.from_env(timeout=60)
        client.ping()
    except Exception as e:  # noqa: BLE001 - DockerException or a requests error
        pytest.skip(f"Docker engine unreachable ({e}); run scripts/dockerd.sh start")
    yield client
    client.close()


@pytest.fixture(scope="session")
def runner_image(docker) -> str:
    """Tag of the job runner image; runs images/build.sh (a no-op when current) if it is missing."""
    import docker as docker_sdk

    try:
        docker.images.get(RUNNER_IMAGE)
    except docker_sdk.errors.ImageNotFound:
        subprocess.run([str(ROOT / "images" / "build.sh")], check=True, timeout=900)
        docker.images.get(RUNNER_IMAGE)
    return RUNNER_IMAGE
