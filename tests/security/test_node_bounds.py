"""The motor node bounds everything a job can send, and forgets a job when its binding ends
(issue 10, item 2 "Jobs leave nothing behind"; finding "A job can poison the motor node for later
jobs"). The motor node alone on the session's node-local broker, driven by a probe; the same
attempts as real jobs, followed by the next job, are in test_node_poisoning.py.
"""

from __future__ import annotations

import math
import time
import uuid

import pytest

from fleet_node.motor.bounds import EPISODE_STEP_MAX, MAX_EPISODE_ID, SEQ_STEP_MAX
from gym_raas_mqtt.protocol import Action, JobBinding, ResetRequest, TopicKind
from tests.fleet_node.motor import motor_fixtures

pytestmark = pytest.mark.broker
# the motor tests' fixtures, reused (bound by assignment: test arguments shadow them)
local_admin, probe, start_node = (motor_fixtures.local_admin, motor_fixtures.probe,
                                  motor_fixtures.start_node)
K = TopicKind


def reset(probe, episode, initial=(math.pi, 0.0)):
    rid = uuid.uuid4().hex[:12]
    probe.publish(K.ENV_RESET, ResetRequest(rid, episode, time.time(), initial, 5.0))
    return probe.get(K.ENV_RESET_REPLY, where=lambda r: r.request_id == rid)


def test_episode_ids_move_forward_by_a_bounded_step_below_2_31(start_node, probe):
    node = start_node(lockstep=True)
    probe.subscribe(K.ENV_RESET_REPLY)
    huge = reset(probe, 2**53)
    assert not huge.ok and "more than 1000 ahead" in huge.error
    assert node.episode_id is None  # nothing changed
    assert not reset(probe, EPISODE_STEP_MAX + 1).ok
    assert reset(probe, EPISODE_STEP_MAX).ok  # the largest step allowed
    older = reset(probe, EPISODE_STEP_MAX - 1)
    assert not older.ok and "not newer" in older.error
    node.machine.episode_id = MAX_EPISODE_ID - 1  # as if a long run had got there
    assert reset(probe, MAX_EPISODE_ID).ok
    top = reset(probe, MAX_EPISODE_ID + 1)
    assert not top.ok and f"above {MAX_EPISODE_ID}" in top.error


def test_sequence_numbers_move_forward_by_a_bounded_step(start_node, probe):
    node = start_node(lockstep=True)
    probe.subscribe(K.ENV_RESET_REPLY, K.ENV_OBS)
    assert reset(probe, 1).ok
    probe.publish(K.ENV_ACT, Action(1, 1, 0.0))
    assert probe.get(K.ENV_OBS).seq == 1
    dropped = node.stats.dropped
    probe.publish(K.ENV_ACT, Action(1, 10**9, 2.0))  # a jump: dropped and counted
    probe.publish(K.ENV_ACT, Action(1, 2 + SEQ_STEP_MAX, 2.0))
    probe.publish(K.ENV_ACT, Action(1, 1 + SEQ_STEP_MAX, 0.5))  # the largest step allowed
    assert probe.get(K.ENV_OBS).seq == 1 + SEQ_STEP_MAX
    assert node.stats.dropped == dropped + 2


def test_start_state_must_be_finite_and_within_the_model(start_node, probe):
    node = start_node(lockstep=True)
    probe.subscribe(K.ENV_RESET_REPLY)
    fast = reset(probe, 1, (0.0, node.params.max_speed + 0.5))
    assert not fast.ok and "beyond the pendulum's max speed" in fast.error
    placed = reset(probe, 1, (0.5, -node.params.max_speed))  # simulation: placed exactly
    assert placed.ok and (placed.theta, placed.theta_dot) == (0.5, -node.params.max_speed)


def test_the_end_of_a_job_forgets_its_episodes(start_node, probe):
    node = start_node(lockstep=True)
    probe.subscribe(K.ENV_RESET_REPLY, K.ENV_MOTOR_STATE)
    probe.publish(K.ENV_JOB, JobBinding(time.time(), "job-a", "alice"), retain=True)
    probe.get(K.ENV_MOTOR_STATE, where=lambda m: m.job_id == "job-a")
    assert reset(probe, 500).ok
    probe.publish(K.ENV_JOB, JobBinding(time.time(), None), retain=True)
    st = probe.get(K.ENV_MOTOR_STATE, where=lambda m: m.job_id is None)
    assert st.episode_id is None and node.episode_id is None
    first = reset(probe, 1)  # the next job's first episode
    assert first.ok and first.episode_id == 1
    probe.client.publish(probe.topic(K.ENV_JOB), b"", qos=1, retain=True).wait_for_publish(5)


def test_retained_action_and_reset_are_ignored(start_node, probe, local_admin, uid, tmp_path):
    probe.subscribe(K.ENV_RESET_REPLY)
    probe.publish(K.ENV_RESET, ResetRequest("left", 3, time.time(), (0.0, 0.0), 5.0), retain=True)
    probe.publish(K.ENV_ACT, Action(3, 1, 2.0), retain=True)
    try:
        node = start_node(lockstep=True)  # subscribes: the broker delivers both, retained
        time.sleep(0.5)
        assert node.episode_id is None and node.motor.command == 0.0
        assert node.stats.dropped == 2
        with pytest.raises(AssertionError):
            probe.get(K.ENV_RESET_REPLY, timeout=0.5)
        assert reset(probe, 1).ok  # a live one is served
    finally:
        for kind in (K.ENV_RESET, K.ENV_ACT):
            probe.client.publish(probe.topic(kind), b"", qos=1, retain=True).wait_for_publish(5)
