"""The binary form of Action and Observation: round trips, every refusal, the JSON fallback."""

import json
import math
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gym_raas_mqtt import protocol as p
from gym_raas_mqtt.errors import ProtocolError

ACT = p.Action(episode_id=4, seq=10, action=-1.25)
OBS = p.Observation(episode_id=4, seq=10, theta=0.1, theta_dot=-0.2, u_applied=-1.25, t=0.5)
NODE = "pi-1"
T_ACT = p.topic(p.TopicKind.ENV_ACT, node=NODE)
T_OBS = p.topic(p.TopicKind.ENV_OBS, node=NODE)
A, O = p.ACTION_CONTENT_TYPE, p.OBSERVATION_CONTENT_TYPE

observations = st.builds(
    p.Observation, episode_id=st.integers(-2**53, 2**53), seq=st.integers(-2**53, 2**53),
    theta=st.floats(allow_nan=False, allow_infinity=False),
    theta_dot=st.floats(allow_nan=False, allow_infinity=False),
    u_applied=st.floats(allow_nan=False, allow_infinity=False),
    t=st.floats(allow_nan=False, allow_infinity=False), deadline_miss=st.booleans(),
    fault=st.none() | st.text(max_size=40))


def test_layout_is_the_documented_one():
    assert p.encode_action(ACT) == struct.pack("<BBqqd", 0xA1, 0, 4, 10, -1.25)
    assert len(p.encode_action(ACT)) == 26
    assert p.encode_observation(OBS) == struct.pack("<BBqqddddH", 0xB1, 0, 4, 10, 0.1, -0.2,
                                                    -1.25, 0.5, 0)
    missed = p.Observation(4, 10, 0.1, -0.2, -1.25, 0.5, deadline_miss=True, fault="over-speed")
    assert p.encode_observation(missed) == struct.pack(
        "<BBqqddddH", 0xB1, 3, 4, 10, 0.1, -0.2, -1.25, 0.5, 10) + b"over-speed"
    assert p.pack_action(4, 10, -1.25) == p.encode_action(ACT)


@pytest.mark.parametrize("msg", [
    ACT, p.Action(-(2**53), 2**53, 1e-308), p.Action(0, 0, -0.0),
    OBS, p.Observation(1, 2, math.pi, -1e300, 2.0, 1e9, deadline_miss=True),
    p.Observation(1, 2, 3.0, 0.0, 0.0, 0.05, fault="self-test failed: pendulum stuck ü"),
    p.Observation(1, 2, 3.0, 0.0, 0.0, 0.05, fault=""),
    p.Observation(1, 2, 1e308, 1e308, 0.0, 0.0),  # a finite sum that overflows is still valid
], ids=repr)
def test_round_trip_is_exact(msg):
    encode, decode = (p.encode_action, p.decode_action) if isinstance(msg, p.Action) else (
        p.encode_observation, p.decode_observation)
    payload = encode(msg)
    back = decode(payload)
    assert back == msg and type(back) is type(msg)
    assert [type(getattr(back, f)) for f in vars(msg)] == [type(getattr(msg, f)) for f in vars(msg)]
    assert decode(bytearray(payload)) == decode(memoryview(payload)) == msg
    with pytest.raises(Exception, match="cannot assign"):
        back.seq = 11  # still frozen
    assert p.decode(T_ACT if isinstance(msg, p.Action) else T_OBS, payload,
                    A if isinstance(msg, p.Action) else O)[1] == msg


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(obs=observations)
def test_any_valid_observation_round_trips(obs):
    assert p.decode_observation(p.encode_observation(obs)) == obs


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.binary(max_size=120), cls=st.sampled_from([p.Action, p.Observation]))
def test_arbitrary_bytes_only_raise_protocol_error(data, cls):
    try:
        msg = p.from_payload(cls, data, A if cls is p.Action else O)
    except ProtocolError:
        return
    assert p.BINARY_FORMS[cls][1](msg) == data  # what is accepted is exactly what encodes to it


@pytest.mark.parametrize("payload, error", [
    (b"", "Action: binary payload of 0 bytes, expected 26"),
    (p.encode_action(ACT)[:-1], "of 25 bytes, expected 26"),
    (p.encode_action(ACT) + b"\0", "of 27 bytes, expected 26"),
    (b"\xa2" + p.encode_action(ACT)[1:], r"magic/version byte 0xA2, expected 0xA1"),
    (p.encode_observation(OBS)[:26], "magic/version byte 0xB1, expected 0xA1"),
    (b"\xa1\x01" + p.encode_action(ACT)[2:], "reserved flags 0x01 set"),
    (struct.pack("<BBqqd", 0xA1, 0, 2**53 + 1, 1, 0.0), r"Action.episode_id: integer out of range"),
    (struct.pack("<BBqqd", 0xA1, 0, 1, -(2**53) - 1, 0.0), r"Action.seq: integer out of range"),
    (struct.pack("<BBqqd", 0xA1, 0, 1, 1, math.nan), r"Action.action: non-finite number"),
    (struct.pack("<BBqqd", 0xA1, 0, 1, 1, -math.inf), r"Action.action: non-finite number"),
])
def test_binary_action_refusals(payload, error):
    with pytest.raises(ProtocolError, match=error):
        p.decode_action(payload)
    with pytest.raises(ProtocolError, match=error):
        p.decode(T_ACT, payload, A) if payload else p.decode_action(payload)


def _obs(flags=0, ep=1, seq=1, values=(0.0, 0.0, 0.0, 0.0), fault_len=0, magic=0xB1):
    return struct.pack("<BBqqddddH", magic, flags, ep, seq, *values, fault_len)


