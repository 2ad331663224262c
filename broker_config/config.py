"""Settings of the Mosquitto brokers (central and node-local), read from ``RAAS_*`` variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gym_raas_mqtt.config import NODE_ID, setting
from raas_platform.settings import CENTRAL_MQTT_URL, LOCAL_SOCKET

DYNSEC_PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
"""Where Debian 12's mosquitto package installs the dynamic-security plugin."""


@dataclass(frozen=True)
class BrokerConfig:
    """How ``raas broker central|local`` renders and runs Mosquitto.

    The limits default to the values measured in ``shared/reference/bus-protocol.md``: with
    Mosquitto's defaults (20 in flight, 1000 queued) a 10k QoS 1 burst lost 2–16 % silently.
    """

    dir: Path | None = setting(
        "RAAS_BROKER_DIR", None,
        "runtime directory (config, dynsec JSON, persistence, secrets/); default ./var/broker/<role>")
    host: str = setting("RAAS_BROKER_HOST", "127.0.0.1", "TCP listener bind address")
    port: int = setting("RAAS_BROKER_PORT", 1883, "central broker's TCP port")
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
