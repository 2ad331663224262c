"""The topic table: every topic, its QoS, retain flag, payload type and direction, and the only
functions that build, filter and recognise topic strings."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Mapping

from gym_raas_mqtt.errors import ProtocolError
from gym_raas_mqtt.protocol.binary import from_payload
from gym_raas_mqtt.protocol.central import (DispatcherState, JobAssignment, JobStatus, JobUpdate,
                                            JobUpdateReply, LogChunk, NodeCommand,
                                            NodeHeartbeat, NodeMeta, NodeSelfTest, NodeState,
                                            TelemetryBatch)
from gym_raas_mqtt.protocol.codec import ID_PATTERN, ROOT, Message, check_id
from gym_raas_mqtt.protocol.local import (Action, EnvState, EStop, JobBinding, MotorState,
                                          Observation, ResetReply, ResetRequest, SelfTestReply,
                                          SelfTestRequest)


class TopicKind(str, enum.Enum):
    """Every topic of the system. The value names it in docs and logs."""

    DISPATCHER_STATE = "dispatcher_state"
    NODE_STATE = "node_state"
    NODE_META = "node_meta"
    NODE_HEARTBEAT = "node_heartbeat"
    NODE_SELFTEST = "node_selftest"
    NODE_CMD = "node_cmd"
    NODE_JOB_NEXT = "node_job_next"
    NODE_JOB_UPDATE = "node_job_update"
    NODE_JOB_ACCEPTED = "node_job_accepted"
    NODE_JOB_REJECTED = "node_job_rejected"
    NODE_JOB_TELEMETRY = "node_job_telemetry"
    NODE_JOB_LOG = "node_job_log"
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
        """The id names the template needs, in order (``node``, ``job``, ``owner``)."""
        return tuple(lv[1:-1] for lv in self.template if lv.startswith("{"))


def _t(path: str) -> tuple[str, ...]:
    return tuple(path.split("/"))


TOPICS: Mapping[TopicKind, TopicSpec] = {
    TopicKind.DISPATCHER_STATE: TopicSpec(_t("dispatcher/state"), 1, True, DispatcherState,
                                          "dispatcher → all"),
    TopicKind.NODE_STATE: TopicSpec(_t("nodes/{node}/state"), 1, True, NodeState, "node → all"),
    TopicKind.NODE_META: TopicSpec(_t("nodes/{node}/meta"), 1, True, NodeMeta, "node → all"),
    # Liveness between state changes (QoS 0: a lost one is replaced by the next) and the history of
    # self-tests the dispatcher records for the fleet page.
    TopicKind.NODE_HEARTBEAT: TopicSpec(_t("nodes/{node}/heartbeat"), 0, False, NodeHeartbeat,
                                        "node → dispatcher, dashboard"),
    TopicKind.NODE_SELFTEST: TopicSpec(_t("nodes/{node}/selftest"), 1, False, NodeSelfTest,
                                       "node → dispatcher"),
    # Operators (raas node send, as admin) and the dispatcher command a node; the dispatcher also
    # reads them to record drain / resume / maintenance / clear_maintenance.
    TopicKind.NODE_CMD: TopicSpec(_t("nodes/{node}/cmd"), 1, False, NodeCommand,
                                  "dispatcher, operator → node, dispatcher"),
    TopicKind.NODE_JOB_NEXT: TopicSpec(_t("nodes/{node}/jobs/next"), 1, True, JobAssignment,
                                       "dispatcher → node"),
    TopicKind.NODE_JOB_UPDATE: TopicSpec(_t("nodes/{node}/jobs/{job}/update"), 1, False, JobUpdate,
                                         "node → dispatcher"),
    TopicKind.NODE_JOB_ACCEPTED: TopicSpec(_t("nodes/{node}/jobs/{job}/update/accepted"), 1, False,
                                           JobUpdateReply, "dispatcher → node"),
    TopicKind.NODE_JOB_REJECTED: TopicSpec(_t("nodes/{node}/jobs/{job}/update/rejected"), 1, False,
                                           JobUpdateReply, "dispatcher → node"),
    # A node writes its jobs' telemetry and logs in its own subtree; the dispatcher relays those of
    # the job the node currently holds to the job's owner (a node cannot write another's job).
    TopicKind.NODE_JOB_TELEMETRY: TopicSpec(_t("nodes/{node}/jobs/{job}/telemetry"), 0, False,
                                            TelemetryBatch, "motor node (bridged) → dispatcher"),
    TopicKind.NODE_JOB_LOG: TopicSpec(_t("nodes/{node}/jobs/{job}/log"), 0, False, LogChunk,
                                      "agent → dispatcher"),
    TopicKind.JOB_STATE: TopicSpec(_t("jobs/{owner}/{job}/state"), 1, True, JobStatus,
                                   "dispatcher → users"),
    TopicKind.JOB_TELEMETRY: TopicSpec(_t("jobs/{owner}/{job}/telemetry"), 0, False,
                                       TelemetryBatch, "dispatcher (relayed) → users"),
    TopicKind.JOB_LOG: TopicSpec(_t("jobs/{owner}/{job}/log"), 0, False, LogChunk,
                                 "dispatcher (relayed) → users"),
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
        """The topic's row in :data:`TOPICS`."""
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


def decode(name: str, payload: bytes,
           content_type: str | None = None) -> tuple[ParsedTopic, Message | None]:
    """Parse a topic and its payload together. An empty payload (a cleared retained message)
    decodes to ``None``, and so does a (valid) non-JSON :attr:`TopicKind.NODE_BRIDGE` payload.

    Args:
        name: the topic. payload: the PUBLISH payload.
        content_type: its MQTT 5 content-type property (``None``/absent means JSON; Action and
            Observation also have a binary form, see :mod:`gym_raas_mqtt.protocol.binary`).

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
    return parsed, from_payload(cls, payload, content_type)


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
