"""What the node-local broker's roles (motor, agent, per-job clients) may and may not do."""

from __future__ import annotations

import os
import subprocess

import pytest

from broker_config import provision
from broker_config.dynsec import DynSecError
from gym_raas_mqtt.protocol import TopicKind as K
from gym_raas_mqtt.protocol import local_filter, node_filter, root_filter, topic, topic_filter

NOT_AUTHORIZED = 0x87  # MQTT 5 reason code in SUBACK and PUBACK

pytestmark = pytest.mark.broker


@pytest.fixture
def watcher(local_broker, probe):
    """The superuser, subscribed to the node's env topics and job topics (not the retained bridge
    notification)."""
    w = probe(local_broker.admin)
    assert w.subscribe(local_filter(local_broker.node_id)) == 1
    assert w.subscribe("raas/v1/jobs/#") == 1
    return w


@pytest.fixture
def job_client(local_broker, uid):
    """A per-job client made by the agent (as the node-local broker's admin), deleted after."""
    agent = local_broker.admin
    username, password = provision.create_job_client(agent, local_broker.node_id, f"j{uid}")
    yield local_broker.unix_address(username, password)
    provision.delete_job_client(agent, username)


def test_anonymous_refused_on_socket_and_tcp(local_broker, probe):
    assert probe(local_broker.unix_address(), expect_ok=False).is_failure
    assert probe(local_broker.address(), expect_ok=False).is_failure
    assert probe(local_broker.unix_address("motor", "wrong"), expect_ok=False).is_failure


def test_job_client_has_only_its_side_of_the_env_loop(local_broker, probe, watcher, job_client,
                                                      uid):
    node, other = local_broker.node_id, f"other{uid}"
    j = probe(job_client)
    for kind in (K.ENV_ACT, K.ENV_RESET, K.ENV_STATE):
        t = topic(kind, node=node)
        assert j.publish(t) == 0, t
        assert watcher.expect()[0] == t
    for kind in (K.ENV_OBS, K.ENV_MOTOR_STATE, K.ENV_RESET_REPLY):
        assert j.subscribe(topic(kind, node=node)) in (0, 1)
    refused_pub = [topic(K.ENV_OBS, node=node), topic(K.ENV_RESET_REPLY, node=node),
                   topic(K.ENV_MOTOR_STATE, node=node), topic(K.ENV_ESTOP, node=node),
                   topic(K.ENV_JOB, node=node), topic(K.ENV_ACT, node=other),
                   topic(K.ENV_STATE, node=other), topic(K.JOB_TELEMETRY, owner="o", job="j"),
                   topic(K.NODE_STATE, node=node), "$CONTROL/dynamic-security/v1"]
    for t in refused_pub:
        assert j.publish(t, b"forged") == NOT_AUTHORIZED, t
    j.publish(topic(K.ENV_OBS, node=node), b"forged", qos=0)  # QoS 0: silently dropped
    assert watcher.nothing()
    for t in (topic(K.ENV_ACT, node=node), topic(K.ENV_OBS, node=other), local_filter(node),
              node_filter(node), topic_filter(K.NODE_STATE), root_filter(), "#",
              topic_filter(K.ENV_OBS), "$CONTROL/dynamic-security/#"):
        assert j.subscribe(t) == NOT_AUTHORIZED, t


