"""The wire contract: every MQTT topic, its QoS and retain flag, and every message schema.

This module is the only place in the project that spells a topic string. Services build topics with
:func:`topic` (or the named helpers), subscribe with :func:`topic_filter`, and recognise incoming
topics with :func:`parse_topic`. Payloads are JSON objects validated strictly by the frozen
dataclasses below: a missing or unknown field, a wrong type, NaN/inf, an invalid id or an oversized
payload raises :class:`ProtocolError` and nothing else.

Design sources: Sparkplug B (birth/death, session counter), AWS IoT Jobs (versioned job executions),
zigbee2mqtt/Home Assistant availability; measured facts in ``shared/reference/bus-protocol.md``.
The full table is rendered in ``docs/protocol.md`` by ``raas protocol``.

Stdlib only: it is imported by the researcher's env as well as by every service.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from gym_raas_mqtt.errors import ProtocolError

PROTOCOL_VERSION = 1
ROOT = f"raas/v{PROTOCOL_VERSION}"
MAX_PAYLOAD_BYTES = 512 * 1024
"""Largest payload accepted by :meth:`Message.from_bytes` (bytes)."""
MAX_STRING_CHARS = 64 * 1024
"""Longest single string field accepted (characters)."""
MAX_LIST_ITEMS = 10_000
"""Longest list field accepted (telemetry batches stay far below)."""
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""Node ids, job ids and owner names: safe as one topic level, file name and container label."""


# ------------------------------------------------------------------------------------------------
# States (lower-case values are stored as-is in the database and in JSON)
# ------------------------------------------------------------------------------------------------
class NodeStatus(str, enum.Enum):
    """A fleet node's availability, published retained on its state topic."""

    IDLE = "idle"
    BUSY = "busy"
    RESETTING = "resetting"
    MAINTENANCE = "maintenance"
    OFFLINE = "offline"  # clean shutdown, published by the node itself
    LOST = "lost"  # the node's last will: it vanished without saying goodbye


class JobState(str, enum.Enum):
    """A job's (and a job execution's) state; the dispatcher owns the truth."""

    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the user's code failed (non-zero exit, OOM, exception)
    TIMED_OUT = "timed_out"  # wall-clock limit reached; the run is still valid data
    CANCELED = "canceled"
    ERROR = "error"  # platform fault: the job is requeued on another node

    @property
    def terminal(self) -> bool:
        """True for states a job execution never leaves."""
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELED, JobState.ERROR}
)


class MotorStatus(str, enum.Enum):
    """The motor node's state on the node-local broker."""

    READY = "ready"
    RUNNING = "running"
    RESETTING = "resetting"
    FAULT = "fault"
    ESTOP = "estop"
    LOST = "lost"


class EnvStatus(str, enum.Enum):
    """The env client's (user code's) state on the node-local broker."""

    IDLE = "idle"
    RESETTING = "resetting"
    RUNNING = "running"
    LOST = "lost"


class NodeCommandKind(str, enum.Enum):
    """Commands the dispatcher or an operator sends to a node."""

    REBIRTH = "rebirth"  # republish meta and state
    DRAIN = "drain"  # finish the current job, take no more
    RESUME = "resume"  # undo drain
    CANCEL_JOB = "cancel_job"
    CLEAR_MAINTENANCE = "clear_maintenance"


class SourceKind(str, enum.Enum):
    """Where a job's code comes from."""

    GIT = "git"
    ARCHIVE = "archive"


class LogStream(str, enum.Enum):
    """Which output stream a log chunk came from."""

    STDOUT = "stdout"
    STDERR = "stderr"
    SYSTEM = "system"  # platform messages about the job (clone, image, limits)


