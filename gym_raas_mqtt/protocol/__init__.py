"""The wire contract: every MQTT topic, its QoS and retain flag, and every message schema.

This package is the only place in the project that spells a topic string. Services build topics
with :func:`topic` (or the named filters), subscribe with :func:`topic_filter`, and recognise
incoming topics with :func:`parse_topic`. Payloads are JSON objects validated strictly by frozen
dataclasses, except the control loop's Action and Observation, which also have a fixed-layout
binary form named by the MQTT 5 content type: anything off the schema raises
:class:`ProtocolError` and nothing else.

=================  ===========================================================================
``states``         node, job, motor and env states; command, source and log-stream kinds
``codec``          the :class:`Message` base: encoding, validation, ids, size limits
``central``        messages on the central broker (presence, health, jobs, telemetry, logs)
``local``          messages on a node-local broker (env ⇄ motor node ⇄ agent)
``binary``         the binary form of Action and Observation (MQTT 5 content type)
``topics``         the topic table and the functions that build, filter and parse topics
=================  ===========================================================================

Design sources: Sparkplug B (birth/death, session counter), AWS IoT Jobs (versioned job executions),
zigbee2mqtt/Home Assistant availability; measured facts in ``shared/reference/bus-protocol.md``.
The full table is rendered in ``docs/protocol.md`` by ``raas protocol``. Stdlib only: imported by
the researcher's env as well as by every service, without loading gymnasium or numpy.
"""

from gym_raas_mqtt.errors import ProtocolError
from gym_raas_mqtt.protocol.binary import (ACTION_CONTENT_TYPE, BINARY_FORMS,
                                           JSON_CONTENT_TYPE, OBSERVATION_CONTENT_TYPE,
                                           decode_action, decode_observation, describe_forms,
                                           encode_action, encode_observation, from_payload,
                                           pack_action)
from gym_raas_mqtt.protocol.central import (TELEMETRY_COLUMNS, DispatcherState, JobAssignment,
                                            JobSource, JobStatus, JobUpdate, JobUpdateReply,
                                            LogChunk, NodeCommand, NodeHeartbeat, NodeMeta,
                                            NodeSelfTest, NodeState, TelemetryBatch)
from gym_raas_mqtt.protocol.codec import (ID_PATTERN, MAX_LIST_ITEMS, MAX_PAYLOAD_BYTES,
                                          MAX_STRING_CHARS, PROTOCOL_VERSION, ROOT, Message,
                                          check_id, id_field)
from gym_raas_mqtt.protocol.local import (Action, EnvState, EStop, JobBinding, MotorState,
                                          Observation, ResetReply, ResetRequest, SelfTestReply,
                                          SelfTestRequest)
from gym_raas_mqtt.protocol.states import (TERMINAL_STATES, EnvStatus, JobState, LogStream,
                                           MotorStatus, NodeCommandKind, NodeStatus, SourceKind)
from gym_raas_mqtt.protocol.topics import (TOPICS, ParsedTopic, TopicKind, TopicSpec,
                                           bridge_connected, decode, describe_topics, job_filter,
                                           local_filter, node_filter, parse_topic, root_filter,
                                           topic, topic_filter)

__all__ = [
    "ACTION_CONTENT_TYPE", "BINARY_FORMS", "JSON_CONTENT_TYPE", "OBSERVATION_CONTENT_TYPE",
    "decode_action", "decode_observation", "describe_forms", "encode_action",
    "encode_observation", "from_payload", "pack_action",
    "Action", "DispatcherState", "EStop", "EnvState", "EnvStatus", "ID_PATTERN", "JobAssignment",
    "JobBinding", "JobSource", "JobState", "JobStatus", "JobUpdate", "JobUpdateReply", "LogChunk",
    "LogStream", "MAX_LIST_ITEMS", "MAX_PAYLOAD_BYTES", "MAX_STRING_CHARS", "Message",
    "MotorState", "MotorStatus", "NodeCommand", "NodeCommandKind", "NodeHeartbeat", "NodeMeta",
    "NodeSelfTest", "NodeState",
    "NodeStatus", "Observation", "PROTOCOL_VERSION", "ParsedTopic", "ProtocolError", "ROOT",
    "ResetReply", "ResetRequest", "SelfTestReply", "SelfTestRequest", "SourceKind",
    "TELEMETRY_COLUMNS", "TERMINAL_STATES", "TOPICS", "TelemetryBatch", "TopicKind", "TopicSpec",
    "bridge_connected", "check_id", "decode", "describe_topics", "id_field", "job_filter",
    "local_filter", "node_filter", "parse_topic", "root_filter", "topic", "topic_filter",
]
