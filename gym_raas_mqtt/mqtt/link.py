"""The MQTT client every service uses: one connection, its subscriptions, its will, one error family.

paho runs the network thread and reconnects by itself; a :class:`Link` adds what the platform's
presence rules need (house-style boundary 3, Sparkplug's bdSeq):

* :meth:`Link.start` returns only after CONNACK **and** SUBACK, so nothing non-retained sent right
  after (a command, an update reply) can be missed; a refused connection or subscription is a
  :class:`ConnectionRefused`, an unreachable broker a :class:`BrokerUnreachable`. With
  ``timeout_s=None`` it returns at once and paho keeps trying in the background.
* Subscriptions are made again on every (re)connect.
* The will is a :class:`Will`, or a function returning one, called before the first CONNECT and
  again before each reconnect: a session counter or a birth timestamp in it stays current.
* Messages are decoded with :mod:`gym_raas_mqtt.protocol` (``raw=True`` hands over topic and bytes
  instead); an invalid one is logged in one line and dropped. Callbacks never raise: an exception
  would kill paho's network thread.
* :meth:`Link.close` publishes a *goodbye* (the retained ``offline`` a clean exit owes its readers,
  since a clean DISCONNECT sends no will), waits for its PUBACK, then disconnects.
"""

from __future__ import annotations

import logging
import ssl
import threading
from typing import Any, Callable, Iterable

import paho.mqtt.client as paho

from gym_raas_mqtt import protocol
from gym_raas_mqtt.errors import ProtocolError, RaasError
from gym_raas_mqtt.mqtt.address import BrokerAddress
from gym_raas_mqtt.mqtt.client import Will, connect, content_type, make_client, set_will

log = logging.getLogger(__name__)

OnMessage = Callable[[protocol.ParsedTopic, Any], None]
"""Called from paho's thread with the parsed topic and the decoded message (None = empty payload)."""
OnRaw = Callable[[str, bytes], None]
"""Called from paho's thread with the topic and the payload (``raw=True``)."""


class MqttError(RaasError):
    """Base of the MQTT client errors."""


class BrokerUnreachable(MqttError, ConnectionError):
    """The broker's address does not answer (no listener, no route, no socket file)."""


class ConnectionRefused(MqttError):
    """The broker refused the connection or a subscription, or did not answer in time."""


