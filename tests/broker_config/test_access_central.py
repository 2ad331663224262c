"""What each central role may and may not do, checked against the real broker."""

from __future__ import annotations

import pytest

from broker_config import provision
from broker_config.dynsec import DynSec, DynSecError
from gym_raas_mqtt.protocol import TopicKind as K
from gym_raas_mqtt.protocol import job_filter, node_filter, root_filter, topic, topic_filter

NOT_AUTHORIZED = 0x87  # MQTT 5 reason code in SUBACK and PUBACK

pytestmark = pytest.mark.broker


@pytest.fixture
def watcher(broker, probe, uid):
    """The superuser, subscribed to everything under raas/v1/ (sees what gets through)."""
    w = probe(broker.admin)
    assert w.subscribe(root_filter()) == 1
    return w


def test_anonymous_and_wrong_password_are_refused(broker, probe):
    assert probe(broker.address(), expect_ok=False).is_failure
    assert probe(broker.address("admin", "wrong"), expect_ok=False).is_failure
    assert probe(broker.address("nobody", "x"), expect_ok=False).is_failure
    assert not probe(broker.admin, expect_ok=False).is_failure


def test_user_reads_only_own_jobs(broker, probe, watcher, uid):
    alice, bob = f"alice{uid}", f"bob{uid}"
    pw = provision.ensure_user(broker.admin, alice)
    a = probe(broker.address(provision.user_username(alice), pw))
    assert a.subscribe(job_filter(alice)) == 1
    own = topic(K.JOB_STATE, owner=alice, job="j1")
    assert a.subscribe(own) == 1
    # another user's jobs, wildcards wider than her own tree, node and dispatcher topics
    for denied in (job_filter(bob), topic(K.JOB_STATE, owner=bob, job="j1"),
                   topic_filter(K.JOB_STATE), topic_filter(K.JOB_TELEMETRY), "raas/v1/jobs/#",
                   root_filter(), "#", node_filter("n1"), topic(K.DISPATCHER_STATE),
                   "$CONTROL/dynamic-security/#", "$SYS/#"):
        assert a.subscribe(denied) == NOT_AUTHORIZED, denied
    # she receives her own job's state, published by the superuser
    watcher.publish(own, b"mine")
    got = {a.expect()[1], a.expect()[1]}  # once per matching subscription
    assert got == {b"mine"}
    # she may not write anything: QoS 1 PUBACK says so, and nothing is delivered
    assert a.publish(own, b"forged") == NOT_AUTHORIZED
    watcher.expect(topic=own)  # the superuser's own message
    assert watcher.nothing(topics=[own])


def test_user_password_can_be_rotated(broker, probe, uid):
    owner = f"carol{uid}"
    old = provision.ensure_user(broker.admin, owner)
    new = provision.ensure_user(broker.admin, owner)
    name = provision.user_username(owner)
    assert probe(broker.address(name, old), expect_ok=False).is_failure
    probe(broker.address(name, new))
    provision.remove_user(broker.admin, owner)
    assert probe(broker.address(name, new), expect_ok=False).is_failure


def test_node_writes_its_own_topics_only(broker, probe, watcher, uid):
    node, other = f"n{uid}", f"m{uid}"
    pw = provision.ensure_node(broker.admin, node)
    n = probe(broker.address(provision.node_username(node), pw))
    allowed = (topic(K.NODE_STATE, node=node), topic(K.NODE_META, node=node),
               topic(K.NODE_JOB_UPDATE, node=node, job="j1"),
               topic(K.NODE_JOB_LOG, node=node, job="j1"))
    for t in allowed:
        assert n.publish(t, b"ok") == 0, t
        assert watcher.expect(topic=t)[0] == t
    refused = (topic(K.NODE_JOB_NEXT, node=node), topic(K.NODE_CMD, node=node),
               topic(K.NODE_JOB_ACCEPTED, node=node, job="j1"),
               topic(K.NODE_JOB_REJECTED, node=node, job="j1"),
               topic(K.NODE_STATE, node=other), topic(K.NODE_JOB_UPDATE, node=other, job="j1"),
               topic(K.JOB_STATE, owner="o1", job="j1"), topic(K.DISPATCHER_STATE),
               topic(K.NODE_BRIDGE, node=node),
               # a node writes its jobs' logs in its own subtree only (the dispatcher relays them)
               topic(K.JOB_LOG, owner="o1", job="j1"), topic(K.JOB_TELEMETRY, owner="o1", job="j1"),
               topic(K.NODE_JOB_LOG, node=other, job="j1"))
    for t in refused:
        assert n.publish(t, b"forged") == NOT_AUTHORIZED, t
    assert watcher.nothing(topics=refused)
    for t in (topic(K.NODE_JOB_NEXT, node=node), topic(K.NODE_CMD, node=node),
              topic_filter(K.NODE_JOB_ACCEPTED, node=node), node_filter(node),
              topic(K.DISPATCHER_STATE)):
        assert n.subscribe(t) == 1, t
    for t in (node_filter(other), topic_filter(K.NODE_CMD), topic_filter(K.JOB_STATE),
              root_filter(), "#"):
        assert n.subscribe(t) == NOT_AUTHORIZED, t


