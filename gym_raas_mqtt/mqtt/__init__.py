"""MQTT for every component: broker addresses, paho set up the project's way, and the Link wrapper.

Services use :class:`Link`; only the two hot loops (the env's bus backend and the motor node) build
paho clients directly with :func:`make_client`, to own their network loop.
"""

from gym_raas_mqtt.mqtt.address import BrokerAddress
from gym_raas_mqtt.mqtt.client import (PackedProperties, Will, connect, content_type,
                                      make_client, message_expiry, set_will, shutdown,
                                      tls_context)
from gym_raas_mqtt.mqtt.link import BrokerUnreachable, ConnectionRefused, Link, MqttError

__all__ = ["BrokerAddress", "BrokerUnreachable", "ConnectionRefused", "Link", "MqttError",
           "PackedProperties", "Will", "connect", "content_type", "make_client", "message_expiry",
           "set_will", "shutdown", "tls_context"]
