"""One of the agent's MQTT connections: subscribed before it counts as up, decoded messages handed
on, a last will that carries the current session, and a clean close.

paho runs the network thread and reconnects by itself; this class adds what presence needs
(house-style boundary 3, Sparkplug's bdSeq):

* ``start()`` returns only after CONNACK **and** SUBACK, so nothing non-retained sent right after
  (a command, an update reply) can be missed; a refused connection or subscription is an error.
* With a ``session`` counter, the counter is raised (fsync'd) before every CONNECT and the will is
  rebuilt from it, so a late will is always older than the birth that follows it.
* Every message is decoded with :mod:`gym_raas_mqtt.protocol`; an invalid one is logged (topic +
  truncated payload) and dropped. Callbacks never raise.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet_node.session import SessionCounter
from gym_raas_mqtt import mqtt, protocol
from gym_raas_mqtt.errors import ProtocolError, RaasError
from gym_raas_mqtt.mqtt import BrokerAddress

log = logging.getLogger(__name__)

OnMessage = Callable[[protocol.ParsedTopic, Any], None]
"""Called from paho's thread with the parsed topic and the decoded message (None = empty)."""


class LinkError(RaasError):
    """The broker is unreachable, or refused the connection or a subscription."""


class Link:
    """A paho client with the conventions above.

    Args:
        name: for logs ("central", "local").
        address: broker and credentials.
        client_id: MQTT client id.
        subscriptions: ``(filter, qos)`` made on every (re)connect.
        on_message: receives decoded messages (must not block or raise).
        on_up: called from paho's thread after each (re)connect's SUBACK.
        on_down: called from paho's thread when the connection is lost or closed.
        keepalive_s: MQTT keepalive (s).
        will: ``session -> (topic, payload)`` of the retained QoS 1 will, or None.
        session: the counter raised before every CONNECT (needed with ``will``).
        will_delay_s: will delay, also used as the session expiry (s): a reconnect within it
            resumes the session and publishes no will.
    """

    def __init__(self, name: str, address: BrokerAddress, client_id: str, *,
                 subscriptions: list[tuple[str, int]], on_message: OnMessage,
                 on_up: Callable[[], None] | None = None,
                 on_down: Callable[[], None] | None = None, keepalive_s: int = 10,
                 will: Callable[[int], tuple[str, bytes]] | None = None,
                 session: SessionCounter | None = None, will_delay_s: int = 0) -> None:
        self.name = name
        self.subscriptions = subscriptions
        self._on_message_cb = on_message
        self._on_up = on_up
        self._on_down = on_down
        self._keepalive_s = keepalive_s
        self._will = will
        self._session = session
        self._will_delay_s = will_delay_s
        self.up = threading.Event()
        self._down = threading.Event()
        self._closing = False
        self._refused: str | None = None
        self._sub_mid: int | None = None
        first_will = None
        if will is not None:
            assert session is not None, "a will with a session needs the counter"
            topic, payload = will(session.next())
            first_will = (topic, payload, 1, True)
        self.client = mqtt.make_client(address, client_id, will=first_will,
                                       will_delay_s=will_delay_s, session_expiry_s=will_delay_s,
                                       clean_start=will is None)
        self.client.reconnect_delay_set(1, 30)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # ------------------------------------------------------------------------------- lifecycle
    def start(self, timeout_s: float) -> "Link":
        """Connect and subscribe; return once both are acknowledged.

        Raises:
            LinkError: unreachable, refused, or no answer within ``timeout_s``.
        """
        try:
            mqtt.connect(self.client, self._keepalive_s)
        except OSError as e:
            raise LinkError(f"{self.name} broker unreachable: {e}") from e
        self.client.loop_start()
        if not self.up.wait(timeout_s):
            self.client.loop_stop()
            raise LinkError(f"{self.name} broker did not accept the connection"
                            + (f": {self._refused}" if self._refused else ""))
        return self

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False,
                properties: Any = None) -> paho.MQTTMessageInfo:
        """Publish (non-blocking; QoS 1 is resent by paho after a reconnect)."""
        return self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)

    def close(self) -> None:
        """Disconnect (no will), stop the network thread, release its sockets. Idempotent."""
        self._closing = True
        self._down.clear()
        if self.client.disconnect() == paho.MQTT_ERR_SUCCESS:
            self._down.wait(2.0)  # stopping the loop before the DISCONNECT went out leaks it
        self.client.loop_stop()
        # paho closes its wake-up socket pair only when garbage-collected; do it now.
        reset = getattr(self.client, "_reset_sockets", None)
        if reset is not None:
            reset()

    # ------------------------------------------------------------------------- paho callbacks
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                    props: Any = None) -> None:
        if rc.is_failure:
            self._refused = str(rc)
            log.error("%s broker refused the connection: %s", self.name, rc)
            return
        _, self._sub_mid = client.subscribe(self.subscriptions)

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reason_codes: Any,
                      props: Any = None) -> None:
        if mid != self._sub_mid:
            return
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:  # the ACL does not fit this client's role: messages would never arrive
            self._refused = f"subscription refused ({', '.join(refused)})"
            log.error("%s broker: %s", self.name, self._refused)
            return
        self.up.set()
        if self._on_up is not None:
            self._safely(self._on_up)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                       props: Any = None) -> None:
        self.up.clear()
        self._down.set()
        if self._on_down is not None:
            self._safely(self._on_down)
        if self._closing or self._will is None or self._session is None:
            return
        # paho reconnects by itself: its next CONNECT must carry a will with a new session.
        try:
            session = self._session.next()
        except OSError as e:  # keep going: presence still works, ordering by session degrades
            log.error("session counter not written: %s", e)
            session = self._session.value
        topic, payload = self._will(session)
        will_props = None
        if self._will_delay_s:
            will_props = Properties(PacketTypes.WILLMESSAGE)
            will_props.WillDelayInterval = self._will_delay_s
        client.will_set(topic, payload, qos=1, retain=True, properties=will_props)
        log.warning("%s broker connection lost (%s); reconnecting as session %d", self.name, rc,
                    session)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            parsed, message = protocol.decode(msg.topic, msg.payload)
        except ProtocolError as e:
            log.warning("dropped message on %s (%s): %r", msg.topic[:120], e,
                        bytes(msg.payload[:120]))
            return
        self._safely(lambda: self._on_message_cb(parsed, message))

    def _safely(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # an exception here would kill paho's network thread
            log.exception("%s link: callback failed", self.name)
