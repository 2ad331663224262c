"""Fixtures for motor node tests (import them into a test module): nodes on the session's
node-local broker, and an MQTT probe.

Each test gets its own node id (``uid``) and talks to the broker as its admin, so tests never see
each other's retained messages; tests of the real credentials use the broker's own node id.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable

import pytest

from fleet_node.motor.config import MotorConfig
from fleet_node.motor.node import MotorNode
from gym_raas_mqtt import protocol
from gym_raas_mqtt.mqtt import BrokerAddress, connect, content_type, make_client


@pytest.fixture
def local_admin(local_broker) -> BrokerAddress:
    """The local broker's superuser over its unix socket."""
    adm = local_broker.admin
    return local_broker.unix_address(adm.username, adm.password)


@pytest.fixture
def start_node(local_admin, uid, tmp_path) -> Callable[..., MotorNode]:
    """``start_node(motor=None, address=None, **MotorConfig fields)`` → a started MotorNode."""
    nodes: list[MotorNode] = []

    def start(motor: Any = None, address: BrokerAddress | None = None, **fields: Any) -> MotorNode:
        fields.setdefault("node_id", uid)
        fields.setdefault("data_dir", tmp_path)
        node = MotorNode(MotorConfig(**fields), motor=motor, address=address or local_admin)
        nodes.append(node.start())
        return node

    yield start
    for node in nodes:
        node.close()


class Probe:
    """A test's own MQTT client: publishes raw or typed messages and collects decoded ones."""

    def __init__(self, address: BrokerAddress, node_id: str) -> None:
        self.node_id = node_id
        self.messages: dict[protocol.TopicKind, queue.Queue] = {}
        self._connected = threading.Event()
        self.client = make_client(address)
        self.client.on_connect = lambda *a: self._connected.set()
        self.client.on_message = self._on_message
        connect(self.client)
        self.client.loop_start()
        assert self._connected.wait(5)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            parsed, msg = protocol.decode(message.topic, message.payload, content_type(message))
        except protocol.ProtocolError:
            return
        if msg is None:  # a cleared retained message
            return
        self.messages.setdefault(parsed.kind, queue.Queue()).put(msg)

    def topic(self, kind: protocol.TopicKind) -> str:
        return protocol.topic(kind, node=self.node_id)

    def subscribe(self, *kinds: protocol.TopicKind) -> None:
        for kind in kinds:
            self.messages.setdefault(kind, queue.Queue())
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe([(self.topic(k), 1) for k in kinds])
        assert done.wait(5)

    def publish(self, kind: protocol.TopicKind, msg: protocol.Message | bytes,
                retain: bool = False) -> None:
        spec = protocol.TOPICS[kind]
        payload = msg if isinstance(msg, bytes) else msg.to_bytes()
        self.client.publish(self.topic(kind), payload, qos=spec.qos, retain=retain).wait_for_publish(5)

    def get(self, kind: protocol.TopicKind, timeout: float = 5.0,
            where: Callable[[Any], bool] = lambda m: True) -> Any:
        """The next message of ``kind`` satisfying ``where`` (earlier ones are consumed)."""
        deadline = time.monotonic() + timeout
        q = self.messages.setdefault(kind, queue.Queue())
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching {kind.value} within {timeout} s")
            try:
                msg = q.get(timeout=remaining)
            except queue.Empty:
                continue
            if where(msg):
                return msg

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def probe(local_admin, uid) -> Probe:
    p = Probe(local_admin, uid)
    yield p
    p.close()
