"""FleetScaling-v0 and FleetScalingCompat-v0: Gymnasium's checker, determinism, dynamics, render."""

from __future__ import annotations

import doctest
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import gym_raas_mqtt  # noqa: F401  (registers the ids)
from gym_raas_mqtt.scaling import compat, erlang, observation
from gym_raas_mqtt.scaling import env as env_module
from gym_raas_mqtt.scaling.actions import ActionSpec, target_online
from gym_raas_mqtt.scaling.env import FleetScalingEnv
from gym_raas_mqtt.scaling.observation import FleetSnapshot, decode, observe

CASES = [("FleetScaling-v0", {}),
         ("FleetScaling-v0", {"action_mode": "target", "arrivals": "sine",
                              "failure_rate_per_h": 0.5, "durations": "lognormal"}),
         ("FleetScalingCompat-v0", {}),
         ("FleetScalingCompat-v0", {"input": "sine", "change_rate": 1})]


@pytest.mark.parametrize(("env_id", "kwargs"), CASES)
def test_check_env_is_clean(env_id, kwargs):
    env = gym.make(env_id, render_mode="rgb_array", **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    env.reset(seed=0)
    for _ in range(5):
        env.step(env.action_space.sample())
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3


@pytest.mark.parametrize(("env_id", "kwargs"), CASES)
def test_seeded_rollouts_are_deterministic(env_id, kwargs):
    def roll():
        env = gym.make(env_id, **kwargs)
        obs, _ = env.reset(seed=7)
        env.action_space.seed(3)
        out, rewards = [obs], []
        for _ in range(300):
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            out.append(obs)
            rewards.append(reward)
            if terminated or truncated:
                obs, _ = env.reset()
        return np.array(out), np.array(rewards)

    (o1, r1), (o2, r2) = roll(), roll()
    assert np.array_equal(o1, o2) and np.array_equal(r1, r2)


def test_time_limit_and_registration():
    env = gym.make("FleetScaling-v0")
    assert env.spec.max_episode_steps == 1440
    env.reset(seed=0)
    truncated = False
    for _ in range(1440):
        _, _, terminated, truncated, _ = env.step(1)
        assert not terminated
    assert truncated


@pytest.mark.parametrize("module", [env_module, compat, erlang])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_actions_are_clipped_and_checked():
    delta = ActionSpec("delta", 2, 10, 1)
    assert delta.n_actions == 5 and target_online(4, 9, delta) == 10
    assert target_online(0, 2, delta) == 1 and target_online(2, 5, delta) == 5
    target = ActionSpec("target", 1, 6, 2)
    assert target.n_actions == 7 and target_online(0, 5, target) == 2
    assert target.action_for(9, 3) == 6 and delta.action_for(0, 8) == 0
    with pytest.raises(ValueError, match="action must be in 0..4"):
        target_online(5, 3, delta)
    with pytest.raises(ValueError):
        ActionSpec("up", 1, 10)
    with pytest.raises(ValueError):
        ActionSpec("delta", 0, 10)


def test_observation_round_trip():
    snap = FleetSnapshot(queued=12, idle=1, busy=5, booting=2, standby=2, max_stations=10,
                         arrivals_last_hour=36.0, mean_wait_s=450.0, time_of_day_s=21600.0,
                         slo_wait_s=300.0, mean_duration_s=600.0)
    obs = observe(snap)
    assert obs.dtype == np.float32 and obs.shape == (len(observation.OBSERVATION_FIELDS),)
    d = decode(obs, 10)
    assert d.online == pytest.approx(6) and d.busy == pytest.approx(5)
    assert d.booting == pytest.approx(2) and d.queued == pytest.approx(12, rel=1e-5)
    assert d.offered_load == pytest.approx(6.0, rel=1e-5)
    assert d.wait_over_slo == pytest.approx(1.5, rel=1e-5)
    assert obs[7] == pytest.approx(1.0) and obs[8] == pytest.approx(0.0, abs=1e-6)  # 06:00
    odd = FleetSnapshot(queued=5, idle=-1, busy=20, booting=0, standby=0, max_stations=10,
                        arrivals_last_hour=float("inf"), mean_wait_s=float("nan"),
                        time_of_day_s=-5.0, slo_wait_s=0.0, mean_duration_s=600.0)
    assert observe(odd) in FleetScalingEnv().observation_space  # a dispatcher's odd counts


def test_scaling_up_waits_for_the_boot_and_down_cancels_boots_first():
    env = FleetScalingEnv(max_stations=4, stations=1, boot_s=150, reset_s=20, selftest_s=10,
                          dt_s=60, arrival_rate_per_h=1e-3, step_k=2)
    env.reset(seed=0)
    obs, *_ = env.step(4)  # +2: two stations wake for 180 s
    s = env.snapshot()
    assert (s.online, s.booting, s.standby) == (1, 2, 1)
    assert obs[2] == pytest.approx(0.5)
    obs, *_ = env.step(1)  # −1: one boot canceled, not the idle station
    s = env.snapshot()
    assert (s.online, s.booting, s.standby) == (1, 1, 2)
    env.step(2)
    s = env.snapshot()
    assert (s.online, s.booting) == (2, 0)  # woke after 180 s


def test_busy_stations_drain_and_failed_jobs_are_requeued():
    env = FleetScalingEnv(max_stations=3, stations=3, boot_s=0, reset_s=0, selftest_s=0,
                          durations="constant", mean_duration_s=3600, arrival_rate_per_h=300,
                          dt_s=60, action_mode="target")
    env.reset(seed=1)
    for _ in range(5):
        env.step(3)
    assert env.snapshot().busy == 3
    env.step(1)  # two busy stations drain: still busy, not committed
    assert env.snapshot().busy == 3 and env.sim.committed == 1
    for _ in range(60):
        env.step(1)
    s = env.snapshot()
    assert s.online == 1 and s.standby == 2  # the drained ones went to standby after their job
    failing = FleetScalingEnv(max_stations=2, stations=2, failure_rate_per_h=6.0, repair_s=60,
                              durations="constant", mean_duration_s=1800, arrival_rate_per_h=4)
    failing.reset(seed=2)
    started = arrived = 0
    for _ in range(1440):
        _, _, _, _, info = failing.step(1)
        started += len(info["waits_s"])
        arrived += info["arrivals"]
    assert info["failures"] > 50
    # jobs on a failing station go back to the queue and start again
    assert arrived < started <= arrived + info["failures"]


def test_reward_counts_cost_and_overdue_waits():
    env = FleetScalingEnv(max_stations=2, stations=2, boot_s=0, reset_s=0, selftest_s=0,
                          durations="constant", mean_duration_s=1e6, arrival_rate_per_h=360,
                          slo_wait_s=150, dt_s=60, standby_cost_per_h=0.0, wait_weight=1.0)
    env.reset(seed=0)
    rewards = []
    for k in range(30):
        t0, t1 = 60.0 * k, 60.0 * (k + 1)
        rewards.append(env.step(1)[1])
        # both stations stay busy: every queued job is overdue from arrival + SLO on
        overdue = sum(max(0.0, t1 - max(t0, arrival + 150)) for arrival, _ in env.sim.queue)
        assert rewards[-1] == pytest.approx(-1.0 - overdue / (2 * 60))
    assert rewards[-1] < -10  # ~6 more overdue jobs a minute: the penalty grows without bound


@pytest.mark.parametrize("bad", [{"max_stations": 0}, {"stations": 11}, {"stations": 2.5},
                                 {"max_stations": "10"}, {"dt_s": 0}, {"max_queue": 0},
                                 {"arrivals": "bursty"}, {"durations": "pareto"},
                                 {"boot_s": -1}, {"arrival_rate_per_h": float("nan")},
                                 {"arrivals": "trace"}, {"render_mode": "human"}])
def test_bad_arguments_are_refused(bad):
    with pytest.raises(ValueError):
        FleetScalingEnv(**bad)
