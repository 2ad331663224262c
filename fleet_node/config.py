"""The fleet agent's settings: one frozen dataclass read from ``RAAS_*`` environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gym_raas_mqtt.config import NODE_ID, setting
from gym_raas_mqtt.errors import ConfigError
from gym_raas_mqtt.protocol import ID_PATTERN
from raas_platform.settings import (CENTRAL_MQTT_URL, DATA_DIR, LOCAL_MQTT_URL, LOCAL_SOCKET,
                                     STORE_URL)


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent needs (``raas config`` lists these with their defaults).

    The agent talks to two brokers: the **central** one as ``node-<id>`` (presence, assignments,
    job updates, job logs) and its node's **local** one as ``agent`` (motor state, job binding,
    e-stop, self-test, per-job client accounts).
    """

    node_id: str = NODE_ID.field()
    central_mqtt_url: str = CENTRAL_MQTT_URL.field()
    central_username: str | None = setting("RAAS_AGENT_CENTRAL_USERNAME", None,
                                           "user on the central broker (default node-<id>)")
    central_password_file: Path | None = setting(
        "RAAS_AGENT_CENTRAL_PASSWORD_FILE", None,
        "file holding the central password (raas broker add-node prints it)")
    local_mqtt_url: str = LOCAL_MQTT_URL.field()
    local_username: str = setting("RAAS_AGENT_LOCAL_USERNAME", "agent",
                                  "the agent's user on the node-local broker")
    local_password_file: Path | None = setting(
        "RAAS_AGENT_LOCAL_PASSWORD_FILE", None,
        "file holding the agent's node-local password (broker secrets/agent)")
    local_socket: Path | None = LOCAL_SOCKET.field()
    data_dir: Path = DATA_DIR.field()
    store_url: str = STORE_URL.field()
    clone_timeout_s: float = setting("RAAS_CLONE_TIMEOUT_S", 120.0,
                                     "time limit for fetching a job's code", unit="s")
    clone_max_bytes: int = setting("RAAS_CLONE_MAX_BYTES", 50 * 1024 * 1024,
                                   "largest checkout or extracted archive", unit="bytes")
    clone_max_files: int = setting("RAAS_CLONE_MAX_FILES", 10_000,
                                   "most files in a job's code", unit="files")
    clone_schemes: tuple[str, ...] = setting(
        "RAAS_CLONE_SCHEMES", ("https", "ssh"),
        "git URL schemes accepted (comma-separated; add file for local demos)")
    will_delay_s: int = setting("RAAS_AGENT_WILL_DELAY_S", 10,
                                "MQTT 5 will delay = session expiry: a reconnect within it "
                                "publishes no 'lost'", unit="s")
    keepalive_s: int = setting("RAAS_AGENT_KEEPALIVE_S", 10,
                               "MQTT keepalive (a hung agent is dropped after 1.5x)", unit="s")
    update_retry_s: float = setting("RAAS_AGENT_UPDATE_RETRY_S", 5.0,
                                    "resend a job update not answered within this", unit="s")
    start_timeout_s: float = setting("RAAS_AGENT_START_TIMEOUT_S", 30.0,
                                     "give up an assignment whose 'running' is not answered",
                                     unit="s")
    selftest: bool = setting("RAAS_AGENT_SELFTEST", True,
                             "run the motor node's self-test at start and between jobs")
    selftest_timeout_s: float = setting("RAAS_AGENT_SELFTEST_TIMEOUT_S", 90.0,
                                        "longest wait for the self-test verdict", unit="s")
    maintenance_retry_s: float = setting(
        "RAAS_AGENT_MAINTENANCE_RETRY_S", 30.0,
        "retry the self-test this often when maintenance was caused by the platform (motor node "
        "or Docker missing); a failed pendulum self-test waits for clear_maintenance", unit="s")
    motor_wait_s: float = setting("RAAS_AGENT_MOTOR_WAIT_S", 3.0,
                                  "wait this long for the motor node to unbind/report", unit="s")
    log_flush_s: float = setting("RAAS_AGENT_LOG_FLUSH_S", 0.25,
                                 "live job log: send a chunk at least this often", unit="s")
    log_chunk_lines: int = setting("RAAS_AGENT_LOG_CHUNK_LINES", 200,
                                   "live job log: most lines per chunk", unit="lines")
    upload_attempts: int = setting("RAAS_AGENT_UPLOAD_ATTEMPTS", 3,
                                   "tries to upload a result bundle before reporting error")
    keep_workdirs: bool = setting("RAAS_AGENT_KEEP_WORKDIRS", False,
                                  "debugging: keep each job's work folder after it ends")

    def __post_init__(self) -> None:
        if not ID_PATTERN.match(self.node_id):
            raise ConfigError(f"RAAS_NODE_ID={self.node_id!r} must match {ID_PATTERN.pattern}")
        if self.will_delay_s < 0 or self.keepalive_s < 1:
            raise ConfigError("RAAS_AGENT_WILL_DELAY_S must be >= 0, RAAS_AGENT_KEEPALIVE_S >= 1")
        if self.clone_max_bytes < 1024 or self.clone_timeout_s <= 0:
            raise ConfigError("RAAS_CLONE_MAX_BYTES / RAAS_CLONE_TIMEOUT_S are too small")
        if self.upload_attempts < 1 or self.log_chunk_lines < 1:
            raise ConfigError("RAAS_AGENT_UPLOAD_ATTEMPTS and RAAS_AGENT_LOG_CHUNK_LINES must be "
                              ">= 1")
        bad = set(self.clone_schemes) - {"https", "ssh", "file"}
        if bad:
            raise ConfigError(f"RAAS_CLONE_SCHEMES: unsupported {sorted(bad)} "
                              f"(https, ssh, file)")

    @property
    def central_user(self) -> str:
        """The central username (``node-<id>`` unless set)."""
        return self.central_username or f"node-{self.node_id}"

    @property
    def socket_path(self) -> Path | None:
        """The node-local broker socket to hand to job containers, if any."""
        if self.local_socket is not None:
            return self.local_socket
        if self.local_mqtt_url.startswith("unix://"):
            return Path(self.local_mqtt_url[len("unix://"):])
        return None