@pytest.mark.parametrize("payload, error", [
    (b"", "Observation: binary payload of 0 bytes, expected 52"),
    (_obs()[:51], "of 51 bytes, expected 52"),
    (_obs() + b"x", "of 53 bytes, expected 52"),
    (_obs(flags=2, fault_len=5) + b"abc", "of 55 bytes, expected 57"),
    (_obs(magic=0xB2), "magic/version byte 0xB2, expected 0xB1"),
    (_obs(magic=ord("{")), "magic/version byte 0x7B, expected 0xB1"),
    (_obs(flags=4), "unknown flags 0x04 set"),
    (_obs(flags=0x81), "unknown flags 0x81 set"),
    (_obs(fault_len=3) + b"abc", "fault text without the fault flag"),
    (_obs(flags=2, fault_len=2) + b"\xff\xfe", r"Observation.fault: not valid UTF-8"),
    (_obs(ep=2**53 + 1), r"Observation.episode_id: integer out of range"),
    (_obs(seq=-(2**53) - 1), r"Observation.seq: integer out of range"),
    (_obs(values=(math.nan, 0.0, 0.0, 0.0)), r"Observation.theta: non-finite number"),
    (_obs(values=(0.0, math.inf, 0.0, 0.0)), r"Observation.theta_dot: non-finite number"),
    (_obs(values=(0.0, 0.0, -math.inf, 0.0)), r"Observation.u_applied: non-finite number"),
    (_obs(values=(0.0, 0.0, 0.0, math.nan)), r"Observation.t: non-finite number"),
    (_obs(values=(math.inf, -math.inf, 0.0, 0.0)), r"Observation.theta: non-finite number"),
])
def test_binary_observation_refusals(payload, error):
    with pytest.raises(ProtocolError, match=error):
        p.decode_observation(payload)


def test_the_same_fault_gives_the_same_error_as_json():
    # JSON itself cannot spell ±inf except as 1e999, which json.loads reads as inf
    too_big = b'{"episode_id":1,"seq":1,"theta":1e999,"theta_dot":0,"u_applied":0,"t":0}'
    for json_payload, binary_payload in [
        (too_big, _obs(values=(math.inf, 0.0, 0.0, 0.0))),
        (b'{"episode_id":1,"seq":1152921504606846976,"theta":0,"theta_dot":0,"u_applied":0,'
         b'"t":0}', _obs(seq=2**60)),
    ]:
        with pytest.raises(ProtocolError) as json_error:
            p.Observation.from_bytes(json_payload)
        with pytest.raises(ProtocolError) as binary_error:
            p.decode_observation(binary_payload)
        assert str(binary_error.value) == str(json_error.value)


def test_encoders_refuse_what_the_layout_cannot_carry():
    with pytest.raises(ProtocolError, match="Action.action: non-finite number"):
        p.pack_action(1, 1, math.nan)
    with pytest.raises(ProtocolError, match="Action.seq: integer out of range"):
        p.encode_action(p.Action(1, 2**53 + 1, 0.0))
    with pytest.raises(ProtocolError, match="Observation.t: non-finite number"):
        p.encode_observation(p.Observation(1, 1, 0.0, 0.0, 0.0, math.inf))
    with pytest.raises(ProtocolError, match="Observation.fault: longer than 65535 bytes"):
        p.encode_observation(p.Observation(1, 1, 0.0, 0.0, 0.0, 0.0, fault="x" * 65536))


@pytest.mark.parametrize("content_type", [None, "", p.JSON_CONTENT_TYPE])
def test_json_is_still_accepted_without_a_binary_content_type(content_type):
    assert p.decode(T_ACT, ACT.to_bytes(), content_type)[1] == ACT
    assert p.decode(T_OBS, OBS.to_bytes(), content_type)[1] == OBS
    assert p.from_payload(p.Observation, OBS.to_bytes(), content_type) == OBS
    reset = p.ResetRequest(request_id="r1", episode_id=2, ts=1.0)
    assert p.decode(p.topic(p.TopicKind.ENV_RESET, node=NODE), reset.to_bytes(),
                    content_type)[1] == reset
    with pytest.raises(ProtocolError, match="not valid JSON"):  # binary without its type
        p.decode(T_OBS, p.encode_observation(OBS), content_type)


@pytest.mark.parametrize("topic_, payload, content_type, error", [
    (T_ACT, p.encode_observation(OBS), O, "Action: content type "
     "'application/vnd.raas.observation.v1' does not match \\(expected "
     "application/vnd.raas.action.v1 or application/json\\)"),
    (T_OBS, p.encode_action(ACT), A, "Observation: content type 'application/vnd.raas.action.v1'"),
    (T_OBS, OBS.to_bytes(), "text/plain", "Observation: content type 'text/plain' does not match"),
    (T_OBS, OBS.to_bytes(), O, "magic/version byte 0x7B"),  # JSON under the binary type
    (p.topic(p.TopicKind.ENV_RESET, node=NODE), p.ResetRequest("r1").to_bytes(), A,
     r"ResetRequest: content type .* \(expected application/json\)"),
])
def test_content_type_mismatch_is_refused(topic_, payload, content_type, error):
    with pytest.raises(ProtocolError, match=error):
        p.decode(topic_, payload, content_type)


def test_binary_forms_are_documented():
    rows = p.describe_forms()
    assert [(r["payload"], r["content type"]) for r in rows] == [("Action", A), ("Observation", O)]
    assert json.dumps(rows)  # plain strings for `raas protocol`
