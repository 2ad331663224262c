"""Messages on the central broker: presence, health, job executions, state, telemetry and logs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gym_raas_mqtt.protocol.codec import Message, id_field
from gym_raas_mqtt.protocol.states import JobState, LogStream, NodeCommandKind, NodeStatus, SourceKind


@dataclass(frozen=True)
class DispatcherState(Message):
    """Dispatcher birth (``online=True``) and will (``online=False``); the newer ``ts`` wins."""

    online: bool
    ts: float  # s since the epoch, set at connect time (birth) so the will carries the same one


@dataclass(frozen=True)
class NodeState(Message):
    """A node's retained availability. The will carries ``lost`` with the same session."""

    state: NodeStatus
    session: int  # incremented (and stored on disk) before every CONNECT; orders birth vs. late will
    ts: float
    job_id: str | None = id_field(default=None)
    reason: str | None = None


@dataclass(frozen=True)
class NodeMeta(Message):
    """A node's retained description, published before its state on every (re)connect."""

    backend: str  # "sim" or "pigpio"
    software_version: str
    calibration_id: str
    ts: float
    image_digest: str | None = None
    hostname: str | None = None
    public_key: str | None = None  # base64 of the node's raw Ed25519 key that signs its bundles


@dataclass(frozen=True)
class NodeHeartbeat(Message):
    """A node's agent is alive: sent from its control loop every ``RAAS_AGENT_HEARTBEAT_S``
    (QoS 0, never retained), so "last seen" stays fresh between state changes."""

    session: int  # the session of the connection it was sent on (see NodeState)
    ts: float  # s since the epoch, the node's clock


@dataclass(frozen=True)
class NodeSelfTest(Message):
    """A node's self-test result (between jobs), for the fleet's health history; never retained."""

    ok: bool
    ts: float  # when it ended, s since the epoch (the node's clock)
    duration_s: float  # how long the whole check took [s]
    stage: str = "pendulum"  # the last stage reached: motor, runner, job_path or pendulum
    reason: str | None = None  # why it failed, one line
    max_error_rad: float | None = None  # largest |θ − θ_model| of the excitation [rad]
    rms_error_rad: float | None = None  # its RMS [rad]
    details: dict[str, Any] = field(default_factory=dict)  # the motor node's measurements


@dataclass(frozen=True)
class NodeCommand(Message):
    """Dispatcher/operator → node command (sent with a message expiry)."""

    command: NodeCommandKind
    ts: float
    job_id: str | None = id_field(default=None)
    reason: str | None = None


@dataclass(frozen=True)
class JobSource(Message):
    """Where to fetch a job's code: a git URL at a ref, or an uploaded archive in the object store."""

    kind: SourceKind
    url: str | None = None  # git: https://, ssh:// or file:// URL
    ref: str | None = None  # git: branch, tag or commit; None = the default branch
    archive_key: str | None = None  # archive: object-store key of the .tar.gz/.zip

    def __post_init__(self) -> None:
        if self.kind is SourceKind.GIT and not self.url:
            raise ValueError("a git source needs a url")
        if self.kind is SourceKind.ARCHIVE and not self.archive_key:
            raise ValueError("an archive source needs an archive_key")


@dataclass(frozen=True)
class JobAssignment(Message):
    """The desired job execution, retained on a node's ``jobs/next`` topic (empty payload = none)."""

    job_id: str = id_field()
    owner: str = id_field()
    execution: int = 1  # attempt number, 1-based
    version: int = 1  # bumped by the dispatcher on every change of this execution
    source: JobSource = field(default_factory=lambda: JobSource(SourceKind.GIT, url="file:///"))
    time_limit_s: float = 120.0
    ts: float = 0.0
    # Run metadata, checked at submission and again by the node (raas_platform.submission).
    name: str | None = None
    tags: tuple[str, ...] = ()
    args: tuple[str, ...] = ()  # argv of run.py after its name
    env: dict[str, Any] = field(default_factory=dict)  # {NAME: value} for the job's container


@dataclass(frozen=True)
class JobUpdate(Message):
    """Node → dispatcher: an execution changed state. Rejected if ``expected_version`` is stale."""

    job_id: str = id_field()
    execution: int = 1
    expected_version: int = 1
    status: JobState = JobState.RUNNING
    ts: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)  # reason, commit_sha, result_key, summary


@dataclass(frozen=True)
class JobUpdateReply(Message):
    """Dispatcher → node answer to a :class:`JobUpdate`, on ``.../update/accepted|rejected``."""

    job_id: str = id_field()
    execution: int = 1
    version: int = 1  # the execution's version after the update (the next expected_version)
    accepted: bool = True
    ts: float = 0.0
    reason: str | None = None


@dataclass(frozen=True)
class JobStatus(Message):
    """The authoritative, retained state of a job for users and the dashboard."""

    job_id: str = id_field()
    owner: str = id_field()
    state: JobState = JobState.QUEUED
    ts: float = 0.0
    execution: int = 0
    node_id: str | None = id_field(default=None)
    reason: str | None = None
    result_key: str | None = None


TELEMETRY_COLUMNS = ("seq", "t", "theta", "theta_dot", "u_desired", "u_applied", "reward",
                     "deadline_miss")
"""Per-step telemetry columns, in order: step number, s since episode start, rad, rad/s,
desired and applied action (N·m-equivalent, [-2, 2]), reward, and whether the tick missed its
deadline. The motor node records them; user code never writes them."""


@dataclass(frozen=True)
class TelemetryBatch(Message):
    """A batch of per-step samples from the motor node (columns of equal length)."""

    job_id: str = id_field()
    node_id: str = id_field()
    episode_id: int = 0
    seq: tuple[int, ...] = ()
    t: tuple[float, ...] = ()
    theta: tuple[float, ...] = ()
    theta_dot: tuple[float, ...] = ()
    u_desired: tuple[float, ...] = ()
    u_applied: tuple[float, ...] = ()
    reward: tuple[float, ...] = ()
    deadline_miss: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.seq)
        if any(len(getattr(self, c)) != n for c in TELEMETRY_COLUMNS):
            raise ValueError("telemetry columns differ in length")


@dataclass(frozen=True)
class LogChunk(Message):
    """Lines of a job's output, capped by the node; ``truncated`` marks where the cap cut."""

    job_id: str = id_field()
    stream: LogStream = LogStream.STDOUT
    seq: int = 0
    lines: tuple[str, ...] = ()
    ts: float = 0.0
    truncated: bool = False
