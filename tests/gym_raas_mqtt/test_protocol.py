"""The wire contract: topics, round trips, strict validation, and fuzzing."""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gym_raas_mqtt import protocol as p
from gym_raas_mqtt.errors import ProtocolError

MESSAGE_TYPES = sorted({s.message for s in p.TOPICS.values() if s.message} | {p.JobSource},
                       key=lambda c: c.__name__)

EXAMPLES = [
    p.DispatcherState(online=True, ts=1.5),
    p.NodeState(p.NodeStatus.BUSY, session=7, ts=2.0, job_id="j1"),
    p.NodeMeta(backend="sim", software_version="0.1.0", calibration_id="c1", ts=3.0,
               image_digest="sha256:ab"),
    p.NodeCommand(p.NodeCommandKind.CANCEL_JOB, ts=1.0, job_id="j1"),
    p.NodeCommand(p.NodeCommandKind.MAINTENANCE, ts=1.0, reason="3 platform errors in a row"),
    p.NodeHeartbeat(session=7, ts=2.5),
    p.NodeSelfTest(ok=False, ts=3.0, duration_s=4.25, stage="pendulum", reason="stuck",
                   max_error_rad=0.31, rms_error_rad=0.12, details={"samples": 40}),
    p.JobAssignment(job_id="j1", owner="alice", execution=2, version=3,
                    source=p.JobSource(p.SourceKind.GIT, url="https://h/r.git", ref="main"),
                    time_limit_s=60.0, ts=4.0),
    p.JobUpdate(job_id="j1", execution=2, expected_version=3, status=p.JobState.SUCCEEDED, ts=1.0,
                details={"reason": "exit 0", "summary": {"return": -12.5, "steps": [1, 2]}}),
    p.JobUpdateReply(job_id="j1", execution=2, version=4, accepted=False, reason="stale"),
    p.JobStatus(job_id="j1", owner="alice", state=p.JobState.RUNNING, ts=1.0, execution=1,
                node_id="pi-1"),
    p.TelemetryBatch(job_id="j1", node_id="pi-1", episode_id=1, seq=(1, 2), t=(0.05, 0.1),
                     theta=(3.1, 3.0), theta_dot=(0.0, -0.5), u_desired=(2.0, 2.5),
                     u_applied=(2.0, 2.0), reward=(-9.0, -8.9), deadline_miss=(False, True)),
    p.LogChunk(job_id="j1", stream=p.LogStream.STDERR, seq=3, lines=("a", "b ü"), ts=1.0),
    p.MotorState(p.MotorStatus.FAULT, ts=1.0, reason="over-speed"),
    p.EnvState(p.EnvStatus.RUNNING, ts=1.0, episode_id=4),
    p.ResetRequest(request_id="r1", episode_id=4, ts=1.0, initial_state=(3.1, 0.0)),
    p.ResetReply(request_id="r1", episode_id=4, ok=True, theta=3.1, theta_dot=0.01, t=0.0),
    p.Action(episode_id=4, seq=10, action=-1.25),
    p.Observation(episode_id=4, seq=10, theta=0.1, theta_dot=-0.2, u_applied=-1.25, t=0.5,
                  deadline_miss=True),
    p.EStop(reason="operator", ts=1.0),
    p.JobBinding(ts=1.0, job_id="j1", owner="alice"),
    p.SelfTestRequest(request_id="s1", ts=1.0),
    p.SelfTestReply(request_id="s1", ok=False, ts=1.0, details={"rms_error_rad": 0.3}),
]


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg):
    data = msg.to_bytes()
    assert type(msg).from_bytes(data) == msg
    assert json.loads(data)  # plain JSON object


def test_every_message_type_has_an_example():
    assert {type(m) for m in EXAMPLES} >= set(MESSAGE_TYPES) - {p.JobSource}


def test_floats_round_trip_exactly():
    x = math.pi / 3 + 1e-15
    obs = p.Observation(episode_id=1, seq=1, theta=x, theta_dot=-x, u_applied=0.1, t=0.05)
    assert p.Observation.from_bytes(obs.to_bytes()).theta == x


@pytest.mark.parametrize("payload, match", [
    (b'{"online": true}', "missing field 'ts'"),
    (b'{"online": true, "ts": 1, "extra": 0}', "unknown field"),
    (b'{"online": 1, "ts": 1}', "expected bool"),
    (b'{"online": true, "ts": "1"}', "expected number"),
    (b'{"online": true, "ts": NaN}', "non-finite"),
    (b'{"online": true, "ts": Infinity}', "non-finite"),
    (b'{"online": true, "ts": 1e400}', "non-finite"),
    (b'[true, 1]', "JSON object"),
    (b'\xff\xfe', "not valid JSON"),
    (b'{"online": tru', "not valid JSON"),
    (b"", "not valid JSON"),
])
def test_invalid_payloads_raise_protocol_error(payload, match):
    with pytest.raises(ProtocolError, match=match):
        p.DispatcherState.from_bytes(payload)


def test_oversized_payload_is_refused_before_parsing():
    with pytest.raises(ProtocolError, match="exceeds"):
        p.LogChunk.from_bytes(b" " * (p.MAX_PAYLOAD_BYTES + 1))