class Link:
    """A paho client with the conventions above.

    Args:
        address: broker and credentials.
        client_id: MQTT client id (the broker binds it to the login).
        name: for logs ("central", "local", "dispatcher").
        subscriptions: ``(filter, qos)`` made on every (re)connect.
        on_message: receives decoded messages (``raw=False``) or ``(topic, payload)``; must not
            block.
        raw: skip decoding (the receiver validates, e.g. off paho's thread).
        on_up: called from paho's thread after each (re)connect's SUBACK.
        on_down: called from paho's thread when the connection is lost or closed.
        will: the last will, or a function building it before each CONNECT; None for none.
        keepalive_s: MQTT keepalive [s]; a hung client's will fires after 1.5 × this.
        session_expiry_s: the broker keeps the session this long after a disconnect [s]; > 0
            resumes it on reconnect (subscriptions and queued QoS 1 messages survive).
        max_inflight: QoS 1 messages in flight before paho queues them.
        reconnect_delay_s: (first, longest) wait between reconnect attempts [s].
    """

    def __init__(self, address: BrokerAddress, client_id: str, *, name: str = "mqtt",
                 subscriptions: Iterable[tuple[str, int]] = (),
                 on_message: OnMessage | OnRaw | None = None, raw: bool = False,
                 on_up: Callable[[], None] | None = None,
                 on_down: Callable[[], None] | None = None,
                 will: Will | Callable[[], Will] | None = None, keepalive_s: int = 10,
                 session_expiry_s: int = 0, max_inflight: int = 100,
                 reconnect_delay_s: tuple[float, float] = (1.0, 30.0)) -> None:
        self.name = name
        self.address = address
        self.subscriptions = list(subscriptions)
        self._on_message_cb = on_message
        self._raw = raw
        self._on_up = on_up
        self._on_down = on_down
        self._will = (lambda: will) if isinstance(will, Will) else will
        self._keepalive_s = keepalive_s
        self.up = threading.Event()
        self._answered = threading.Event()  # CONNACK + SUBACK, or a refusal: start() may return
        self._down = threading.Event()
        self._closing = False
        self._refused: str | None = None
        self._sub_mid: int | None = None
        self.client = make_client(address, client_id,
                                  will=self._will() if self._will is not None else None,
                                  session_expiry_s=session_expiry_s,
                                  clean_start=session_expiry_s == 0)
        self.client.reconnect_delay_set(*reconnect_delay_s)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)  # unbounded: QoS 1 is never dropped by paho
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # ------------------------------------------------------------------------------- lifecycle
    def start(self, timeout_s: float | None = 10.0) -> "Link":
        """Connect and subscribe.

        Args:
            timeout_s: wait this long for CONNACK and SUBACK [s]; None returns at once and lets
                paho retry until the broker answers (``up`` is set then).

        Raises:
            BrokerUnreachable: nothing answers at the address.
            ConnectionRefused: refused, a subscription refused, no answer within ``timeout_s``,
                or (TLS) the broker's certificate is not trusted or does not name its host.
        """
        try:
            connect(self.client, self._keepalive_s, async_=timeout_s is None)
        except ssl.SSLError as e:  # an OSError too, but retrying cannot help: say what failed
            raise ConnectionRefused(f"{self.name} broker {self.address.url()}: TLS handshake "
                                    f"failed: {e}") from e
        except OSError as e:
            raise BrokerUnreachable(f"{self.name} broker {self.address.url()} unreachable: "
                                    f"{e}") from e
        self.client.loop_start()
        if timeout_s is None:
            return self
        self._answered.wait(timeout_s)  # a refusal ends the wait at once
        if not self.up.is_set():
            self.client.loop_stop()
            raise ConnectionRefused(f"{self.name} broker {self.address.url()} did not accept "
                                    "the connection"
                                    + (f": {self._refused}" if self._refused else ""))
        return self

    @property
    def is_up(self) -> bool:
        """Connected and subscribed."""
        return self.up.is_set()

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                properties: Any = None) -> paho.MQTTMessageInfo:
        """Publish (non-blocking; QoS 1 is resent by paho after a reconnect)."""
        return self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)

    def send(self, topic: str, message: protocol.Message | None,
             properties: Any = None) -> paho.MQTTMessageInfo:
        """Publish a protocol message with its topic's QoS and retain flag (None clears a
        retained topic).

        Raises:
            ProtocolError: ``topic`` is not part of the contract.
        """
        spec = protocol.parse_topic(topic).spec
        payload = b"" if message is None else message.to_bytes()
        return self.publish(topic, payload, spec.qos, spec.retain, properties)

    def close(self, goodbye: Will | None = None, timeout_s: float = 5.0) -> None:
        """Publish ``goodbye`` and wait for its PUBACK (when connected), disconnect without a
        will, stop the network thread and release its sockets. Idempotent."""
        if self._closing:
            return
        if goodbye is not None and self.is_up:
            info = self.publish(goodbye.topic, goodbye.payload, goodbye.qos, goodbye.retain)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as e:
                log.warning("%s: goodbye on %s not acknowledged: %s", self.name, goodbye.topic, e)
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
            self._answered.set()
            return
        if not self.subscriptions:
            self._became_up()
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
            self._answered.set()
            return
        self._became_up()

    def _became_up(self) -> None:
        self.up.set()
        self._answered.set()
        if self._on_up is not None:
            self._safely(self._on_up)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                       props: Any = None) -> None:
        self.up.clear()
        self._down.set()
        if self._on_down is not None:
            self._safely(self._on_down)
        if self._closing:
            return
        log.warning("%s broker connection lost (%s); reconnecting", self.name, rc)
        if self._will is not None:  # paho's next CONNECT carries it
            self._safely(lambda: set_will(client, self._will()))  # type: ignore[misc]

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        callback = self._on_message_cb
        if callback is None:
            return
        if self._raw:
            payload = bytes(msg.payload)
            self._safely(lambda: callback(msg.topic, payload))  # type: ignore[call-arg]
            return
        try:
            parsed, message = protocol.decode(msg.topic, msg.payload, content_type(msg))
        except ProtocolError as e:
            log.warning("%s: dropped message on %.120s: %s (payload %r)", self.name, msg.topic, e,
                        bytes(msg.payload[:120]))
            return
        self._safely(lambda: callback(parsed, message))  # type: ignore[call-arg]

    def _safely(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # a bug, not bad input: an exception here would kill paho's thread
            log.exception("%s: callback failed", self.name)
