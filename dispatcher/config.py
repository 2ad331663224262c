"""The dispatcher's settings (``RAAS_*`` environment variables), read once at start."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gym_raas_mqtt.config import setting
from gym_raas_mqtt.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///var/raas.db"
"""Default of RAAS_DATABASE_URL, read by the dispatcher and the dashboard alike."""


@dataclass(frozen=True)
class DispatcherConfig:
    """Everything ``raas dispatcher`` needs; every field has a default (see ``raas config``).

    The time-limit bounds and ``max_attempts`` are also used by the dashboard when it calls
    :func:`dispatcher.queue.enqueue`, so both processes must see the same variables.
    """

    database_url: str = setting("RAAS_DATABASE_URL", DEFAULT_DATABASE_URL,
                                "job database: sqlite:///path (WAL) or postgresql://user@host/db")
    mqtt_url: str = setting("RAAS_CENTRAL_MQTT_URL", "mqtt://localhost:1883",
                            "central broker URL (credentials may be given separately)")
    mqtt_username: str | None = setting("RAAS_DISPATCHER_MQTT_USERNAME", "dispatcher",
                                        "MQTT user name of the dispatcher")
    mqtt_password_file: Path | None = setting(
        "RAAS_DISPATCHER_MQTT_PASSWORD_FILE", None,
        "file holding the dispatcher's MQTT password (none: from the URL)", secret=True)
    client_id: str = setting("RAAS_DISPATCHER_CLIENT_ID", "raas-dispatcher",
                             "MQTT client id; fixed so the broker keeps its session across "
                             "restarts")
    keepalive_s: int = setting("RAAS_DISPATCHER_KEEPALIVE_S", 10, "MQTT keepalive", unit="s")
    session_expiry_s: int = setting(
        "RAAS_DISPATCHER_SESSION_EXPIRY_S", 3600,
        "broker keeps the dispatcher's session (and queued job updates) this long after a crash",
        unit="s")
    accept_timeout_s: float = setting(
        "RAAS_ACCEPT_TIMEOUT_S", 30.0,
        "an assigned execution not accepted (running) within this ends `error` and is requeued",
        unit="s")
    lost_grace_s: float = setting(
        "RAAS_LOST_NODE_GRACE_S", 30.0,
        "a node reported lost for this long has its execution ended `error` and requeued", unit="s")
    max_attempts: int = setting("RAAS_MAX_ATTEMPTS", 3,
                                "executions per job before a platform fault ends it `error`")
    default_time_limit_s: float = setting("RAAS_DEFAULT_TIME_LIMIT_S", 120.0,
                                          "time limit of a job submitted without one", unit="s")
    min_time_limit_s: float = setting("RAAS_MIN_TIME_LIMIT_S", 1.0,
                                      "smallest time limit a user may ask for", unit="s")
    max_time_limit_s: float = setting("RAAS_MAX_TIME_LIMIT_S", 600.0,
                                      "largest time limit a user may ask for", unit="s")
    time_limit_grace_s: float = setting(
        "RAAS_TIME_LIMIT_GRACE_S", 20.0,
        "a running execution is ended `timed_out` this long after its time limit (the node's own "
        "limit, kill-after and upload come first)", unit="s")
    cancel_grace_s: float = setting(
        "RAAS_CANCEL_GRACE_S", 30.0,
        "a running job whose cancel the node does not confirm within this ends `canceled`",
        unit="s")
    command_expiry_s: int = setting("RAAS_COMMAND_EXPIRY_S", 60,
                                    "message expiry of node commands (cancel_job)", unit="s")
    tick_s: float = setting("RAAS_DISPATCHER_TICK_S", 0.5,
                            "period of the timeout check (accept, time limit, lost node)", unit="s")
    republish_window_s: float = setting(
        "RAAS_REPUBLISH_WINDOW_S", 3600.0,
        "on (re)connect, job states finished this recently are republished (retained)", unit="s")

    def __post_init__(self) -> None:
        if not 0 < self.min_time_limit_s <= self.default_time_limit_s <= self.max_time_limit_s:
            raise ConfigError(
                "time limits must satisfy 0 < RAAS_MIN_TIME_LIMIT_S <= RAAS_DEFAULT_TIME_LIMIT_S "
                f"<= RAAS_MAX_TIME_LIMIT_S, got {self.min_time_limit_s}, "
                f"{self.default_time_limit_s}, {self.max_time_limit_s}")
        if self.max_attempts < 1:
            raise ConfigError(f"RAAS_MAX_ATTEMPTS must be >= 1, got {self.max_attempts}")
        for name in ("accept_timeout_s", "lost_grace_s", "tick_s", "time_limit_grace_s",
                     "cancel_grace_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