def test_invalid_ids_enums_and_nested_messages():
    with pytest.raises(ProtocolError, match="job_id"):
        p.NodeState.from_bytes(b'{"state":"idle","session":1,"ts":1,"job_id":"../../etc"}')
    with pytest.raises(ProtocolError, match="not one of"):
        p.NodeState.from_bytes(b'{"state":"sleeping","session":1,"ts":1}')
    bad_source = p.JobAssignment(job_id="j", owner="o").to_dict()
    bad_source["source"] = {"kind": "git"}
    with pytest.raises(ProtocolError, match="needs a url"):
        p.JobAssignment.from_bytes(json.dumps(bad_source))
    with pytest.raises(ProtocolError, match="differ in length"):
        p.TelemetryBatch.from_bytes(b'{"job_id":"j","node_id":"n","seq":[1],"t":[]}')
    with pytest.raises(ProtocolError, match="bool"):
        p.Action.from_bytes(b'{"episode_id":1,"seq":true,"action":0}')


def test_free_form_details_are_checked_too():
    deep = {"a": {}}
    cur = deep["a"]
    for _ in range(20):
        cur["a"] = {}
        cur = cur["a"]
    with pytest.raises(ProtocolError, match="nested too deeply"):
        p.JobUpdate.from_bytes(json.dumps({"job_id": "j", "details": deep}))


def test_topics_build_and_parse():
    t = p.topic(p.TopicKind.NODE_JOB_UPDATE, node="pi-1", job="j9")
    assert t == "raas/v1/nodes/pi-1/jobs/j9/update"
    parsed = p.parse_topic(t)
    assert (parsed.kind, parsed.node, parsed.job) == (p.TopicKind.NODE_JOB_UPDATE, "pi-1", "j9")
    assert p.parse_topic("raas/v1/nodes/pi-1/jobs/next").kind is p.TopicKind.NODE_JOB_NEXT
    assert p.topic(p.TopicKind.JOB_TELEMETRY, owner="alice", job="j9") == \
        "raas/v1/jobs/alice/j9/telemetry"
    assert p.topic_filter(p.TopicKind.NODE_STATE) == "raas/v1/nodes/+/state"
    assert p.topic_filter(p.TopicKind.ENV_ACT, node="pi-2") == "raas/v1/env/pi-2/act"
    assert p.job_filter("alice") == "raas/v1/jobs/alice/+/#"


@pytest.mark.parametrize("kind", list(p.TopicKind))
def test_every_topic_round_trips(kind):
    ids = {name: f"x{name}" for name in p.TOPICS[kind].placeholders}
    parsed = p.parse_topic(p.topic(kind, **ids))
    assert parsed.kind is kind
    assert {k: getattr(parsed, k) for k in ids} == ids


@pytest.mark.parametrize("bad", ["raas/v2/dispatcher/state", "raas/v1/nodes/a b/state",
                                 "raas/v1/nodes/+/state", "raas/v1/nodes/x", "other",
                                 "raas/v1/nodes/x/state/extra", ""])
def test_parse_topic_rejects(bad):
    with pytest.raises(ProtocolError):
        p.parse_topic(bad)


def test_topic_builder_rejects_bad_or_missing_ids():
    with pytest.raises(ProtocolError):
        p.topic(p.TopicKind.NODE_STATE, node="a/b")
    with pytest.raises(ProtocolError):
        p.topic(p.TopicKind.NODE_STATE, node="+")
    with pytest.raises(ProtocolError):
        p.topic(p.TopicKind.NODE_STATE)


def test_decode_handles_cleared_retained_messages():
    parsed, msg = p.decode(p.topic(p.TopicKind.NODE_JOB_NEXT, node="n1"), b"")
    assert parsed.kind is p.TopicKind.NODE_JOB_NEXT and msg is None


def test_qos_and_retain_follow_the_design():
    T, K = p.TOPICS, p.TopicKind
    assert T[K.NODE_STATE].retain and T[K.NODE_STATE].qos == 1
    assert T[K.NODE_JOB_NEXT].retain
    assert T[K.ENV_ACT].qos == 0 and not T[K.ENV_ACT].retain  # a late action is worse than none
    assert T[K.JOB_TELEMETRY].qos == 0
    assert all(spec.local for k, spec in T.items() if k.value.startswith("env_"))


# --- fuzzing: nothing but ProtocolError may ever escape -----------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10),
                                                                      children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.binary(max_size=400), cls=st.sampled_from(MESSAGE_TYPES))
def test_arbitrary_bytes_only_raise_protocol_error(data, cls):
    try:
        cls.from_bytes(data)
    except ProtocolError:
        pass


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(value=json_values, cls=st.sampled_from(MESSAGE_TYPES))
def test_arbitrary_json_only_raises_protocol_error(value, cls):
    try:
        payload = json.dumps(value).encode()
    except ValueError:
        return
    try:
        msg = cls.from_bytes(payload)
    except ProtocolError:
        return
    assert cls.from_bytes(msg.to_bytes()) == msg


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(msg=st.sampled_from(EXAMPLES), data=st.data())
def test_mutated_valid_messages_only_raise_protocol_error(msg, data):
    d = msg.to_dict()
    key = data.draw(st.sampled_from(sorted(d)))
    d[key] = data.draw(json_values)
    try:
        type(msg).from_bytes(json.dumps(d).encode())
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_topics_only_raise_protocol_error(name):
    try:
        p.parse_topic(name)
    except ProtocolError:
        pass


def test_deep_nesting_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        p.JobUpdate.from_bytes(b"[" * 200_000 + b"]" * 200_000)
