"""Node signing keys in the registry (dispatcher.nodes), on SQLite and PostgreSQL: the first key a
node id announces is enrolled, a changed one is refused and logged, an admin resets it."""

from __future__ import annotations

import base64
import logging
import time

from dispatcher import nodes
from dispatcher.models import Node, database
from gym_raas_mqtt import protocol
from gym_raas_mqtt.protocol import NodeMeta, TopicKind

K1 = base64.b64encode(b"\x01" * 32).decode()
K2 = base64.b64encode(b"\x02" * 32).decode()


def test_the_first_key_is_kept_and_a_changed_one_refused(db, caplog):
    assert nodes.enroll_key("pi-k", K1, 10.0) == "enrolled"  # before any state: a row is made
    row = Node.get_by_id("pi-k")
    assert (row.public_key, row.public_key_at, row.state) == (K1, 10.0, "offline")
    assert nodes.enroll_key("pi-k", K1, 11.0) == "same"
    with caplog.at_level(logging.WARNING, logger="dispatcher.nodes"):
        assert nodes.enroll_key("pi-k", K2, 12.0) == "refused"
    assert "pi-k announced a signing key" in caplog.text and "refused" in caplog.text
    assert Node.get_by_id("pi-k").public_key == K1
    assert nodes.fleet_keys() == {"pi-k": (K1, 10.0)}
    # presence never touches the key
    reg = nodes.NodeRegistry()
    reg.note("pi-k", state="idle", session=2)
    reg.flush()
    assert Node.get_by_id("pi-k").public_key == K1


def test_an_admin_reset_enrolls_the_new_key(db):
    nodes.enroll_key("pi-r", K1, 1.0)
    assert nodes.reset_key("pi-r", None, 2.0)
    assert nodes.fleet_keys() == {}
    assert nodes.enroll_key("pi-r", K2, 3.0) == "enrolled"
    assert nodes.reset_key("pi-r", K1, 4.0)
    assert nodes.fleet_keys() == {"pi-r": (K1, 4.0)}
    assert not nodes.reset_key("nobody", K1, 5.0)


def test_an_invalid_key_is_ignored(db, caplog):
    reg = nodes.NodeRegistry()
    reg.note("pi-i", state="idle", session=1)
    reg.flush()
    with caplog.at_level(logging.WARNING, logger="dispatcher.nodes"):
        assert nodes.enroll_key("pi-i", "not base64!", 1.0) == "invalid"
        assert nodes.enroll_key("pi-i", base64.b64encode(b"short").decode(), 1.0) == "invalid"
    assert "invalid signing key" in caplog.text
    assert Node.get_by_id("pi-i").public_key is None


def test_the_dispatcher_enrolls_from_the_retained_meta_and_refuses_a_new_key(env, caplog):
    """Over MQTT: a node's meta enrolls its key; a rebuilt node (same id, new key) is refused."""
    node = env.node("k")
    topic = protocol.topic(TopicKind.NODE_META, node=node.node_id)

    def announce(key: str) -> None:
        meta = NodeMeta(backend="sim", software_version="0.1.0", calibration_id="c",
                        ts=env.clock(), public_key=key)
        node.client.publish(topic, meta.to_bytes(), qos=1, retain=True).wait_for_publish(5)
        env.dispatcher.wait_idle()

    def enrolled() -> str | None:
        with database.connection_context():
            return nodes.fleet_keys().get(node.node_id, (None, None))[0]

    with caplog.at_level(logging.WARNING, logger="dispatcher.nodes"):
        announce(K1)
        deadline = time.monotonic() + 5
        while enrolled() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert enrolled() == K1
        announce("garbage")
        announce(K2)
        while "other than its enrolled one" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
    assert enrolled() == K1
    assert f"node {node.node_id} announced an invalid signing key" in caplog.text
    assert f"node {node.node_id} announced a signing key" in caplog.text
    node.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