def test_motor_and_agent_roles(local_broker, probe, watcher, uid):
    node = local_broker.node_id
    m = probe(local_broker.service("motor"), node=node)
    a = probe(local_broker.service("agent"), node=node)
    for kind in (K.ENV_ACT, K.ENV_RESET, K.ENV_STATE, K.ENV_ESTOP, K.ENV_JOB, K.ENV_SELFTEST):
        assert m.subscribe(topic(kind, node=node)) == 1
    for t in (topic(K.ENV_OBS, node=node), topic(K.ENV_RESET_REPLY, node=node),
              topic(K.ENV_MOTOR_STATE, node=node), topic(K.ENV_SELFTEST_REPLY, node=node)):
        assert m.publish(t) == 0, t
        assert watcher.expect()[0] == t
    # telemetry goes to its node's subtree (bridged out; outside the watcher's env/<node>/#)
    assert m.publish(topic(K.NODE_JOB_TELEMETRY, node=node, job=f"j{uid}")) == 0
    for t in (topic(K.JOB_TELEMETRY, owner="o", job=f"j{uid}"),
              topic(K.NODE_JOB_TELEMETRY, node=f"x{uid}", job=f"j{uid}")):
        assert m.publish(t) == NOT_AUTHORIZED, t
    for t in (topic(K.ENV_ACT, node=node), topic(K.ENV_ESTOP, node=node),
              topic(K.ENV_STATE, node=node)):
        assert m.publish(t) == NOT_AUTHORIZED, t
    assert m.subscribe("$CONTROL/dynamic-security/#") == NOT_AUTHORIZED
    for kind in (K.ENV_ESTOP, K.ENV_JOB, K.ENV_SELFTEST):
        assert a.publish(topic(kind, node=node)) == 0
        assert watcher.expect()[0] == topic(kind, node=node)
    assert a.publish(topic(K.ENV_ACT, node=node)) == NOT_AUTHORIZED
    assert a.publish(topic(K.ENV_OBS, node=node)) == NOT_AUTHORIZED
    for kind in (K.ENV_MOTOR_STATE, K.ENV_STATE, K.ENV_SELFTEST_REPLY):
        assert a.subscribe(topic(kind, node=node)) == 1
    assert a.subscribe(topic(K.ENV_ACT, node=node)) == NOT_AUTHORIZED
    # the agent's presence login does not administer the broker (job logins are made as admin)
    assert a.subscribe("$CONTROL/dynamic-security/#") == NOT_AUTHORIZED
    assert watcher.nothing()


def test_job_client_talks_to_motor_through_the_socket(local_broker, probe, job_client):
    node = local_broker.node_id
    m = probe(local_broker.service("motor"), node=node)
    j = probe(job_client)
    assert m.subscribe(topic(K.ENV_ACT, node=node)) == 1
    assert j.subscribe(topic(K.ENV_OBS, node=node)) == 1
    j.publish(topic(K.ENV_ACT, node=node), b"a1", qos=0)
    assert m.expect()[1] == b"a1"
    m.publish(topic(K.ENV_OBS, node=node), b"o1", qos=0)
    assert j.expect()[1] == b"o1"


def test_deleted_job_client_is_disconnected_and_refused(local_broker, probe, uid):
    agent = local_broker.admin  # the agent administers job logins as the local admin
    username, password = provision.create_job_client(agent, local_broker.node_id, f"j{uid}")
    j = probe(local_broker.unix_address(username, password))
    assert provision.delete_job_client(agent, username) is True
    assert j.disconnected.wait(3), "the broker kept a deleted client connected"
    j.close()
    assert probe(local_broker.unix_address(username, password), expect_ok=False).is_failure
    assert provision.delete_job_client(agent, username) is False  # idempotent


def test_job_client_cannot_administer(local_broker, job_client):
    from broker_config.dynsec import DynSec

    with pytest.raises(DynSecError):
        with DynSec(job_client, timeout_s=1):
            pass


def test_socket_usable_by_unprivileged_uid(local_broker, watcher, job_client):
    """A job container runs as a non-root uid: the socket must accept it (auth protects it)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged uid")
    act = topic(K.ENV_ACT, node=local_broker.node_id)

    def pub(password: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["mosquitto_pub", "--unix", str(local_broker.socket_path), "-V", "mqttv5", "-q", "1",
             "-u", job_client.username, "-i", job_client.username, "-P", password, "-t", act,
             "-m", "from-nobody"],
            user=65534, group=65534, capture_output=True, text=True, timeout=30, cwd="/")

    res = pub(job_client.password)
    assert res.returncode == 0, res.stderr
    assert watcher.expect()[:2] == (act, b"from-nobody")
    assert pub("wrong").returncode != 0
