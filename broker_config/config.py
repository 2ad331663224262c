"""Settings of the Mosquitto brokers (central and node-local), read from ``RAAS_*`` variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gym_raas_mqtt.config import NODE_ID, setting
from gym_raas_mqtt.errors import ConfigError
from raas_platform.settings import CENTRAL_CA_FILE, CENTRAL_MQTT_URL, LOCAL_SOCKET

DYNSEC_PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
"""Where Debian 12's mosquitto package installs the dynamic-security plugin."""
TLS_DIR = "tls"
"""Subfolder of a broker's runtime directory holding its TLS files (``raas broker ca|cert``)."""
CA_CERT, CA_KEY = "ca.crt", "ca.key"
"""The local CA's certificate (given to clients) and private key, in :data:`TLS_DIR`."""
SERVER_CERT, SERVER_KEY = "server.crt", "server.key"
"""The central broker's certificate chain and private key, in :data:`TLS_DIR`."""


@dataclass(frozen=True)
class BrokerConfig:
    """How ``raas broker central|local`` renders and runs Mosquitto.

    The limits default to the values measured in ``shared/reference/bus-protocol.md``: with
    Mosquitto's defaults (20 in flight, 1000 queued) a 10k QoS 1 burst lost 2–16 % silently.
    """

    dir: Path | None = setting(
        "RAAS_BROKER_DIR", None,
        "runtime directory (config, dynsec JSON, persistence, secrets/); default ./var/broker/<role>")
    host: str = setting("RAAS_BROKER_HOST", "127.0.0.1",
                        "central broker's plain-text TCP listener bind address: loopback only "
                        "(127.0.0.1, ::1, localhost); other hosts use the TLS listener")
    port: int = setting("RAAS_BROKER_PORT", 1883,
                        "central broker's plain-text TCP port (0 = none: TLS only)")
    tls_host: str = setting("RAAS_BROKER_TLS_HOST", "",
                            "central broker's TLS listener bind address, its public one (empty = "
                            "every address)")
    tls_port: int = setting("RAAS_BROKER_TLS_PORT", 8883,
                            "central broker's TLS port (TLS >= 1.2; 0 = no TLS listener); the "
                            "listener opens when a certificate is configured or found")
    tls_cert: Path | None = setting(
        "RAAS_BROKER_TLS_CERT", None,
        "central broker's certificate chain (PEM); default <dir>/tls/server.crt when present "
        "(raas broker cert makes one)")
    tls_key: Path | None = setting("RAAS_BROKER_TLS_KEY", None,
                                   "its private key (PEM); default <dir>/tls/server.key")
    central_ca_file: Path | None = CENTRAL_CA_FILE.field()
    local_port: int = setting("RAAS_LOCAL_BROKER_PORT", 1884,
                              "node-local broker's TCP port (127.0.0.1 only; 0 = no TCP listener)")
    local_socket: Path | None = LOCAL_SOCKET.field()
    node_id: str = NODE_ID.field()
    central_url: str = CENTRAL_MQTT_URL.field()
    bridge: bool = setting("RAAS_LOCAL_BRIDGE", True,
                           "the node-local broker bridges its node's topics to the central broker "
                           "(off: a standalone broker, e.g. for a bench)")
    bridge_password: str | None = setting(
        "RAAS_BRIDGE_PASSWORD", None,
        "password of the central client bridge-<node> (file:/path or literal); default "
        "<dir>/secrets/bridge-<node> when that file exists", secret=True)
    max_inflight: int = setting("RAAS_BROKER_MAX_INFLIGHT", 100,
                                "QoS 1/2 messages in flight per client", unit="messages")
    max_queued: int = setting("RAAS_BROKER_MAX_QUEUED", 20000,
                              "messages queued per client before Mosquitto drops silently",
                              unit="messages")
    mosquitto: str = setting("RAAS_MOSQUITTO_BIN", "mosquitto", "the mosquitto executable")
    dynsec_plugin: str = setting("RAAS_DYNSEC_PLUGIN", DYNSEC_PLUGIN,
                                 "path of mosquitto_dynamic_security.so")

    def runtime_dir(self, role: str) -> Path:
        """The runtime directory for ``role`` (``central`` or ``local``), absolute."""
        return (self.dir or Path("var") / "broker" / role).resolve()

    def tls_files(self, run_dir: Path) -> tuple[Path, Path, Path | None] | None:
        """The central broker's ``(certificate, key, CA for clients)``, or None for no TLS
        listener: ``RAAS_BROKER_TLS_CERT``/``_KEY`` when set, else ``<dir>/tls/server.*`` when
        the certificate exists. The CA is ``RAAS_CENTRAL_CA_FILE``, else ``<dir>/tls/ca.crt``
        when present, else None (a publicly trusted certificate).

        Raises:
            ConfigError: a certificate without its key, or a configured file is missing.
        """
        folder = run_dir / TLS_DIR
        if self.tls_cert is not None and self.tls_key is None:
            raise ConfigError("RAAS_BROKER_TLS_CERT needs RAAS_BROKER_TLS_KEY")
        cert = self.tls_cert or folder / SERVER_CERT
        if not self.tls_port or (self.tls_cert is None and not cert.exists()):
            return None
        key = self.tls_key or folder / SERVER_KEY
        ca = self.central_ca_file or (folder / CA_CERT if (folder / CA_CERT).exists() else None)
        for path in (cert, key, ca):
            if path is not None and not path.is_file():
                raise ConfigError(f"TLS file {path} does not exist")
        return cert.resolve(), key.resolve(), ca.resolve() if ca else None
