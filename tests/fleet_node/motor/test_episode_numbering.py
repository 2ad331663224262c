"""Episodes are numbered per job from 1 (issue 14, item 9): whatever the motor node served before
a job's binding, the job's first reset is episode 1, in its replies, observations and telemetry."""

from __future__ import annotations

import math
import time
import uuid

import pytest

from fleet_node.motor.telemetry import read_telemetry, telemetry_path
from gym_raas_mqtt.protocol import Action, JobBinding, ResetRequest, TopicKind
from tests.fleet_node.motor import motor_fixtures

pytestmark = pytest.mark.broker
local_admin, probe, start_node = (motor_fixtures.local_admin, motor_fixtures.probe,
                                  motor_fixtures.start_node)
K = TopicKind


def reset(probe, episode):
    rid = uuid.uuid4().hex[:12]
    probe.publish(K.ENV_RESET, ResetRequest(rid, episode, time.time(), (math.pi, 0.0), 5.0))
    return probe.get(K.ENV_RESET_REPLY, where=lambda r: r.request_id == rid)


def test_a_binding_restarts_episode_numbers_at_one(start_node, probe, tmp_path):
    node = start_node(lockstep=True)
    probe.subscribe(K.ENV_RESET_REPLY, K.ENV_MOTOR_STATE, K.ENV_OBS)
    assert reset(probe, 3).ok  # unbound use (a bench test, an earlier session) left episode 3
    probe.publish(K.ENV_JOB, JobBinding(time.time(), "job-b", "alice"), retain=True)
    st = probe.get(K.ENV_MOTOR_STATE, where=lambda m: m.job_id == "job-b")
    try:
        assert st.episode_id is None and node.episode_id is None
        first = reset(probe, 1)
        assert first.ok and first.episode_id == 1
        probe.publish(K.ENV_ACT, Action(1, 1, 0.5))
        assert probe.get(K.ENV_OBS).episode_id == 1
    finally:
        probe.publish(K.ENV_JOB, JobBinding(time.time(), None), retain=True)
        probe.get(K.ENV_MOTOR_STATE, where=lambda m: m.job_id is None)
        probe.client.publish(probe.topic(K.ENV_JOB), b"", qos=1, retain=True).wait_for_publish(5)
    rows = read_telemetry(telemetry_path(tmp_path, "job-b"))
    assert list(rows["episode_id"]) == [1]
