"""Closed-loop reset and self-test procedures, driven by a simulated clock."""

import math

from fleet_node.motor.procedures import SettleLimits, selftest, settle
from fleet_node.motor.sim_motor import SimMotor
from gym_raas_mqtt.physics import DEFAULT_PARAMS


def drive(proc, motor, dt):
    """Feed a procedure one period at a time; return (result, periods)."""
    u, t, n = next(proc), 0.0, 0
    while True:
        motor.apply(u)
        th, thd = motor.read()
        t += dt
        n += 1
        try:
            u = proc.send((th, thd, t))
        except StopIteration as e:
            return e.value, n


def test_settle_waits_until_still_for_half_a_second():
    m = SimMotor()
    m.set_state(math.pi + 0.5, 0.0)
    res, n = drive(settle(SettleLimits(), 30.0), m, 0.05)
    assert res.ok and res.error is None
    assert abs(res.theta - math.pi) < math.radians(2) and abs(res.theta_dot) < 0.05
    assert 2.0 < res.duration_s < 30.0


def test_settle_times_out_on_an_undamped_pendulum():
    m = SimMotor(DEFAULT_PARAMS.replace(damping=0.0))
    m.set_state(math.pi + 0.5, 0.0)
    res, n = drive(settle(SettleLimits(), 2.0), m, 0.05)
    assert not res.ok and "timed out after 2 s" in res.error
    assert n == 41


def test_selftest_passes_on_a_matching_model_and_fails_on_a_wrong_calibration():
    m = SimMotor()
    m.set_state(math.pi, 0.0)
    ok, _ = drive(selftest(DEFAULT_PARAMS, SettleLimits(), 30.0, 0.25), m, 0.05)
    assert ok["ok"] and ok["max_error_rad"] == 0.0 and ok["samples"] == 20
    wrong = SimMotor(DEFAULT_PARAMS, model=DEFAULT_PARAMS.replace(action_gain=3.0))
    wrong.set_state(math.pi, 0.0)
    bad, _ = drive(selftest(DEFAULT_PARAMS, SettleLimits(), 30.0, 0.25), wrong, 0.05)
    assert not bad["ok"] and bad["max_error_rad"] > 0.25 and "differs" in bad["error"]
