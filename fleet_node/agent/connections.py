"""The agent's two broker connections: what each subscribes to, its will and its callbacks."""

from __future__ import annotations

from typing import Any, Callable

from gym_raas_mqtt import protocol
from gym_raas_mqtt.mqtt import BrokerAddress, Link, Will
from gym_raas_mqtt.protocol import TopicKind


def connect_central(address: BrokerAddress, node_id: str, *, on_message: Callable[..., None],
                    on_up: Callable[[], None], on_down: Callable[[], None],
                    will: Callable[[], Will], keepalive_s: int, will_delay_s: int,
                    timeout_s: float) -> Link:
    """Connect to the central broker as ``node-<id>``: the node's assignment, commands, update
    answers and the dispatcher's birth.

    Args:
        on_message: ``(ParsedTopic, message or None)`` from paho's thread.
        on_up, on_down: the connection came up / went down.
        will: builds the retained ``lost`` will before each CONNECT (a fresh session).
        keepalive_s: MQTT keepalive [s].
        will_delay_s: session expiry [s] (= the will delay: a quick reconnect sends no will).
        timeout_s: how long to wait for the first connection [s].

    Raises:
        MqttError: unreachable or refused within ``timeout_s``.
    """
    return Link(
        address, f"node-{node_id}", name="central",
        subscriptions=[(protocol.topic(TopicKind.NODE_JOB_NEXT, node=node_id), 1),
                       (protocol.topic(TopicKind.NODE_CMD, node=node_id), 1),
                       (protocol.topic_filter(TopicKind.NODE_JOB_ACCEPTED, node=node_id), 1),
                       (protocol.topic_filter(TopicKind.NODE_JOB_REJECTED, node=node_id), 1),
                       (protocol.topic(TopicKind.DISPATCHER_STATE), 1)],
        on_message=on_message, on_up=on_up, on_down=on_down, keepalive_s=keepalive_s,
        will=will, session_expiry_s=will_delay_s,
    ).start(timeout_s)


def connect_local(address: BrokerAddress, node_id: str, *, on_message: Callable[..., Any],
                  keepalive_s: int, timeout_s: float) -> Link:
    """Connect to the node-local broker as ``agent-<id>``: the motor node's state and the
    self-test's answers.

    Raises:
        MqttError: unreachable or refused within ``timeout_s`` [s].
    """
    return Link(
        address, f"agent-{node_id}", name="local",
        subscriptions=[(protocol.topic(TopicKind.ENV_MOTOR_STATE, node=node_id), 1),
                       (protocol.topic(TopicKind.ENV_SELFTEST_REPLY, node=node_id), 1)],
        on_message=on_message, keepalive_s=keepalive_s,
    ).start(timeout_s)
