"""The node-local broker's bridge: job telemetry reaches the central broker, notifications tell
whether the bridge is up, and it recovers when the central broker restarts."""

from __future__ import annotations

import socket

import pytest

from broker_config import provision
from broker_config.runner import start_broker
from tests.broker_config.conftest import NOT_AUTHORIZED
from gym_raas_mqtt.protocol import TelemetryBatch, bridge_connected, decode, topic
from gym_raas_mqtt.protocol import TopicKind as K

pytestmark = pytest.mark.broker


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch(job: str, node: str) -> TelemetryBatch:
    return TelemetryBatch(job_id=job, node_id=node, episode_id=1, seq=(0, 1), t=(0.0, 0.02),
                          theta=(3.1, 3.0), theta_dot=(0.0, -0.5), u_desired=(0.5, 2.5),
                          u_applied=(0.5, 2.0), reward=(-9.6, -9.0), deadline_miss=(False, True))


def _wait_bridge_up(p, node: str) -> None:
    """Read the bridge notification until it says connected (retained, so one arrives at once)."""
    for _ in range(20):
        t, payload, _ = p.expect(10)
        assert decode(t, payload)[0].kind is K.NODE_BRIDGE
        if bridge_connected(payload):
            return
    raise AssertionError("bridge never reported connected")


def test_telemetry_is_bridged_to_central(broker, local_broker, probe, uid):
    node = local_broker.node_id
    central = probe(broker.admin)
    assert central.subscribe(topic(K.NODE_BRIDGE, node=node)) == 1
    _wait_bridge_up(central, node)
    tele = topic(K.NODE_JOB_TELEMETRY, node=node, job=f"j{uid}")
    assert central.subscribe(tele) == 1
    motor = probe(local_broker.service("motor"), node=node)
    batch = _batch(f"j{uid}", node)
    motor.publish(tele, batch.to_bytes(), qos=0)
    t, payload, _ = central.expect(5)
    assert t == tele and TelemetryBatch.from_bytes(payload) == batch
    # it arrives in the node's subtree; users see it only as the dispatcher relays it to
    # raas/v1/jobs/<owner>/... (tests/dispatcher/test_relay.py)
    owner_pw = provision.ensure_user(broker.admin, f"o{uid}")
    user = probe(broker.address(provision.user_username(f"o{uid}"), owner_pw))
    assert user.subscribe(tele) == NOT_AUTHORIZED


def test_job_client_cannot_inject_telemetry(broker, local_broker, probe, uid):
    node = local_broker.node_id
    agent = local_broker.admin  # the agent administers job logins as the local admin
    username, password = provision.create_job_client(agent, node, f"j{uid}")
    try:
        central = probe(broker.admin)
        tele = topic(K.NODE_JOB_TELEMETRY, node=node, job=f"j{uid}")
        assert central.subscribe(tele) == 1
        job = probe(local_broker.unix_address(username, password))
        job.publish(tele, _batch(f"j{uid}", node).to_bytes(), qos=0)
        assert central.nothing(0.5)
    finally:
        provision.delete_job_client(agent, username)


def test_bridge_survives_central_restart(tmp_path, probe):
    """Runtime accounts persist (dynsec JSON), and the bridge reconnects by itself."""
    node = "restartnode"
    cport = _port()
    central = start_broker("central", tmp_path / "c", port=cport)
    local = None
    try:
        pw = provision.ensure_bridge(central.admin_address, node)
        local = start_broker("local", tmp_path / "l", port=_port(), node_id=node,
                             central_url=f"mqtt://127.0.0.1:{cport}", bridge_password=pw)
        tele = topic(K.NODE_JOB_TELEMETRY, node=node, job="j")
        motor = probe(local.service_address("motor"), node=node)
        for round_ in range(2):
            w = probe(central.admin_address)
            assert w.subscribe(topic(K.NODE_BRIDGE, node=node)) == 1
            _wait_bridge_up(w, node)
            assert w.subscribe(tele) == 1
            # after a restart the retained "1" may predate the reconnect: retry QoS 0 sends
            for _ in range(50):
                motor.publish(tele, f"r{round_}".encode(), qos=0)
                try:
                    assert w.expect(0.2)[:2] == (tele, f"r{round_}".encode())
                    break
                except TimeoutError:
                    continue
            else:
                raise AssertionError("the bridge did not come back within 10 s")
            w.close()
            if round_ == 0:
                central.stop()
                central = start_broker("central", tmp_path / "c", port=cport)
    finally:
        if local is not None:
            local.stop()
        central.stop()
