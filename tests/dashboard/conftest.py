"""Fixtures for the dashboard: an app on a temporary SQLite database and local object store,
users with passwords and API tokens (helpers in dashboard_helpers.py)."""

from __future__ import annotations

from pathlib import Path
import time
from typing import Any, Iterator

import pytest

from dashboard.app import create_app
from dashboard.config import DashboardConfig
from dashboard.server import BackgroundServer
from gym_raas_mqtt import mqtt
from dashboard_helpers import User, make_config, make_user


@pytest.fixture
def dash_config(tmp_path: Path, db_url: str) -> DashboardConfig:
    """Every dashboard test runs on SQLite and on PostgreSQL (``db_url`` is parametrised)."""
    return make_config(tmp_path, database_url=db_url)


@pytest.fixture
def app(dash_config: DashboardConfig) -> Any:
    return create_app({"TESTING": True, "RAAS_CONFIG": dash_config})


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def alice(app: Any) -> User:
    return make_user(app, "alice")


@pytest.fixture
def bob(app: Any) -> User:
    return make_user(app, "bob")


@pytest.fixture
def admin(app: Any) -> User:
    return make_user(app, "root", admin=True)


@pytest.fixture
def live(broker: Any, tmp_path: Any) -> Iterator[Any]:
    """The dashboard served by waitress, subscribed to the real broker as its own read-only
    ``dashboard`` account; ``live.pub`` is a connected superuser client for playing nodes."""
    # the dashboard's own read-only broker account, as provisioned by broker_config
    cfg = make_config(tmp_path, broker_url=broker.address().url(), broker_username="dashboard",
                      broker_password_file=str(broker.secrets / "dashboard"),
                      broker_admin_url=broker.admin.url(with_credentials=True), threads=8,
                      sse_max_streams=3, sse_max_streams_per_user=3, sse_keepalive_s=0.3)
    app = create_app({"TESTING": True, "RAAS_CONFIG": cfg})
    hub = app.extensions["raas_hub"]
    deadline = time.monotonic() + 10
    while not hub.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert hub.connected, "the dashboard's subscriber did not connect"
    pub = mqtt.make_client(broker.admin)
    mqtt.connect(pub)
    pub.loop_start()
    with BackgroundServer(app, threads=cfg.threads) as server:
        server.pub, server.cfg = pub, cfg
        yield server
    pub.disconnect()
    pub.loop_stop()
    app.extensions["raas_subscriber"].stop()
