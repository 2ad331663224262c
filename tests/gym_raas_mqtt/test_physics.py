"""Physics: steps against hand-computed values, reward, parameters and calibration files."""

import math

import pytest

from gym_raas_mqtt import physics
from gym_raas_mqtt.calibration import (
    DEFAULT_FILE, dump_calibration, load_calibration, params_from_mapping)
from gym_raas_mqtt.errors import ConfigError
from gym_raas_mqtt.physics import DEFAULT_PARAMS, PendulumParams


def test_step_matches_hand_computation():
    # θ = π/2, θ̇ = 1, u = 1: θ̈ = 27·1 + 8·1 − 2·1 = 33 → θ̇' = 1 + 33·0.05 = 2.65
    th, thd = physics.step(DEFAULT_PARAMS, math.pi / 2, 1.0, 1.0)
    assert thd == pytest.approx(2.65, abs=1e-12)
    assert th == pytest.approx(math.pi / 2 + 2.65 * 0.05, abs=1e-12)


def test_step_upright_is_an_unstable_equilibrium():
    assert physics.step(DEFAULT_PARAMS, 0.0, 0.0, 0.0) == (0.0, 0.0)
    th, thd = physics.step(DEFAULT_PARAMS, 0.01, 0.0, 0.0)
    assert thd > 0 and th > 0.01  # falls away from upright


def test_step_hanging_down_is_stable():
    th, thd = math.pi + 0.1, 0.0
    for _ in range(2000):
        th, thd = physics.step(DEFAULT_PARAMS, th, thd, 0.0)
    assert abs(physics.angle_normalize(th) + math.pi) % (2 * math.pi) < 1e-3 or \
        abs(abs(physics.angle_normalize(th)) - math.pi) < 1e-3
    assert abs(thd) < 1e-3


def test_velocity_is_clipped_after_the_position_update():
    # θ̈ = 27 sin(π/2) + 8·2 − 2·19.9 = 3.2 → θ̇ = 19.9 + 0.16 = 20.06: θ moves with 20.06, then clip
    th, thd = physics.step(DEFAULT_PARAMS, math.pi / 2, 19.9, 2.0)
    assert thd == 20.0
    assert th == pytest.approx(math.pi / 2 + 20.06 * 0.05, abs=1e-12)


def test_reward_formula_and_bounds():
    assert physics.reward(0.0, 0.0, 0.0) == 0.0
    assert physics.reward(1.0, 2.0, 2.0) == pytest.approx(-(1 + 0.4 + 0.004))
    # θ wraps: 2π + 0.5 is 0.5
    assert physics.reward(2 * math.pi + 0.5, 0, 0) == pytest.approx(-0.25)
    worst = physics.reward(math.pi - 1e-12, 20.0, 2.0)
    assert worst >= physics.MIN_REWARD - 1e-9
    assert physics.MIN_REWARD == pytest.approx(-49.8736, abs=1e-3)


@pytest.mark.parametrize("theta, expected", [(0.0, 0.0), (math.pi, -math.pi), (-math.pi, -math.pi),
                                             (3 * math.pi / 2, -math.pi / 2), (7.0, 7.0 - 2 * math.pi)])
def test_angle_normalize(theta, expected):
    assert physics.angle_normalize(theta) == pytest.approx(expected)


def test_deadband_and_friction_are_off_by_default_and_work_when_on():
    assert not DEFAULT_PARAMS.has_nonlinear_terms
    p = DEFAULT_PARAMS.replace(deadband_low=-0.26, deadband_high=0.96)
    # u = 0.5 is inside the dead-band: same as u = 0
    assert physics.step(p, 2.0, 0.3, 0.5) == physics.step(p, 2.0, 0.3, 0.0)
    assert physics.step(p, 2.0, 0.3, 1.0) != physics.step(p, 2.0, 0.3, 0.0)
    f = DEFAULT_PARAMS.replace(coulomb_friction=1.5)
    _, thd_f = physics.step(f, 2.0, 0.3, 0.0)
    _, thd = physics.step(DEFAULT_PARAMS, 2.0, 0.3, 0.0)
    assert thd_f == pytest.approx(thd - 1.5 * 0.05)


def test_params_validation():
    with pytest.raises(ValueError):
        PendulumParams(dt=0)
    with pytest.raises(ValueError):
        PendulumParams(deadband_low=1.0, deadband_high=0.0)


def test_default_calibration_file_is_the_original_model():
    p = load_calibration(DEFAULT_FILE)
    assert p == DEFAULT_PARAMS


def test_calibration_round_trip_and_override(tmp_path):
    p = DEFAULT_PARAMS.replace(gravity_coeff=26.4, counts_per_rev=480, calibration_id="pi-03-a")
    f = tmp_path / "cal.toml"
    f.write_text(dump_calibration(p, notes='bench "run" 3'))
    assert load_calibration(f) == p


@pytest.mark.parametrize("data, message", [
    ({"model": {}}, "'id'"),
    ({"id": "bad id"}, "'id'"),
    ({"id": "x", "model": {"gravity": 1.0}}, "unknown model parameter"),
    ({"id": "x", "model": {"dt": "fast"}}, "must be a number"),
    ({"id": "x", "model": {"counts_per_rev": 445.5}}, "integer"),
    ({"id": "x", "model": {"dt": -1.0}}, "positive"),
    ({"id": "x", "extra": 1}, "unknown top-level"),
])
def test_calibration_errors_are_clear(data, message):
    with pytest.raises(ConfigError, match=message):
        params_from_mapping(data)


def test_calibration_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_calibration(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("id = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_calibration(bad)
