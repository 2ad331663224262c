"""The central broker off the machine: TLS ≥ 1.2 with the certificate verified by every client
(services, the bridge, users), and no plain text anywhere but loopback."""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from broker_config import provision
from broker_config.config import BrokerConfig
from broker_config.runner import BrokerError, prepare, start_broker
from dispatcher.config import DispatcherConfig
from dispatcher.limits import QueueLimits
from dispatcher.service import Dispatcher
from fleet_node.config import AgentConfig
from gym_raas_mqtt.config import load
from gym_raas_mqtt.mqtt import BrokerAddress, BrokerUnreachable, ConnectionRefused, Link
from gym_raas_mqtt.protocol import TelemetryBatch, TopicKind, bridge_connected, topic
from tests.broker_config.conftest import Probe
from tests.conftest import free_port
from tests.security.tls_helpers import (TlsCentral, make_ca_and_cert, mqtt_connect_in_clear,
                                        network_address, old_tls_context, start_tls_central)

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def central(tmp_path_factory) -> TlsCentral:
    c = start_tls_central(tmp_path_factory.mktemp("tls-central"))
    yield c
    c.handle.stop()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    """A CA that signed nothing the broker serves."""
    ca, _, _ = make_ca_and_cert(tmp_path_factory.mktemp("other-ca"))
    return ca


def _link(address: BrokerAddress, client_id: str = "admin-tls-test") -> Link:
    return Link(address, client_id, name="central").start(5.0)


def test_tls_connect_verifies_the_certificate(central):
    link = _link(central.handle.tls_address("admin", central.admin_password))
    try:
        sock = link.client.socket()
        assert isinstance(sock, ssl.SSLSocket)
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        assert sock.getpeercert()["subjectAltName"][0] == ("DNS", "localhost")
    finally:
        link.close()
    # the URL form services are configured with, by name and by address (both in the SANs)
    for host in ("localhost", "127.0.0.1"):
        url = f"mqtts://{host}:{central.tls_port}"
        address = BrokerAddress.parse(url, "admin", central.admin_password, ca_file=central.ca)
        assert address.tls and address.port == central.tls_port
        _link(address).close()


def test_a_certificate_from_another_ca_is_refused(central, other_ca):
    url = f"mqtts://localhost:{central.tls_port}"
    for ca in (other_ca, None):  # None: the system's trust store does not know our CA either
        address = BrokerAddress.parse(url, "admin", central.admin_password, ca_file=ca)
        with pytest.raises(ConnectionRefused, match="certificate verify failed"):
            _link(address)


def test_a_certificate_for_another_host_is_refused(central):
    # 127.0.0.2 reaches the same listener, but the certificate names 127.0.0.1 and localhost
    address = BrokerAddress("tcp", "127.0.0.2", central.tls_port, "admin", central.admin_password,
                            tls=True, ca_file=str(central.ca))
    with pytest.raises(ConnectionRefused, match="mismatch|doesn't match"):
        _link(address)


def test_plain_text_is_refused_on_the_tls_listener(central):
    reply = mqtt_connect_in_clear("127.0.0.1", central.tls_port)
    assert not reply.startswith(b"\x20"), "the TLS listener answered a plain-text CONNECT"
    plain = BrokerAddress("tcp", "127.0.0.1", central.tls_port, "admin", central.admin_password)
    with pytest.raises((ConnectionRefused, BrokerUnreachable)):
        Link(plain, "admin-plain-test").start(3.0)


def test_tls_older_than_1_2_is_refused_by_the_broker(central):
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        ctx = old_tls_context(central.ca, version)
        with socket.create_connection(("127.0.0.1", central.tls_port), 5) as raw:
            with pytest.raises(ssl.SSLError) as refused:
                ctx.wrap_socket(raw, server_hostname="localhost")
        # the broker's alert, not the client giving up on its own
        assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"
    ctx = ssl.create_default_context(cafile=central.ca)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", central.tls_port), 5) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as s:
        assert s.version() == "TLSv1.2"


