"""The env's ``info`` has the same keys in simulation and on a (simulated) node, and episodes are
numbered from 1 in both (issue 14, item 9: code reading ``info["deadline_miss"]`` runs in both);
the platform counts upright time as the controller does."""

from __future__ import annotations

import math
import time

import gymnasium as gym
import numpy as np
import pytest

from fleet_node.motor.config import MotorConfig
from fleet_node.motor.node import MotorNode
from gym_raas_mqtt.backends import RESET_INFO_KEYS, STEP_INFO_KEYS
from fleet_node.motor.telemetry import telemetry_path
from gym_raas_mqtt.backends.bus import BusBackend, BusConfig
from gym_raas_mqtt.mqtt import connect, make_client
from gym_raas_mqtt.physics import DEFAULT_PARAMS
from gym_raas_mqtt.protocol import JobBinding, TopicKind, topic
from gym_raas_mqtt.results import UPRIGHT_RAD, read_telemetry_csv, summarize_telemetry


def rollout(env, episodes=2, steps=5):
    """(reset infos, step infos) of a few short episodes."""
    resets, steps_ = [], []
    for seed in range(episodes):
        _, info = env.reset(seed=seed)
        resets.append(info)
        for _ in range(steps):
            *_, info = env.step(np.array([0.5], np.float32))
            steps_.append(info)
    return resets, steps_


def test_simulation_fills_every_info_key():
    env = gym.make("RaasPendulum-v0", backend="sim")
    resets, steps = rollout(env)
    assert [set(i) for i in resets] == [set(RESET_INFO_KEYS)] * 2
    assert [i["episode_id"] for i in resets] == [1, 2]
    assert all(set(i) == set(STEP_INFO_KEYS) for i in steps)
    assert all(i["deadline_miss"] is False and i["fault"] is None for i in steps)
    assert [i["t"] for i in steps[:5]] == [k * env.unwrapped.params.dt for k in range(1, 6)]
    assert all(i["u_applied"] == 0.5 for i in steps)


@pytest.mark.broker
def test_sim_and_node_infos_have_the_same_keys_and_episode_numbers(local_broker, uid, tmp_path):
    admin = local_broker.unix_address(local_broker.admin.username, local_broker.admin.password)
    node = MotorNode(MotorConfig(node_id=uid, data_dir=tmp_path, lockstep=True),
                     address=admin).start()
    try:
        config = BusConfig(mqtt_url=admin.url(), node_id=uid, username=admin.username,
                           password=admin.password)
        bus = gym.make("RaasPendulum-v0", backend=BusBackend(config))
        sim = gym.make("RaasPendulum-v0", backend="sim")
        sim_resets, sim_steps = rollout(sim)
        bus_resets, bus_steps = rollout(bus)
        bus.close()
    finally:
        node.close()
    assert [set(i) for i in bus_resets] == [set(i) for i in sim_resets]
    assert [set(i) for i in bus_steps] == [set(i) for i in sim_steps]
    assert [i["episode_id"] for i in bus_resets] == [i["episode_id"] for i in sim_resets] == [1, 2]
    assert [i["t"] for i in bus_steps] == [i["t"] for i in sim_steps]  # lockstep: same clock
    assert [i["fault"] for i in bus_steps] == [None] * len(bus_steps)


def pd(obs) -> float:
    """Balance near upright (θ from the observation)."""
    theta = math.atan2(float(obs[1]), float(obs[0]))
    return max(-2.0, min(2.0, -(12.0 * theta + 2.5 * float(obs[2]))))


@pytest.mark.broker
def test_the_platforms_upright_time_is_the_controllers(local_broker, uid, tmp_path):
    """Counted from the observation after each step, as the controller counts (not one sample
    early), and a round number of control periods (no 2.000002 s)."""
    admin = local_broker.unix_address(local_broker.admin.username, local_broker.admin.password)
    node = MotorNode(MotorConfig(node_id=uid, data_dir=tmp_path, lockstep=True),
                     address=admin).start()
    binding = topic(TopicKind.ENV_JOB, node=uid)
    pub = make_client(admin, f"bind-{uid}")
    connect(pub, 5)
    pub.loop_start()
    try:
        pub.publish(binding, JobBinding(time.time(), "job-up", "alice").to_bytes(), qos=1,
                    retain=True).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while node.machine.motor_state.job_id != "job-up" and time.monotonic() < deadline:
            time.sleep(0.02)
        env = gym.make("RaasPendulum-v0", backend=BusBackend(BusConfig(
            mqtt_url=admin.url(), node_id=uid, username=admin.username, password=admin.password)))
        obs, _ = env.reset(options={"initial_state": (0.35, 0.0)})  # not upright at first
        run = best = 0
        for _ in range(40):
            obs, *_ = env.step(np.array([pd(obs)], np.float32))
            run = run + 1 if abs(math.atan2(float(obs[1]), float(obs[0]))) < UPRIGHT_RAD else 0
            best = max(best, run)
        env.close()
        pub.publish(binding, JobBinding(time.time(), None).to_bytes(), qos=1,
                    retain=True).wait_for_publish(5)
        while node.machine.motor_state.job_id is not None and time.monotonic() < deadline + 5:
            time.sleep(0.02)
    finally:
        pub.publish(binding, b"", qos=1, retain=True).wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()
        node.close()
    summary = summarize_telemetry(read_telemetry_csv(telemetry_path(tmp_path, "job-up")))
    assert best == 38  # the controller saw 38 upright observations (the last one included): 1.9 s
    assert summary["seconds_upright"] == 1.9 == round(best * DEFAULT_PARAMS.dt, 3)
    assert summary["per_episode"][0]["seconds_upright"] == 1.9
