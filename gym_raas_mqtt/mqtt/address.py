"""Broker addresses: where and as whom a client connects, parsed from ``mqtt://`` / ``unix://`` URLs.

========================================  ==================================================
``mqtt://user:pass@host:1883``            TCP
``unix:///run/raas/local.sock``           unix domain socket (what a job container is given)
========================================  ==================================================

The password may also come from ``password_file`` (a path) so it never appears in a URL.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import unquote, urlsplit

from gym_raas_mqtt.errors import ConfigError


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
            OSError: ``password_file`` cannot be read.
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
