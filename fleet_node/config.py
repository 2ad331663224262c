"""The fleet agent's settings: one frozen dataclass read from ``RAAS_*`` environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gym_raas_mqtt.config import NODE_ID, setting
from gym_raas_mqtt.mqtt import BrokerAddress
from gym_raas_mqtt.errors import ConfigError
from gym_raas_mqtt.protocol import ID_PATTERN
from raas_platform.settings import (CALIBRATION_FILE, CENTRAL_CA_FILE, CENTRAL_MQTT_URL,
                                     CODE_MAX_BYTES, CODE_MAX_FILES, DATA_DIR, GIT_SCHEMES,
                                     LOCAL_MQTT_URL, LOCAL_SOCKET, STORE_URL)
from raas_platform.submission import check_schemes


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent needs (``raas config`` lists these with their defaults).

    The agent talks to two brokers: the **central** one as ``node-<id>`` (presence, assignments,
    job updates, job logs) and its node's **local** one as ``agent`` (motor state, job binding,
    e-stop, self-test, per-job client accounts).
    """

    node_id: str = NODE_ID.field()
    central_mqtt_url: str = CENTRAL_MQTT_URL.field()
    central_ca_file: Path | None = CENTRAL_CA_FILE.field()  # verifies an mqtts:// central URL
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
    local_admin_password_file: Path | None = setting(
        "RAAS_AGENT_LOCAL_ADMIN_PASSWORD_FILE", None,
        "file holding the node-local broker's admin password (broker secrets/admin): the agent "
        "creates and deletes each job's login with it; its own login is bound to one client id "
        "and cannot administer the broker")
    local_socket: Path | None = LOCAL_SOCKET.field()
    data_dir: Path = DATA_DIR.field()
    calibration_file: Path | None = CALIBRATION_FILE.field()  # the sim-vs-real report replays it
    node_key_file: Path | None = setting(
        "RAAS_NODE_KEY_FILE", None,
        "the node's Ed25519 private key (PEM, 0600) that signs its result bundles; created at "
        "first start (default <RAAS_DATA_DIR>/agent/node_key.pem)")
    store_url: str = STORE_URL.field()
    clone_timeout_s: float = setting("RAAS_CLONE_TIMEOUT_S", 120.0,
                                     "time limit for fetching a job's code", unit="s")
    clone_max_bytes: int = CODE_MAX_BYTES.field()  # the API holds uploads to the same limits
    clone_max_files: int = CODE_MAX_FILES.field()
    clone_schemes: tuple[str, ...] = GIT_SCHEMES.field()
    will_delay_s: int = setting("RAAS_AGENT_WILL_DELAY_S", 10,
                                "MQTT 5 will delay = session expiry: a reconnect within it "
                                "publishes no 'lost'", unit="s")
    keepalive_s: int = setting("RAAS_AGENT_KEEPALIVE_S", 10,
                               "MQTT keepalive (a hung agent is dropped after 1.5x)", unit="s")
    heartbeat_s: float = setting("RAAS_AGENT_HEARTBEAT_S", 10.0,
                                 "the agent's control loop sends a heartbeat this often (the "
                                 "fleet's 'last seen')", unit="s")
    update_retry_s: float = setting("RAAS_AGENT_UPDATE_RETRY_S", 5.0,
                                    "resend a job update not answered within this", unit="s")
    start_timeout_s: float = setting("RAAS_AGENT_START_TIMEOUT_S", 30.0,
                                     "give up an assignment whose 'running' is not answered",
                                     unit="s")
    selftest: bool = setting("RAAS_AGENT_SELFTEST", True,
                             "at start and between jobs, drive the env through a job login, then "
                             "run the motor node's self-test")
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
        if self.will_delay_s < 0 or self.keepalive_s < 1 or self.heartbeat_s <= 0:
            raise ConfigError("RAAS_AGENT_WILL_DELAY_S must be >= 0, RAAS_AGENT_KEEPALIVE_S >= 1, "
                              "RAAS_AGENT_HEARTBEAT_S > 0")
        if self.clone_max_bytes < 1024 or self.clone_timeout_s <= 0:
            raise ConfigError("RAAS_CLONE_MAX_BYTES / RAAS_CLONE_TIMEOUT_S are too small")
        if self.upload_attempts < 1 or self.log_chunk_lines < 1:
            raise ConfigError("RAAS_AGENT_UPLOAD_ATTEMPTS and RAAS_AGENT_LOG_CHUNK_LINES must be "
                              ">= 1")
        check_schemes(self.clone_schemes)

    @property
    def central_user(self) -> str:
        """The central username (``node-<id>`` unless set)."""
        return self.central_username or f"node-{self.node_id}"

    @property
    def node_key_path(self) -> Path:
        """Where the node's signing key is (``RAAS_NODE_KEY_FILE`` or its default)."""
        return self.node_key_file or Path(self.data_dir) / "agent" / "node_key.pem"

    @property
    def socket_path(self) -> Path | None:
        """The node-local broker socket to hand to job containers, if any."""
        if self.local_socket is not None:
            return self.local_socket
        if self.local_mqtt_url.startswith("unix://"):
            return Path(self.local_mqtt_url[len("unix://"):])
        return None

    def central_address(self) -> BrokerAddress:
        """The central broker, as this node's agent (``node-<id>``).

        Raises:
            ConfigError: a bad URL. OSError: the password file cannot be read.
        """
        return BrokerAddress.parse(self.central_mqtt_url, username=self.central_user,
                                   password_file=self.central_password_file,
                                   ca_file=self.central_ca_file)

    def local_address(self, admin: bool = False) -> BrokerAddress:
        """The node-local broker, as the agent, or (``admin``) as the broker's administrator
        that creates and deletes job logins.

        Raises:
            ConfigError: a bad URL. OSError: the password file cannot be read.
        """
        if admin:
            return BrokerAddress.parse(self.local_mqtt_url, username="admin",
                                       password_file=self.local_admin_password_file)
        return BrokerAddress.parse(self.local_mqtt_url, username=self.local_username,
                                   password_file=self.local_password_file)
