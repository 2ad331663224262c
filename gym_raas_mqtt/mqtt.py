"""paho-mqtt client construction shared by every component: MQTT 5, VERSION2 callbacks, TCP_NODELAY.

paho does not set TCP_NODELAY; without it a QoS 1 round trip costs ~40 ms on loopback (Nagle plus the
delayed-ACK timer, see ../shared/reference/bus-protocol.md), so every socket gets it here.

Broker addresses are URLs:

========================================  ==================================================
``mqtt://user:pass@host:1883``            TCP
``unix:///run/raas/local.sock``           unix domain socket (what a job container is given)
========================================  ==================================================

The password may also come from ``password_file`` (a path) so it never appears in a URL.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from gym_raas_mqtt.errors import ConfigError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BrokerAddress:
    """Where and as whom to connect.

    Attributes:
        transport: ``"tcp"`` or ``"unix"``.
        host: host name (tcp) or socket path (unix).
        port: TCP port (0 for unix).
        username: MQTT user name, or None for none.
        password: MQTT password, or None.
    """

    transport: str
    host: str
    port: int = 0
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str, username: str | None = None, password: str | None = None,
              password_file: str | Path | None = None) -> "BrokerAddress":
        """Parse ``mqtt://[user[:pass]@]host[:port]`` or ``unix:///path``.

        Explicit ``username``/``password``/``password_file`` override those in the URL.

        Raises:
            ConfigError: unknown scheme or missing host/path.
        """
        parts = urlsplit(url)
        user = unquote(parts.username) if parts.username else None
        pwd = unquote(parts.password) if parts.password else None
        if password_file:
            pwd = Path(password_file).read_text().strip()
        user = username or user
        pwd = password or pwd
        if parts.scheme in ("mqtt", "tcp"):
            if not parts.hostname:
                raise ConfigError(f"broker URL {url!r} has no host")
            return cls("tcp", parts.hostname, parts.port or 1883, user, pwd)
        if parts.scheme == "unix":
            path = parts.path or parts.netloc
            if not path:
                raise ConfigError(f"broker URL {url!r} has no socket path")
            return cls("unix", path, 0, user, pwd)
        raise ConfigError(f"broker URL {url!r}: scheme must be mqtt:// or unix://")

    def url(self, with_credentials: bool = False) -> str:
        """The address as a URL (credentials only when asked: URLs end up in logs)."""
        cred = ""
        if with_credentials and self.username:
            cred = self.username + (f":{self.password}" if self.password else "") + "@"
        if self.transport == "unix":
            return f"unix://{self.host}"
        return f"mqtt://{cred}{self.host}:{self.port}"


def _set_nodelay(client: paho.Client, userdata: Any, sock: Any) -> None:
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as e:  # pragma: no cover - depends on the kernel
        log.warning("could not set TCP_NODELAY: %s", e)


def make_client(address: BrokerAddress, client_id: str | None = None, *,
                will: tuple[str, bytes, int, bool] | None = None,
                will_delay_s: int = 0, session_expiry_s: int = 0,
                clean_start: bool = True, userdata: Any = None) -> paho.Client:
    """Create (not connect) a paho client configured the way the whole project expects.

    Args:
        address: broker to use.
        client_id: MQTT client id; random when None. Brokers bind ids to credentials.
        will: ``(topic, payload, qos, retain)`` of the last will, or None.
        will_delay_s: MQTT 5 will delay interval in s (0 = publish the will at once).
        session_expiry_s: MQTT 5 session expiry interval in s (0 = session ends on disconnect).
        clean_start: start a new session (False resumes a persistent one).
        userdata: passed to callbacks.

    Returns:
        The client; call :func:`connect` to connect it.
    """
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"raas-{uuid.uuid4().hex[:12]}",
        protocol=paho.MQTTv5,
        transport="unix" if address.transport == "unix" else "tcp",
        userdata=userdata,
    )
    client.on_socket_open = _set_nodelay
    if address.username:
        client.username_pw_set(address.username, address.password)
    if will is not None:
        props = None
        if will_delay_s:
            props = Properties(PacketTypes.WILLMESSAGE)
            props.WillDelayInterval = will_delay_s
        topic, payload, qos, retain = will
        client.will_set(topic, payload, qos=qos, retain=retain, properties=props)
    client._raas_connect_args = (address, clean_start, session_expiry_s)  # type: ignore[attr-defined]
    return client


def connect(client: paho.Client, keepalive_s: int = 15, *, async_: bool = False) -> None:
    """Connect ``client`` to the address given to :func:`make_client`.

    Args:
        keepalive_s: MQTT keepalive in s; a hung client's will fires after 1.5 × this.
        async_: use ``connect_async`` (returns at once; ``loop_start`` retries until it succeeds).

    Raises:
        OSError: the broker is unreachable (synchronous mode only).
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
