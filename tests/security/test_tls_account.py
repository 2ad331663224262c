"""A researcher's ``mosquitto_sub`` line on the account page works as printed against the TLS
broker: the page of a real dashboard (served by waitress, its own broker connection over TLS)
gives the command, the CA certificate and a fresh password; run as shown, it receives the user's
job topics through the TLS listener and nothing else."""

from __future__ import annotations

import html
import re
import shlex
import shutil
import subprocess
import time

import pytest
import requests

from dashboard.app import create_app
from dashboard.server import BackgroundServer
from gym_raas_mqtt.mqtt import connect, make_client
from gym_raas_mqtt.protocol import TopicKind, topic
from tests.dashboard.dashboard_helpers import csrf_from, make_config, make_user
from tests.security.tls_helpers import start_tls_central

pytestmark = pytest.mark.broker


def _pre(page: str, element_id: str) -> str:
    m = re.search(rf'<pre class="cmd" id="{element_id}">(.*?)</pre>', page, re.DOTALL)
    assert m, f"the account page shows no #{element_id}"
    return html.unescape(m.group(1))


@pytest.fixture
def tls_dashboard(tmp_path):
    """A TLS central broker and a dashboard whose users are told its public mqtts:// address."""
    if not shutil.which("mosquitto_sub"):
        pytest.skip("mosquitto_sub is not installed (make test installs mosquitto-clients)")
    central = start_tls_central(tmp_path / "central")
    public = f"mqtts://localhost:{central.tls_port}"
    h = central.handle
    cfg = make_config(tmp_path, broker_url=public, broker_username="dashboard",
                      broker_password_file=str(h.secrets / "dashboard"),
                      broker_ca_file=str(central.ca),
                      broker_admin_url=h.address("admin", central.admin_password).url(True),
                      public_broker_url=public, threads=8, sse_max_streams=3)
    app = create_app({"TESTING": True, "RAAS_CONFIG": cfg})
    hub = app.extensions["raas_hub"]
    deadline = time.monotonic() + 10
    while not hub.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        assert hub.connected, "the dashboard's own connection over TLS did not come up"
        with BackgroundServer(app, threads=cfg.threads) as server:
            yield central, app, server
    finally:
        app.extensions["raas_subscriber"].stop()
        h.stop()


def test_the_account_pages_mosquitto_sub_line_works_as_printed(tls_dashboard, tmp_path):
    central, app, server = tls_dashboard
    alice = make_user(app, "alice")
    web = requests.Session()
    token = csrf_from(web.get(f"{server.url}/login").text)
    r = web.post(f"{server.url}/login", allow_redirects=False,
                 data={"username": alice.name, "password": alice.password, "csrf_token": token})
    assert r.status_code == 302
    page = web.get(f"{server.url}/account").text
    page = web.post(f"{server.url}/account/broker",
                    data={"csrf_token": csrf_from(page)}).text
    command = _pre(page, "mosquitto-sub")
    assert f"-p {central.tls_port} --cafile raas-ca.pem" in command
    (tmp_path / "raas-ca.pem").write_text(_pre(page, "broker-ca"))
    password = re.search(r"password\s*<code>([^<]+)</code>", page).group(1)
    me = web.get(f"{server.url}/api/v1/me").json()["broker"]
    assert me["tls"] and me["port"] == central.tls_port and "BEGIN CERTIFICATE" in \
        me["ca_certificate"]

    # a retained state of one of alice's jobs, and one of someone else's
    admin = make_client(central.handle.address("admin", central.admin_password))
    connect(admin)
    admin.loop_start()
    mine = topic(TopicKind.JOB_STATE, owner="alice", job="j1")
    theirs = topic(TopicKind.JOB_STATE, owner="bob", job="j2")
    for name in (mine, theirs):
        admin.publish(name, b'{"state": "running"}', qos=1, retain=True).wait_for_publish(5)
    try:
        # as printed, with the password the page issued; -C 1 -W 10: exit after one message
        argv = shlex.split(command.replace("\\\n", " ").replace("PASSWORD", password))
        out = subprocess.run([*argv, "-C", "1", "-W", "10"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f'{mine} {{"state": "running"}}'
        # trusting the system's CAs instead is refused: the client verifies the broker
        i = argv.index("--cafile")
        system_ca = [*argv[:i], "--capath", "/etc/ssl/certs", *argv[i + 2:]]
        out = subprocess.run([*system_ca, "-C", "1", "-W", "5"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=30)
        assert out.returncode != 0 and "{" not in out.stdout
    finally:
        for name in (mine, theirs):
            admin.publish(name, b"", qos=1, retain=True).wait_for_publish(5)
        admin.disconnect()
        admin.loop_stop()
