"""Broker addresses: where and as whom a client connects, parsed from ``mqtt://`` / ``mqtts://`` /
``unix://`` URLs.

========================================  ==================================================
``mqtt://user:pass@host:1883``            TCP, plain text (loopback only on the platform)
``mqtts://host:8883``                     TCP with TLS ≥ 1.2; the server certificate is
                                          verified (``ca_file``, else the system's trust
                                          store) and must name ``host``
``unix:///run/raas/local.sock``           unix domain socket (what a job container is given)
========================================  ==================================================

The password may also come from ``password_file`` (a path) so it never appears in a URL.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import unquote, urlsplit

from gym_raas_mqtt.errors import ConfigError

DEFAULT_PORTS = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883}
"""TCP port of each URL scheme when the URL names none (IANA's MQTT and MQTT-over-TLS ports)."""


@dataclasses.dataclass(frozen=True)
class BrokerAddress:
    """Where and as whom to connect.

    Attributes:
        transport: ``"tcp"`` or ``"unix"``.
        host: host name (tcp; with ``tls`` the name the certificate must carry) or socket path
            (unix).
        port: TCP port (0 for unix).
        username: MQTT user name, or None for none.
        password: MQTT password, or None.
        tls: TLS over TCP, the server's certificate verified.
        ca_file: PEM file of the CA(s) that may sign the server's certificate; None = the
            system's trust store. Used only with ``tls``.
    """

    transport: str
    host: str
    port: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None

    @classmethod
    def parse(cls, url: str, username: str | None = None, password: str | None = None,
              password_file: str | Path | None = None,
              ca_file: str | Path | None = None) -> "BrokerAddress":
        """Parse ``mqtt[s]://[user[:pass]@]host[:port]`` or ``unix:///path``.

        Explicit ``username``/``password``/``password_file`` override those in the URL;
        ``ca_file`` applies to ``mqtts://`` only (plain-text addresses ignore it, so a service
        may be given its CA whichever URL it gets).

        Raises:
            ConfigError: unknown scheme or missing host/path.
            OSError: ``password_file`` cannot be read.
        """
        parts = urlsplit(url)
        user = unquote(parts.username) if parts.username else None
        pwd = unquote(parts.password) if parts.password else None
        if password_file:
            pwd = Path(password_file).read_text().strip()
        user = username or user
        pwd = password or pwd
        if parts.scheme in DEFAULT_PORTS:
            if not parts.hostname:
                raise ConfigError(f"broker URL {url!r} has no host")
            tls = parts.scheme == "mqtts"
            return cls("tcp", parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme], user,
                       pwd, tls=tls, ca_file=str(ca_file) if tls and ca_file else None)
        if parts.scheme == "unix":
            path = parts.path or parts.netloc
            if not path:
                raise ConfigError(f"broker URL {url!r} has no socket path")
            return cls("unix", path, 0, user, pwd)
        raise ConfigError(f"broker URL {url!r}: scheme must be mqtt://, mqtts:// or unix://")

    def url(self, with_credentials: bool = False) -> str:
        """The address as a URL (credentials only when asked: URLs end up in logs)."""
        cred = ""
        if with_credentials and self.username:
            cred = self.username + (f":{self.password}" if self.password else "") + "@"
        if self.transport == "unix":
            return f"unix://{self.host}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{cred}{host}:{self.port}"