def test_node_will_is_delivered(broker, probe, watcher, uid):
    """The broker checks the will against the node's ACL: its own state must be allowed."""
    node = f"n{uid}"
    pw = provision.ensure_node(broker.admin, node)
    from gym_raas_mqtt.mqtt import Will, connect, make_client

    c = make_client(broker.address(provision.node_username(node), pw),
                    provision.node_username(node),  # the one client id this login may use
                    will=Will(topic(K.NODE_STATE, node=node), b"lost", 1, True))
    connect(c)
    c.loop(1.0)
    c.socket().close()  # vanish without DISCONNECT
    t, payload, _ = watcher.expect(5, topic=topic(K.NODE_STATE, node=node))
    assert payload == b"lost"
    watcher.publish(t, b"", retain=True)


def test_dispatcher_drives_nodes_but_cannot_forge_their_updates(broker, probe, watcher, uid):
    d = probe(broker.service("dispatcher"))
    node = f"n{uid}"
    for t in (topic(K.NODE_JOB_NEXT, node=node), topic(K.NODE_CMD, node=node),
              topic(K.NODE_JOB_ACCEPTED, node=node, job="j"),
              topic(K.JOB_STATE, owner="o", job="j"), topic(K.DISPATCHER_STATE),
              # the relay of the telemetry and logs of the job a node holds
              topic(K.JOB_TELEMETRY, owner="o", job="j"), topic(K.JOB_LOG, owner="o", job="j")):
        assert d.publish(t) == 0, t
        assert watcher.expect(topic=t)[0] == t
    for t in (topic(K.NODE_JOB_UPDATE, node=node, job="j"),
              topic(K.NODE_JOB_TELEMETRY, node=node, job="j"), "$CONTROL/dynamic-security/v1"):
        assert d.publish(t) == NOT_AUTHORIZED, t
    assert d.subscribe(root_filter()) == 1
    assert d.subscribe("#") == NOT_AUTHORIZED


@pytest.mark.parametrize("account", ["dashboard", "readonly"])
def test_read_only_accounts_write_nothing(broker, probe, watcher, account, uid):
    r = probe(broker.service(account))
    assert r.subscribe(root_filter()) == 1
    assert r.subscribe("$SYS/broker/uptime") == 1
    assert r.subscribe("$CONTROL/dynamic-security/#") == NOT_AUTHORIZED
    tried = (topic(K.NODE_CMD, node=f"n{uid}"), topic(K.JOB_STATE, owner="o", job="j"))
    for t in tried:
        assert r.publish(t) == NOT_AUTHORIZED
    assert watcher.nothing(topics=tried)


def test_bridge_account_only_forwards_telemetry(broker, probe, watcher, uid):
    node = f"n{uid}"
    b = probe(broker.address(provision.bridge_username(node),
                             provision.ensure_bridge(broker.admin, node)))
    assert b.publish(topic(K.NODE_JOB_TELEMETRY, node=node, job="j")) == 0
    assert b.publish(topic(K.NODE_BRIDGE, node=node), b"1") == 0
    assert b.publish(topic(K.NODE_STATE, node=node)) == NOT_AUTHORIZED
    assert b.publish(topic(K.JOB_LOG, owner="o", job="j")) == NOT_AUTHORIZED
    assert b.publish(topic(K.JOB_TELEMETRY, owner="o", job="j")) == NOT_AUTHORIZED
    assert b.publish(topic(K.NODE_JOB_TELEMETRY, node=f"x{uid}", job="j")) == NOT_AUTHORIZED
    assert b.subscribe(root_filter()) == NOT_AUTHORIZED
    for t in (topic(K.NODE_JOB_TELEMETRY, node=node, job="j"), topic(K.NODE_BRIDGE, node=node)):
        assert watcher.expect(topic=t)[0] == t  # in publishing order (one client, QoS 1)


def test_only_admin_may_administer(broker, uid):
    node = f"n{uid}"
    pw = provision.ensure_node(broker.admin, node)
    with pytest.raises(DynSecError):
        with DynSec(broker.address(provision.node_username(node), pw), timeout_s=1):
            pass
    with DynSec(broker.admin) as ds:
        with pytest.raises(DynSecError) as e:
            ds.create_client(provision.node_username(node), "x", [])
        assert "already exists" in e.value.error.lower()
        assert ds.delete_client(f"ghost{uid}") is False
        assert provision.node_username(node) in ds.list_clients()
        assert ds.get_client(f"ghost{uid}") is None
        ds.ensure_role(f"r{uid}", [("subscribePattern", "a/b")])
        ds.ensure_role(f"r{uid}", [("subscribePattern", "a/c"), ("publishClientSend", "a/c")])
        acls = {(a["acltype"], a["topic"]) for a in ds.get_role(f"r{uid}")["acls"]}
        assert acls == {("subscribePattern", "a/c"), ("publishClientSend", "a/c")}
        assert ds.delete_role(f"r{uid}") and not ds.delete_role(f"r{uid}")
