"""The env contract, run against every backend: in-process simulation and the bus (a motor node in
lockstep on a real node-local Mosquitto). Same spaces, checks, determinism, reward, time limit."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from fleet_node.motor.config import MotorConfig
from fleet_node.motor.node import MotorNode
from gym_raas_mqtt import physics

ACTION_RANGE_ADVICE = r".*symmetric and normalized space"  # Box(-2, 2) is the original contract


@pytest.fixture(params=["sim", "bus"])
def make_env(request, tmp_path, uid, monkeypatch):
    """``make_env(**gym.make kwargs)`` for the parametrised backend; envs closed afterwards.

    The bus env is configured the way a job container is: ``RAAS_*`` variables and
    ``backend="bus"``, so envs re-made from the spec (check_env does) reach the same motor node.
    """
    node = None
    if request.param == "bus":
        lb = request.getfixturevalue("local_broker")
        admin = lb.unix_address(lb.admin.username, lb.admin.password)
        node = MotorNode(MotorConfig(node_id=uid, data_dir=tmp_path, lockstep=True),
                         address=admin).start()
        for name, value in (("RAAS_MQTT_URL", admin.url()), ("RAAS_NODE_ID", uid),
                            ("RAAS_MQTT_USERNAME", admin.username),
                            ("RAAS_MQTT_PASSWORD", admin.password)):
            monkeypatch.setenv(name, value)
    envs = []

    def make(**kw):
        env = gym.make("RaasPendulum-v0", backend=request.param, **kw)
        envs.append(env)
        return env

    make.backend = request.param
    yield make
    for env in envs:
        env.close()
    if node is not None:
        node.close()


def test_spaces(make_env):
    env = make_env()
    assert env.observation_space == gym.spaces.Box(
        np.array([-1, -1, -20], np.float32), np.array([1, 1, 20], np.float32), dtype=np.float32)
    assert env.action_space == gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    assert env.unwrapped.params.dt == 0.05
    obs, info = env.reset(seed=0)
    assert info["backend"] == make_env.backend
    assert obs in env.observation_space


def test_check_env(make_env):
    env = make_env()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=ACTION_RANGE_ADVICE)
        check_env(env.unwrapped, skip_render_check=True)


def test_seeded_rollouts_are_deterministic(make_env):
    def roll(env):
        obs, _ = env.reset(seed=123)
        env.action_space.seed(5)
        out = [obs]
        for _ in range(60):
            out.append(env.step(env.action_space.sample())[0])
        return np.array(out)

    a = roll(make_env())
    b = roll(make_env())
    assert np.array_equal(a, b)
    assert not np.array_equal(a[0], make_env().reset(seed=124)[0])  # the seed matters


def test_reward_formula_uses_the_state_before_the_step_and_the_clipped_action(make_env):
    env = make_env()
    env.reset(seed=3)
    for u in (3.0, -0.7, -9.0, 1.2):
        theta, theta_dot = env.unwrapped.state
        _, r, terminated, truncated, _ = env.step(np.array([u], np.float32))
        uc = float(np.clip(np.float32(u), -2, 2))
        th = (theta + math.pi) % (2 * math.pi) - math.pi
        assert r == pytest.approx(-(th**2 + 0.1 * theta_dot**2 + 0.001 * uc**2), abs=1e-12)
        assert r == physics.reward(theta, theta_dot, uc)
        assert not terminated and not truncated


def test_truncated_at_200_steps_never_terminated(make_env):
    env = make_env()
    env.reset(seed=9)
    for i in range(200):
        _, _, terminated, truncated, _ = env.step(np.array([0.3], np.float32))
        assert not terminated
        assert truncated == (i == 199)


def test_initial_state_options(make_env):
    env = make_env()
    obs, _ = env.reset(seed=1, options={"initial_state": (0.25, -1.5)})
    assert env.unwrapped.state == (0.25, -1.5)
    assert np.allclose(obs, [math.cos(0.25), math.sin(0.25), -1.5])
    obs, _ = env.reset(seed=1)
    assert obs[0] < -0.99  # hanging down