def test_the_plain_text_listener_binds_to_loopback_only(central, tmp_path):
    conf = central.handle.conf_path.read_text()
    assert f"listener {central.handle.port} 127.0.0.1\n" in conf
    assert f"listener {central.tls_port}\ncertfile " in conf and "tls_version tlsv1.2" in conf
    for host in ("0.0.0.0", "::", "192.0.2.10", "central.example.org"):
        with pytest.raises(BrokerError, match="loopback"):
            prepare("central", tmp_path / "c", cfg=load(BrokerConfig, environ={}), host=host,
                    port=free_port())
    with pytest.raises(BrokerError, match="no listener"):
        prepare("central", tmp_path / "c", cfg=load(BrokerConfig, environ={}), port=0)


def test_from_the_network_only_the_tls_listener_answers(central):
    address = network_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    with pytest.raises(OSError):
        socket.create_connection((address, central.handle.port), timeout=2).close()
    url = f"mqtts://{address}:{central.tls_port}"
    _link(BrokerAddress.parse(url, "admin", central.admin_password, ca_file=central.ca)).close()


def test_the_bridge_verifies_the_central_certificate(central, other_ca, tmp_path, uid):
    node = f"tb{uid}"[:40]
    bridge_pw = provision.ensure_bridge(central.handle.admin_address, node)
    admin = Probe(central.handle.address("admin", central.admin_password))
    assert not admin.connect().is_failure
    notification = topic(TopicKind.NODE_BRIDGE, node=node)
    tele = topic(TopicKind.NODE_JOB_TELEMETRY, node=node, job="j1")
    assert admin.subscribe(notification) == 1 and admin.subscribe(tele) == 1
    url = f"mqtts://localhost:{central.tls_port}"
    refused = start_broker("local", tmp_path / "refused", port=free_port(), node_id=node,
                           socket_path=tmp_path / "r.sock", central_url=url,
                           bridge_password=bridge_pw,
                           cfg=load(BrokerConfig, environ={}, central_ca_file=other_ca))
    try:
        assert "bridge_insecure false" in refused.conf_path.read_text()
        assert admin.nothing(3.0, [notification]), "a bridge with the wrong CA connected"
        assert "certificate verify failed" in refused.log_path.read_text()
    finally:
        refused.stop()
    local = start_broker("local", tmp_path / "local", port=free_port(), node_id=node,
                         socket_path=tmp_path / "l.sock", central_url=url,
                         bridge_password=bridge_pw,
                         cfg=load(BrokerConfig, environ={}, central_ca_file=central.ca))
    motor = Probe(local.service_address("motor"), node=node)
    try:
        deadline = time.monotonic() + 10
        while not bridge_connected(admin.expect(max(0.1, deadline - time.monotonic()),
                                                notification)[1]):
            pass
        assert not motor.connect().is_failure
        batch = TelemetryBatch(job_id="j1", node_id=node, episode_id=1, seq=(0,), t=(0.0,),
                               theta=(3.1,), theta_dot=(0.0,), u_desired=(0.5,),
                               u_applied=(0.5,), reward=(-9.6,), deadline_miss=(False,))
        motor.publish(tele, batch.to_bytes(), qos=0)
        assert TelemetryBatch.from_bytes(admin.expect(5, tele)[1]) == batch
    finally:
        motor.close()
        admin.close()
        local.stop()


def test_services_connect_over_tls_with_the_ca(central, tmp_path, uid):
    url = f"mqtts://localhost:{central.tls_port}"
    env = {"RAAS_CENTRAL_MQTT_URL": url, "RAAS_CENTRAL_CA_FILE": str(central.ca),
           "RAAS_NODE_ID": "pi-07"}
    agent = load(AgentConfig, environ=env).central_address()
    assert agent.tls and agent.ca_file == str(central.ca) and agent.username == "node-pi-07"
    cfg = load(DispatcherConfig, environ=env, database_url=f"sqlite:///{tmp_path / 'raas.db'}",
               mqtt_password_file=central.handle.secrets / "dispatcher", session_expiry_s=0)
    assert cfg.mqtt_ca_file == central.ca
    dispatcher = Dispatcher(cfg, QueueLimits())
    dispatcher.start()
    try:  # its URL names only the TLS listener
        assert dispatcher.ready.wait(10), "the dispatcher did not connect over TLS"
    finally:
        dispatcher.stop()
