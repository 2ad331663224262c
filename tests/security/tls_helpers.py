"""TLS test material: a local CA and server certificates (from ``raas broker ca|cert``'s code), a
central broker with its TLS listener, raw probes of a listener, and this machine's non-loopback
address (to show what a client on the network can and cannot reach)."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker_config import tls
from broker_config.config import BrokerConfig, TLS_DIR
from broker_config.runner import BrokerHandle, start_broker
from gym_raas_mqtt.config import load
from tests.net import free_port


def network_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (the interface of the default
    route; nothing is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("198.51.100.1", 9))  # TEST-NET-2: any routed address will do
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


def make_ca_and_cert(folder: Path, names: tuple[str, ...] = ("localhost",),
                     extra_ips: tuple[str, ...] = ()) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signed, in ``folder``: (ca.crt, server.crt, server.key).
    The certificate names ``names``, 127.0.0.1, ``extra_ips`` and this machine's network
    address."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = tls.make_ca(folder)
    ips = ["127.0.0.1", *extra_ips, *filter(None, [network_address()])]
    cert = tls.make_server_cert(folder, list(names), [ipaddress.ip_address(a) for a in ips])
    return ca, cert, folder / "server.key"


@dataclass
class TlsCentral:
    """A central broker with a loopback plain-text listener (port 0: none) and a TLS listener
    on every address, its certificate from a local CA."""

    handle: BrokerHandle
    ca: Path

    @property
    def tls_port(self) -> int:
        return self.handle.tls_port

    @property
    def admin_password(self) -> str:
        return self.handle.secret("admin")


def start_tls_central(folder: Path, plain: bool = True) -> TlsCentral:
    """Start a central broker whose runtime directory has a CA and certificate in ``tls/``."""
    if not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed (make test installs it)")
    ca, _, _ = make_ca_and_cert(folder / TLS_DIR)
    cfg = load(BrokerConfig, environ={}, tls_port=free_port())
    handle = start_broker("central", folder, cfg=cfg, port=free_port() if plain else 0)
    return TlsCentral(handle, ca)


def mqtt_connect_in_clear(host: str, port: int, timeout_s: float = 5.0) -> bytes:
    """Send an MQTT CONNECT in plain text and return what comes back before the connection ends
    (a CONNACK starts with 0x20)."""
    connect = bytes([0x10, 16, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 10, 0, 4]) + b"ping"
    got = b""
    with socket.create_connection((host, port), timeout=timeout_s) as s:
        s.sendall(connect)
        try:
            while chunk := s.recv(1024):
                got += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return got


def old_tls_context(ca: Path, version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client context that offers only TLS ``version`` (1.0 or 1.1: OpenSSL's security level
    lowered so the client itself does not refuse), verifying with ``ca``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # the versions are deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = version
        ctx.maximum_version = version
    return ctx