# ------------------------------------------------------------------------------------------------
# Validation machinery
# ------------------------------------------------------------------------------------------------
def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"non-finite number {name} is not allowed")


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a valid node/job/owner id, else raise :class:`ProtocolError`."""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise ProtocolError(f"invalid {what} {value!r}: expected {ID_PATTERN.pattern}")
    return value


def _check_json_value(value: Any, path: str, depth: int = 0) -> Any:
    """Validate a free-form JSON value (used for ``details``/``summary`` dicts)."""
    if depth > 8:
        raise ProtocolError(f"{path}: nested too deeply")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ProtocolError(f"{path}: non-finite number")
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            raise ProtocolError(f"{path}: string longer than {MAX_STRING_CHARS}")
        return value
    if isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            raise ProtocolError(f"{path}: list longer than {MAX_LIST_ITEMS}")
        return [_check_json_value(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ProtocolError(f"{path}: keys must be strings")
            out[k] = _check_json_value(v, f"{path}.{k}", depth + 1)
        return out
    raise ProtocolError(f"{path}: {type(value).__name__} is not JSON")


def _coerce(value: Any, kind: Any, path: str) -> Any:
    """Check ``value`` (decoded JSON) against annotation ``kind``; return the Python value."""
    origin = typing.get_origin(kind)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(kind)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], path)
    if kind is Any:
        return _check_json_value(value, path)
    if kind is bool:
        if not isinstance(value, bool):
            raise ProtocolError(f"{path}: expected bool, got {type(value).__name__}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(f"{path}: expected int, got {type(value).__name__}")
        if abs(value) > 2**53:
            raise ProtocolError(f"{path}: integer out of range")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProtocolError(f"{path}: expected number, got {type(value).__name__}")
        value = float(value)
        if not math.isfinite(value):
            raise ProtocolError(f"{path}: non-finite number")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ProtocolError(f"{path}: expected string, got {type(value).__name__}")
        if len(value) > MAX_STRING_CHARS:
            raise ProtocolError(f"{path}: string longer than {MAX_STRING_CHARS}")
        return value
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(value)
        except (ValueError, TypeError):
            allowed = ", ".join(m.value for m in kind)
            raise ProtocolError(f"{path}: {value!r} is not one of {allowed}") from None
    if isinstance(kind, type) and issubclass(kind, Message):
        return kind.from_dict(value, path=path)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ProtocolError(f"{path}: expected list, got {type(value).__name__}")
        if len(value) > MAX_LIST_ITEMS:
            raise ProtocolError(f"{path}: list longer than {MAX_LIST_ITEMS}")
        (item,) = typing.get_args(kind)[:1]
        return tuple(_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ProtocolError(f"{path}: expected object, got {type(value).__name__}")
        return _check_json_value(value, path)
    raise TypeError(f"unsupported annotation {kind!r} at {path}")  # programming error


def _to_json(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Message):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return value


class Message:
    """Base of every payload: a frozen dataclass that round-trips through JSON bytes.

    Subclasses declare fields with annotations; ``tuple[float, ...]`` fields hold JSON lists,
    ``dict[str, Any]`` fields hold free-form JSON objects (still checked for NaN, depth and size).
    Fields whose metadata has ``id=True`` must match :data:`ID_PATTERN`.
    """

    _fields_cache: ClassVar[tuple[tuple[str, Any, bool, bool], ...] | None] = None

    @classmethod
    def _spec(cls) -> tuple[tuple[str, Any, bool, bool], ...]:
        spec = cls.__dict__.get("_fields_cache")
        if spec is None:
            hints = typing.get_type_hints(cls)
            spec = tuple(
                (
                    f.name,
                    hints[f.name],
                    f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
                    bool(f.metadata.get("id")),
                )
                for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            )
            cls._fields_cache = spec
        return spec

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> "Message":
        """Validate decoded JSON ``data`` and build the message.

        Raises:
            ProtocolError: for any deviation from the schema.
        """
        where = path or cls.__name__
        if not isinstance(data, dict):
            raise ProtocolError(f"{where}: expected a JSON object, got {type(data).__name__}")
        spec = cls._spec()
        names = {name for name, *_ in spec}
        unknown = set(data) - names
        if unknown:
            raise ProtocolError(f"{where}: unknown field(s) {sorted(map(str, unknown))[:5]}")
        values = {}
        for name, kind, required, is_id in spec:
            if name not in data:
                if required:
                    raise ProtocolError(f"{where}: missing field {name!r}")
                continue
            value = _coerce(data[name], kind, f"{where}.{name}")
            if is_id and value is not None:
                check_id(value, f"{where}.{name}")
            values[name] = value
        try:
            return cls(**values)
        except ProtocolError:
            raise
        except (TypeError, ValueError) as e:  # __post_init__ checks
            raise ProtocolError(f"{where}: {e}") from None

    @classmethod
    def from_bytes(cls, payload: bytes | bytearray | memoryview | str) -> "Message":
        """Decode and validate a payload.

        Raises:
            ProtocolError: oversized, not UTF-8 JSON, or not matching the schema.
        """
        if isinstance(payload, str):
            payload = payload.encode("utf-8", "surrogatepass")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ProtocolError(f"{cls.__name__}: payload of {len(payload)} bytes exceeds "
                                f"{MAX_PAYLOAD_BYTES}")
        try:
            data = json.loads(bytes(payload), parse_constant=_reject_constant)
        except ProtocolError:
            raise
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise ProtocolError(f"{cls.__name__}: not valid JSON ({str(e)[:80]})") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The message as JSON-ready data (enums as their values, tuples as lists)."""
        return {f.name: _to_json(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def to_bytes(self) -> bytes:
        """Compact UTF-8 JSON; ``from_bytes(to_bytes(m)) == m``."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode()


def _id(**kw: Any) -> Any:
    return field(metadata={"id": True}, **kw)


# ------------------------------------------------------------------------------------------------
# Messages on the central broker
# ------------------------------------------------------------------------------------------------
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
    job_id: str | None = _id(default=None)
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


@dataclass(frozen=True)
class NodeCommand(Message):
    """Dispatcher/operator → node command (sent with a message expiry)."""

    command: NodeCommandKind
    ts: float
    job_id: str | None = _id(default=None)
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

    job_id: str = _id()
    owner: str = _id()
    execution: int = 1  # attempt number, 1-based
    version: int = 1  # bumped by the dispatcher on every change of this execution
    source: JobSource = field(default_factory=lambda: JobSource(SourceKind.GIT, url="file:///"))
    time_limit_s: float = 120.0
    ts: float = 0.0


@dataclass(frozen=True)
class JobUpdate(Message):
    """Node → dispatcher: an execution changed state. Rejected if ``expected_version`` is stale."""

    job_id: str = _id()
    execution: int = 1
    expected_version: int = 1
    status: JobState = JobState.RUNNING
    ts: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)  # reason, commit_sha, result_key, summary


@dataclass(frozen=True)
class JobUpdateReply(Message):
    """Dispatcher → node answer to a :class:`JobUpdate`, on ``.../update/accepted|rejected``."""

    job_id: str = _id()
    execution: int = 1
    version: int = 1  # the execution's version after the update (the next expected_version)
    accepted: bool = True
    ts: float = 0.0
    reason: str | None = None


@dataclass(frozen=True)
class JobStatus(Message):
    """The authoritative, retained state of a job for users and the dashboard."""

    job_id: str = _id()
    owner: str = _id()
    state: JobState = JobState.QUEUED
    ts: float = 0.0
    execution: int = 0
    node_id: str | None = _id(default=None)
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

    job_id: str = _id()
    node_id: str = _id()
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

    job_id: str = _id()
    stream: LogStream = LogStream.STDOUT
    seq: int = 0
    lines: tuple[str, ...] = ()
    ts: float = 0.0
    truncated: bool = False


# ------------------------------------------------------------------------------------------------
# Messages on a node-local broker (the env in the job container <-> the motor node <-> the agent)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MotorState(Message):
    """The motor node's retained state; its will is ``lost``."""

    state: MotorStatus
    ts: float
    job_id: str | None = _id(default=None)
    episode_id: int | None = None
    reason: str | None = None
    rate_hz: float | None = None
    lockstep: bool = False
    # What the env's bus backend takes as its params (dt = 1/rate_hz); None from older nodes.
    backend: str | None = None  # "sim" or "pigpio"
    calibration_id: str | None = None
    max_action: float | None = None  # |u| limit the motor node clamps to
    max_speed: float | None = None  # rad/s, observation bound


@dataclass(frozen=True)
class EnvState(Message):
    """The env client's retained state; its will (``lost``) makes the motor safe at once."""

    state: EnvStatus
    ts: float
    episode_id: int | None = None


@dataclass(frozen=True)
class ResetRequest(Message):
    """Env → motor: start episode ``episode_id``. Idempotent by episode id.

    ``initial_state`` = (θ [rad], θ̇ [rad/s]) is honoured by simulated motors only; a real pendulum
    performs its closed-loop reset and reports where it actually is.
    """

    request_id: str = _id()
    episode_id: int = 1
    ts: float = 0.0
    initial_state: tuple[float, ...] | None = None
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.initial_state is not None and len(self.initial_state) != 2:
            raise ValueError("initial_state must be (theta, theta_dot)")


@dataclass(frozen=True)
class ResetReply(Message):
    """Motor → env: the episode's first state, or why the reset failed."""

    request_id: str = _id()
    episode_id: int = 1
    ok: bool = True
    theta: float = 0.0  # rad, 0 = upright
    theta_dot: float = 0.0  # rad/s
    t: float = 0.0  # s, motor clock
    error: str | None = None


@dataclass(frozen=True)
class Action(Message):
    """Env → motor: the action for step ``seq`` of ``episode_id`` (QoS 0, expiry 1 s)."""

    episode_id: int
    seq: int
    action: float  # desired u, N·m-equivalent; the motor node clamps to [-2, 2]


@dataclass(frozen=True)
class Observation(Message):
    """Motor → env: the state after applying action ``seq`` for one control period."""

    episode_id: int
    seq: int
    theta: float  # rad, 0 = upright, unwrapped
    theta_dot: float  # rad/s
    u_applied: float  # what the motor actually got after clamping and safety
    t: float  # s since the episode started, motor clock
    deadline_miss: bool = False
    fault: str | None = None  # set when the motor node went safe during this step


@dataclass(frozen=True)
class EStop(Message):
    """Agent/operator → motor: stop now (zero torque) until the next reset."""

    reason: str
    ts: float


@dataclass(frozen=True)
class JobBinding(Message):
    """Agent → motor (retained): which job the motor node records for; ``job_id=None`` unbinds."""

    ts: float
    job_id: str | None = _id(default=None)
    owner: str | None = _id(default=None)


@dataclass(frozen=True)
class SelfTestRequest(Message):
    """Agent → motor: reset closed-loop, then run the self-test excitation."""

    request_id: str = _id()
    ts: float = 0.0


@dataclass(frozen=True)
class SelfTestReply(Message):
    """Motor → agent: the self-test verdict and its measurements."""

    request_id: str = _id()
    ok: bool = True
    ts: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# Topics
# ------------------------------------------------------------------------------------------------
class TopicKind(str, enum.Enum):
    """Every topic of the system. The value names it in docs and logs."""

    DISPATCHER_STATE = "dispatcher_state"
    NODE_STATE = "node_state"
    NODE_META = "node_meta"
    NODE_CMD = "node_cmd"
    NODE_JOB_NEXT = "node_job_next"
    NODE_JOB_UPDATE = "node_job_update"
    NODE_JOB_ACCEPTED = "node_job_accepted"
    NODE_JOB_REJECTED = "node_job_rejected"
    JOB_STATE = "job_state"
    JOB_TELEMETRY = "job_telemetry"
    JOB_LOG = "job_log"
    ENV_MOTOR_STATE = "env_motor_state"
    ENV_STATE = "env_state"
    ENV_RESET = "env_reset"
    ENV_RESET_REPLY = "env_reset_reply"
    ENV_ACT = "env_act"
    ENV_OBS = "env_obs"
    ENV_ESTOP = "env_estop"
    ENV_JOB = "env_job"
    ENV_SELFTEST = "env_selftest"
    ENV_SELFTEST_REPLY = "env_selftest_reply"
    NODE_BRIDGE = "node_bridge"


@dataclass(frozen=True)
class TopicSpec:
    """How a topic is used: its template, QoS, retain flag, payload type and direction."""

    template: tuple[str, ...]  # levels; "{node}", "{job}", "{owner}" are placeholders
    qos: int
    retain: bool
    message: type[Message] | None
    direction: str
    local: bool = False  # lives on the node-local broker (bridged where noted in docs)

    @property
    def placeholders(self) -> tuple[str, ...]:
        return tuple(lv[1:-1] for lv in self.template if lv.startswith("{"))


def _t(path: str) -> tuple[str, ...]:
    return tuple(path.split("/"))


TOPICS: Mapping[TopicKind, TopicSpec] = {
    TopicKind.DISPATCHER_STATE: TopicSpec(_t("dispatcher/state"), 1, True, DispatcherState,
                                          "dispatcher → all"),
    TopicKind.NODE_STATE: TopicSpec(_t("nodes/{node}/state"), 1, True, NodeState, "node → all"),
    TopicKind.NODE_META: TopicSpec(_t("nodes/{node}/meta"), 1, True, NodeMeta, "node → all"),
    TopicKind.NODE_CMD: TopicSpec(_t("nodes/{node}/cmd"), 1, False, NodeCommand,
                                  "dispatcher → node"),
    TopicKind.NODE_JOB_NEXT: TopicSpec(_t("nodes/{node}/jobs/next"), 1, True, JobAssignment,
                                       "dispatcher → node"),
    TopicKind.NODE_JOB_UPDATE: TopicSpec(_t("nodes/{node}/jobs/{job}/update"), 1, False, JobUpdate,
                                         "node → dispatcher"),
    TopicKind.NODE_JOB_ACCEPTED: TopicSpec(_t("nodes/{node}/jobs/{job}/update/accepted"), 1, False,
                                           JobUpdateReply, "dispatcher → node"),
    TopicKind.NODE_JOB_REJECTED: TopicSpec(_t("nodes/{node}/jobs/{job}/update/rejected"), 1, False,
                                           JobUpdateReply, "dispatcher → node"),
    TopicKind.JOB_STATE: TopicSpec(_t("jobs/{owner}/{job}/state"), 1, True, JobStatus,
                                   "dispatcher → users"),
    TopicKind.JOB_TELEMETRY: TopicSpec(_t("jobs/{owner}/{job}/telemetry"), 0, False,
                                       TelemetryBatch, "motor node → users"),
    TopicKind.JOB_LOG: TopicSpec(_t("jobs/{owner}/{job}/log"), 0, False, LogChunk,
                                 "agent → users"),
    TopicKind.ENV_MOTOR_STATE: TopicSpec(_t("env/{node}/motor/state"), 1, True, MotorState,
                                         "motor → env, agent", local=True),
    TopicKind.ENV_STATE: TopicSpec(_t("env/{node}/env/state"), 1, True, EnvState,
                                   "env → motor, agent", local=True),
    TopicKind.ENV_RESET: TopicSpec(_t("env/{node}/reset"), 1, False, ResetRequest, "env → motor",
                                   local=True),
    TopicKind.ENV_RESET_REPLY: TopicSpec(_t("env/{node}/reset/reply"), 1, False, ResetReply,
                                         "motor → env", local=True),
    TopicKind.ENV_ACT: TopicSpec(_t("env/{node}/act"), 0, False, Action, "env → motor",
                                 local=True),
    TopicKind.ENV_OBS: TopicSpec(_t("env/{node}/obs"), 0, False, Observation, "motor → env",
                                 local=True),
    TopicKind.ENV_ESTOP: TopicSpec(_t("env/{node}/estop"), 1, False, EStop, "agent → motor",
                                   local=True),
    TopicKind.ENV_JOB: TopicSpec(_t("env/{node}/job"), 1, True, JobBinding, "agent → motor",
                                 local=True),
    TopicKind.ENV_SELFTEST: TopicSpec(_t("env/{node}/selftest"), 1, False, SelfTestRequest,
                                      "agent → motor", local=True),
    TopicKind.ENV_SELFTEST_REPLY: TopicSpec(_t("env/{node}/selftest/reply"), 1, False,
                                            SelfTestReply, "motor → agent", local=True),
    # Written by Mosquitto itself (bridge notifications), retained: payload b"1" when the node-local
    # broker's bridge is connected, b"0" (its will) when it dropped. Not JSON: message None.
    TopicKind.NODE_BRIDGE: TopicSpec(_t("nodes/{node}/bridge"), 1, True, None,
                                     "node-local broker's bridge → all"),
}

_ROOT_LEVELS = tuple(ROOT.split("/"))


def topic(kind: TopicKind, **ids: str) -> str:
    """The concrete topic of ``kind`` for the given ids (``node``, ``job``, ``owner``).

    Raises:
        ProtocolError: an id is missing, extra, or not a valid id.
    """
    spec = TOPICS[kind]
    needed = spec.placeholders
    if set(ids) != set(needed):
        raise ProtocolError(f"{kind.value} needs ids {needed}, got {tuple(ids)}")
    levels = []
    for lv in spec.template:
        if lv.startswith("{"):
            levels.append(check_id(ids[lv[1:-1]], lv[1:-1]))
        else:
            levels.append(lv)
    return "/".join(_ROOT_LEVELS + tuple(levels))


def topic_filter(kind: TopicKind, **ids: str) -> str:
    """A subscription filter for ``kind``: ids not given become the ``+`` wildcard."""
    spec = TOPICS[kind]
    levels = []
    for lv in spec.template:
        if lv.startswith("{"):
            name = lv[1:-1]
            levels.append(check_id(ids[name], name) if name in ids else "+")
        else:
            levels.append(lv)
    return "/".join(_ROOT_LEVELS + tuple(levels))


def local_filter(node: str) -> str:
    """Filter matching every node-local topic of ``node`` (for the bridge and for logging)."""
    return "/".join(_ROOT_LEVELS + ("env", check_id(node, "node"), "#"))


def root_filter() -> str:
    """Filter matching every topic of this protocol version (``raas/v1/#``)."""
    return "/".join(_ROOT_LEVELS + ("#",))


def node_filter(node: str) -> str:
    """Filter matching every central topic of one node (``raas/v1/nodes/<node>/#``)."""
    return "/".join(_ROOT_LEVELS + ("nodes", check_id(node, "node"), "#"))


def job_filter(owner: str, job: str | None = None) -> str:
    """Filter for all of a user's job topics (or one job's) on the central broker."""
    levels = ("jobs", check_id(owner, "owner"), check_id(job, "job") if job else "+", "#")
    return "/".join(_ROOT_LEVELS + levels)


@dataclass(frozen=True)
class ParsedTopic:
    """The result of :func:`parse_topic`: which topic it is and the ids it carries."""

    kind: TopicKind
    node: str | None = None
    job: str | None = None
    owner: str | None = None

    @property
    def spec(self) -> TopicSpec:
        return TOPICS[self.kind]


def _build_index() -> dict[int, list[tuple[TopicKind, TopicSpec]]]:
    index: dict[int, list[tuple[TopicKind, TopicSpec]]] = {}
    for kind, spec in TOPICS.items():
        index.setdefault(len(spec.template), []).append((kind, spec))
    return index


_INDEX = _build_index()


def parse_topic(name: str) -> ParsedTopic:
    """Recognise a concrete topic.

    Raises:
        ProtocolError: the topic is not part of the contract (or carries an invalid id).
    """
    levels = tuple(name.split("/"))
    n_root = len(_ROOT_LEVELS)
    if levels[:n_root] != _ROOT_LEVELS:
        raise ProtocolError(f"topic {name[:120]!r} is outside {ROOT}/")
    rest = levels[n_root:]
    for kind, spec in _INDEX.get(len(rest), ()):
        ids: dict[str, str] = {}
        for want, got in zip(spec.template, rest):
            if want.startswith("{"):
                if not ID_PATTERN.match(got):
                    break
                ids[want[1:-1]] = got
            elif want != got:
                break
        else:
            return ParsedTopic(kind, **ids)
    raise ProtocolError(f"unknown topic {name[:120]!r}")


def decode(name: str, payload: bytes) -> tuple[ParsedTopic, Message | None]:
    """Parse a topic and its payload together. An empty payload (a cleared retained message)
    decodes to ``None``, and so does a (valid) non-JSON :attr:`TopicKind.NODE_BRIDGE` payload.

    Raises:
        ProtocolError: unknown topic or invalid payload.
    """
    parsed = parse_topic(name)
    if not payload:
        return parsed, None
    cls = parsed.spec.message
    if cls is None:  # NODE_BRIDGE: Mosquitto's b"1"/b"0", validated, read with bridge_connected()
        bridge_connected(payload)
        return parsed, None
    return parsed, cls.from_bytes(payload)


def bridge_connected(payload: bytes) -> bool:
    """Decode a :attr:`TopicKind.NODE_BRIDGE` payload (Mosquitto's own ``1``/``0``).

    Raises:
        ProtocolError: anything else.
    """
    if payload == b"1":
        return True
    if payload == b"0":
        return False
    raise ProtocolError(f"bridge notification must be b'1' or b'0', got {bytes(payload[:20])!r}")


def describe_topics() -> list[dict[str, str]]:
    """Rows documenting the topic tree (used by ``raas protocol`` and docs/protocol.md)."""
    rows = []
    for kind, spec in TOPICS.items():
        rows.append({
            "topic": "/".join(_ROOT_LEVELS + spec.template).replace("{", "<").replace("}", ">"),
            "broker": "node-local" if spec.local else "central",
            "direction": spec.direction,
            "qos": str(spec.qos),
            "retain": "yes" if spec.retain else "no",
            "payload": spec.message.__name__ if spec.message else "-",
        })
    return rows
