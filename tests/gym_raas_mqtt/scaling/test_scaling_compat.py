"""FleetScalingCompat-v0 against gym-scaling's rules, written out independently here, and its baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gym_raas_mqtt.scaling.compat import GymScalingEnv
from gym_raas_mqtt.scaling.policies import BUILTIN_POLICIES


def reference_rollout(influxes, actions):
    """gym-scaling's step as specified: process with the current instances, then apply the
    action chosen one step earlier (out of [2, 100] → −0.1 and no change); reward
    −(1 − load)·n/100 − q/(1 + q); done when the queue exceeds 10 × 4350."""
    n, queue, pending = 50, 0, 0
    out = []
    for influx, action in zip(influxes, actions):
        total = influx + queue
        capacity = n * 87
        processed = min(total, capacity)
        load = math.ceil(processed / capacity * 100)
        queue = total - processed
        applied, pending = pending, action - 1
        penalty = 0.0
        if 2 <= n + applied <= 100:
            n += applied
        else:
            penalty = -0.1
        reward = -(1 - load / 100) * n / 100 - queue / (1 + queue) + penalty
        out.append((n, load, queue, reward, queue > 43500))
    return out


def actions_with_bounds_and_overflow(steps, seed):
    rng = np.random.default_rng(seed)
    down = [0] * 60  # to the 2-instance floor (penalties), then the queue overflows
    return down + list(rng.integers(0, 3, steps - len(down)))


@pytest.mark.parametrize(("kind", "change_rate"), [("sine", 1), ("sine", 7), ("random", 100),
                                                   ("random", 10000)])
def test_dynamics_and_reward_match_gym_scaling(kind, change_rate):
    env = GymScalingEnv(input=kind, change_rate=change_rate)
    env.reset(seed=5)
    actions = actions_with_bounds_and_overflow(400, 1)
    got, influxes = [], []
    for step, action in enumerate(actions, start=1):
        _, reward, terminated, _, info = env.step(action)
        influxes.append(info["influx"])
        n = round(info["gym_scaling_observation"][0] * 100)
        got.append((n, info["load"], round(info["gym_scaling_observation"][4]), reward, terminated))
        if kind == "sine" and step % change_rate == 0:
            assert info["influx"] == math.ceil((math.sin(step * 0.01) + 1) * 4350 / 2)
        if terminated:
            break
    want = reference_rollout(influxes, actions)
    for g, w in zip(got, want):
        assert g[:3] == w[:3] and g[3] == pytest.approx(w[3], abs=1e-12) and g[4] == w[4]
    assert got[-1][4], "the all-down start must overflow the queue"
    if kind == "sine":  # a high random influx overflows the queue before the floor is reached
        assert any(r[3] < -1.05 for r in got), "the out-of-bounds penalty must show"
    changes = [i + 1 for i in range(1, len(influxes)) if influxes[i] != influxes[i - 1]]
    assert all(step % change_rate == 0 for step in changes)
    if kind == "random":
        assert all(500 <= x <= 4350 for x in influxes)


def test_cost_is_linear_in_instance_hours():
    env = GymScalingEnv(input="random", change_rate=10000)
    env.reset(seed=0)
    for _ in range(1200):  # 100 h of a constant 50 instances
        _, _, _, _, info = env.step(1)
    assert info["total_cost"] == pytest.approx(50 * 0.192 * 100)  # not quadratic, not 87 $/h


def test_every_baseline_runs_and_beats_nothing_worse_than_the_floor():
    for name, cls in BUILTIN_POLICIES.items():
        env = GymScalingEnv(input="sine", change_rate=1)
        policy = cls(env.action_spec)
        obs, _ = env.reset(seed=0)
        rewards = []
        for _ in range(2000):
            obs, reward, terminated, _, _ = env.step(policy.decide(obs))
            rewards.append(reward)
            assert not terminated, name
        assert -1.0 < np.mean(rewards) < 0.0, name


@pytest.mark.parametrize("bad", [{"input": "PRODUCTION_DATA"}, {"change_rate": 0},
                                 {"offset": 5000}, {"min_instances": 0},
                                 {"render_mode": "human"}])
def test_bad_arguments_are_refused(bad):
    with pytest.raises(ValueError):
        GymScalingEnv(**bad)
    env = GymScalingEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be 0, 1 or 2"):
        env.step(3)
