"""paho-mqtt construction shared by every component: MQTT 5, VERSION2 callbacks, TCP_NODELAY, TLS.

paho does not set TCP_NODELAY; without it a QoS 1 round trip costs ~40 ms on loopback (Nagle plus the
delayed-ACK timer, see ../shared/reference/bus-protocol.md), so every socket gets it here.

An ``mqtts://`` address gets TLS 1.2 or later with the server's certificate verified against the
address's CA file (or the system's trust store) and its host name checked: there is no switch to
turn verification off.

Services use :class:`gym_raas_mqtt.mqtt.Link`, built on these functions. Only the two hot loops (the
env's bus backend and the motor node) call them directly, to own their network loop.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import ssl
import threading
import uuid
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gym_raas_mqtt.mqtt.address import BrokerAddress

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Will:
    """A message the broker publishes on a client's behalf when its connection is lost.

    :meth:`gym_raas_mqtt.mqtt.Link.close` takes the same type as the *goodbye* a client publishes
    itself on a clean exit (a clean DISCONNECT sends no will).

    Attributes:
        topic: where it goes.
        payload: the bytes.
        qos: 0 or 1.
        retain: stored as the topic's retained message.
        delay_s: MQTT 5 will delay interval [s] (0 = published at once).
    """

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True
    delay_s: int = 0

    def properties(self) -> Properties | None:
        """The WILL properties carrying :attr:`delay_s`, or None without a delay."""
        if not self.delay_s:
            return None
        props = Properties(PacketTypes.WILLMESSAGE)
        props.WillDelayInterval = self.delay_s
        return props


def _set_nodelay(client: paho.Client, userdata: Any, sock: Any) -> None:
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as e:  # pragma: no cover - depends on the kernel
        log.warning("could not set TCP_NODELAY: %s", e)


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when its handshake fails: paho drops such a socket without closing it, and
    a client retrying in the background would leak one per attempt."""

    def do_handshake(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().do_handshake(*args, **kwargs)
        except OSError:
            self.close()
            raise


def tls_context(address: BrokerAddress) -> ssl.SSLContext:
    """The client TLS context for ``address``: TLS ≥ 1.2, certificate required and verified
    against ``address.ca_file`` (the system's trust store when None), host name checked.

    Raises:
        OSError: the CA file cannot be read. ssl.SSLError: it holds no usable certificate.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=address.ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    context.sslsocket_class = _ClosingSSLSocket
    return context


def set_will(client: paho.Client, will: Will) -> None:
    """Set (or replace, while disconnected) the last will ``client`` sends with its next CONNECT."""
    client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain,
                    properties=will.properties())


def make_client(address: BrokerAddress, client_id: str | None = None, *, will: Will | None = None,
                session_expiry_s: int = 0, clean_start: bool = True,
                userdata: Any = None) -> paho.Client:
    """Create (not connect) a paho client configured the way the whole project expects.

    Args:
        address: broker to use (``tls``: see :func:`tls_context`).
        client_id: MQTT client id; random when None. Brokers bind ids to credentials.
        will: the last will, or None.
        session_expiry_s: MQTT 5 session expiry interval in s (0 = session ends on disconnect).
        clean_start: start a new session (False resumes a persistent one).
        userdata: passed to callbacks.

    Returns:
        The client; call :func:`connect` to connect it.

    Raises:
        OSError, ssl.SSLError: a TLS address's CA file cannot be used.
    """
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"raas-{uuid.uuid4().hex[:12]}",
        protocol=paho.MQTTv5,
        transport="unix" if address.transport == "unix" else "tcp",
        userdata=userdata,
    )
    client.on_socket_open = _set_nodelay
    if address.tls:
        client.tls_set_context(tls_context(address))
    if address.username:
        client.username_pw_set(address.username, address.password)
    if will is not None:
        set_will(client, will)
    client._raas_connect_args = (address, clean_start, session_expiry_s)  # type: ignore[attr-defined]
    return client


def connect(client: paho.Client, keepalive_s: int = 15, *, async_: bool = False) -> None:
    """Connect ``client`` to the address given to :func:`make_client`.

    Args:
        keepalive_s: MQTT keepalive in s; a hung client's will fires after 1.5 × this.
        async_: use ``connect_async`` (returns at once; ``loop_start`` retries until it succeeds).

    Raises:
        OSError: the broker is unreachable (synchronous mode only); ssl.SSLError (an OSError)
            when the TLS handshake fails, e.g. an untrusted certificate or a wrong host name.
    """
    address, clean_start, expiry = client._raas_connect_args  # type: ignore[attr-defined]
    props = Properties(PacketTypes.CONNECT)
    if expiry:
        props.SessionExpiryInterval = expiry
    host = address.host
    port = address.port if address.transport == "tcp" else 1  # paho rejects 0 even for unix
    if address.transport == "unix" and not async_:
        # paho leaks its socket when a unix connect() fails: find out with one we close.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.connect(host)
    fn = client.connect_async if async_ else client.connect
    fn(host, port, keepalive=keepalive_s, clean_start=clean_start, properties=props)


def message_expiry(seconds: int) -> Properties:
    """PUBLISH properties with an MQTT 5 message expiry interval of ``seconds``."""
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = seconds
    return props


def content_type(message: paho.MQTTMessage) -> str | None:
    """The MQTT 5 content-type property of a received message, or None when it has none."""
    return getattr(message.properties, "ContentType", None)  # properties may be None too


class PackedProperties(Properties):
    """PUBLISH properties packed once, for a hot loop that sends the same ones every step.

    paho re-packs a Properties object on every publish (~14 µs); this one returns the bytes packed
    at construction. Build it once and pass it to every ``publish(..., properties=...)``.

    Args:
        content_type: MQTT 5 content type (e.g. ``application/vnd.raas.action.v1``), or None.
        expiry_s: MQTT 5 message expiry interval [s], or None for none.
    """

    def __init__(self, content_type: str | None = None, expiry_s: int | None = None) -> None:
        super().__init__(PacketTypes.PUBLISH)
        if content_type is not None:
            self.ContentType = content_type
        if expiry_s is not None:
            self.MessageExpiryInterval = expiry_s
        object.__setattr__(self, "_raas_packed", super().pack())  # paho vets attribute names

    def pack(self) -> bytes:
        """The bytes packed at construction."""
        return self._raas_packed


def shutdown(client: paho.Client, timeout_s: float = 2.0) -> None:
    """Disconnect cleanly, stop the network loop, and close paho's sockets now.

    Stopping the loop before the DISCONNECT has gone out leaves the socket to the garbage
    collector, and paho closes its internal wake-up socket pair only when collected; both show
    up as ResourceWarnings. Safe to call on a client that never connected.
    """
    done = threading.Event()
    previous = client.on_disconnect

    def on_disconnect(*args: Any) -> None:
        done.set()
        if previous is not None:
            previous(*args)

    client.on_disconnect = on_disconnect
    connected = client.is_connected()
    client.disconnect()
    if connected:
        done.wait(timeout_s)
    client.loop_stop()
    reset = getattr(client, "_reset_sockets", None)  # private in paho 2.x; absent → GC closes them
    if reset is not None:
        reset()
