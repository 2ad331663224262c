"""Identity bound to login (issue 10, item 1): every login connects only with its own client id,
so nobody can take over another client's connection or resume its session — on both brokers.

Findings covered: "Client-id takeover, node-local broker" (job code connecting with the motor
node's client id kicked it off) and "Client-id takeover, central broker" (a user's login connecting
as the dispatcher disconnected it and resumed its persistent session; the same against agents).
"""

from __future__ import annotations

import threading
import time

import pytest

from broker_config import acl, provision
from dispatcher.config import DispatcherConfig
from dispatcher.limits import QueueLimits
from dispatcher.service import Dispatcher
from gym_raas_mqtt.config import load
from gym_raas_mqtt.mqtt import BrokerAddress, Link, connect, make_client

pytestmark = pytest.mark.broker


def connack(address: BrokerAddress, client_id: str, *, clean_start: bool = True,
            session_expiry_s: int = 0) -> object:
    """The CONNACK reason code of one connection attempt (the client is closed after)."""
    got: list = []
    done = threading.Event()
    c = make_client(address, client_id, clean_start=clean_start,
                    session_expiry_s=session_expiry_s)

    def on_connect(client, userdata, flags, rc, props=None):  # noqa: ARG001
        got.append((rc, flags))
        done.set()

    c.on_connect = on_connect
    connect(c)
    c.loop_start()
    try:
        assert done.wait(5), "no CONNACK"
        return got[0]
    finally:
        c.disconnect()
        c.loop_stop()


class Watch:
    """A service connection we watch for being kicked off (its on_down count)."""

    def __init__(self, address: BrokerAddress, client_id: str) -> None:
        self.downs = 0
        self.link = Link(address, client_id, name="watched", on_down=self._down,
                         reconnect_delay_s=(0.1, 0.5)).start(5)

    def _down(self) -> None:
        self.downs += 1

    def close(self) -> None:
        self.link.close()


def test_a_users_login_cannot_take_the_dispatchers_id_or_session(broker, tmp_path, uid):
    cfg = load(DispatcherConfig, environ={}, database_url=f"sqlite:///{tmp_path / 'raas.db'}",
               mqtt_url=broker.address().url(), mqtt_username="dispatcher",
               mqtt_password_file=broker.secrets / "dispatcher", tick_s=0.1)
    disp = Dispatcher(cfg, QueueLimits())
    disp.start()
    try:
        assert disp.ready.wait(10)
        owner = f"o{uid}"
        user = broker.address(provision.user_username(owner),
                              provision.ensure_user(broker.admin, owner))
        for attempt in range(3):  # before: each attempt kicked the dispatcher off
            rc, flags = connack(user, "dispatcher", clean_start=False, session_expiry_s=3600)
            assert rc.is_failure, rc
            assert not flags.session_present  # nor could it resume the dispatcher's session
        time.sleep(0.5)
        assert disp.connected.is_set() and disp.stats["dropped"] == 0
        # the dispatcher's own login, under any other id, is refused too
        assert connack(broker.service("dispatcher"), f"dispatcher-{uid}")[0].is_failure
    finally:
        disp.stop()


def test_nobody_takes_over_an_agents_connection(broker, uid):
    node, owner = f"n{uid}", f"o{uid}"
    node_login = broker.address(provision.node_username(node),
                                provision.ensure_node(broker.admin, node))
    agent = Watch(node_login, provision.node_username(node))
    try:
        user = broker.address(provision.user_username(owner),
                              provision.ensure_user(broker.admin, owner))
        bridge = broker.address(provision.bridge_username(node),
                                provision.ensure_bridge(broker.admin, node))
        for login in (user, bridge, broker.service("dashboard"), broker.service("readonly")):
            assert connack(login, provision.node_username(node))[0].is_failure, login.username
        time.sleep(0.5)
        assert agent.downs == 0 and agent.link.is_up
    finally:
        agent.close()


def test_every_central_login_is_bound_to_its_own_id(broker, uid):
    node, owner = f"n{uid}", f"o{uid}"
    logins = {
        provision.user_username(owner): provision.ensure_user(broker.admin, owner),
        provision.node_username(node): provision.ensure_node(broker.admin, node),
        provision.bridge_username(node): provision.ensure_bridge(broker.admin, node),
    }
    addresses = [broker.address(u, p) for u, p in logins.items()]
    addresses += [broker.service(s) for s in ("dispatcher", "dashboard", "readonly")]
    for address in addresses:
        own = acl.client_id(address.username)
        assert own == address.username
        assert not connack(address, own)[0].is_failure, own
        assert connack(address, f"x{uid}")[0].is_failure, own
    # the operator's superuser stays unbound
    assert not connack(broker.admin, f"admin-{uid}")[0].is_failure


def test_job_code_cannot_take_the_motor_nodes_id(local_broker, uid):
    node = local_broker.node_id
    motor = Watch(local_broker.service("motor"), acl.client_id("motor", node))
    agent = local_broker.admin  # the agent administers job logins as the local admin
    username, password = provision.create_job_client(agent, node, f"j{uid}")
    try:
        job = local_broker.unix_address(username, password)
        for victim in (acl.client_id("motor", node), acl.client_id("agent", node), "admin"):
            assert connack(job, victim)[0].is_failure, victim
        assert not connack(job, username)[0].is_failure  # its own id works
        time.sleep(0.5)
        assert motor.downs == 0 and motor.link.is_up
        # the motor node's login is bound to its id as well
        assert connack(local_broker.service("motor"), f"motor-x{uid}")[0].is_failure
    finally:
        provision.delete_job_client(agent, username)
        motor.close()


def test_the_agents_local_login_is_bound_and_cannot_administer(local_broker, uid):
    node = local_broker.node_id
    agent = local_broker.service("agent")
    assert not connack(agent, acl.client_id("agent", node))[0].is_failure
    for other in (acl.client_id("motor", node), f"agent-x{uid}"):
        assert connack(agent, other)[0].is_failure, other
