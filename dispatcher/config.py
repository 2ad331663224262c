"""The dispatcher's settings (``RAAS_*`` environment variables), read once at start."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gym_raas_mqtt.config import setting
from gym_raas_mqtt.errors import ConfigError
from raas_platform.settings import CENTRAL_CA_FILE, CENTRAL_MQTT_URL, DATABASE_URL


@dataclass(frozen=True)
class DispatcherConfig:
    """Everything ``raas dispatcher`` needs besides the queue's policy
    (:class:`dispatcher.limits.QueueLimits`); every field has a default (see ``raas config``)."""

    database_url: str = DATABASE_URL.field()
    mqtt_url: str = CENTRAL_MQTT_URL.field()
    mqtt_ca_file: Path | None = CENTRAL_CA_FILE.field()  # verifies an mqtts:// mqtt_url
    mqtt_username: str | None = setting("RAAS_DISPATCHER_MQTT_USERNAME", "dispatcher",
                                        "MQTT user name of the dispatcher")
    mqtt_password_file: Path | None = setting(
        "RAAS_DISPATCHER_MQTT_PASSWORD_FILE", None,
        "file holding the dispatcher's MQTT password (none: from the URL)", secret=True)
    client_id: str | None = setting(
        "RAAS_DISPATCHER_CLIENT_ID", None,
        "MQTT client id; fixed so the broker keeps its session across restarts (default: the "
        "user name, the one id the broker allows that login)")
    keepalive_s: int = setting("RAAS_DISPATCHER_KEEPALIVE_S", 10, "MQTT keepalive", unit="s")
    session_expiry_s: int = setting(
        "RAAS_DISPATCHER_SESSION_EXPIRY_S", 3600,
        "broker keeps the dispatcher's session (and queued job updates) this long after a crash",
        unit="s")
    lost_grace_s: float = setting(
        "RAAS_LOST_NODE_GRACE_S", 30.0,
        "a node reported lost for this long has its execution ended `error` and requeued", unit="s")
    command_expiry_s: int = setting("RAAS_COMMAND_EXPIRY_S", 60,
                                    "message expiry of node commands (cancel_job, drain, ...)",
                                    unit="s")
    maintenance_after_errors: int = setting(
        "RAAS_MAINTENANCE_AFTER_ERRORS", 3,
        "a node whose last this many executions all ended `error` (platform faults) goes to "
        "maintenance until an operator sends clear_maintenance", unit="executions")
    tick_s: float = setting("RAAS_DISPATCHER_TICK_S", 0.5,
                            "period of the timeout check (accept, time limit, lost node)", unit="s")
    republish_window_s: float = setting(
        "RAAS_REPUBLISH_WINDOW_S", 3600.0,
        "on (re)connect, job states finished this recently are republished (retained)", unit="s")

    def __post_init__(self) -> None:
        for name in ("lost_grace_s", "tick_s", "maintenance_after_errors"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
