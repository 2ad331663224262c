"""SimMotor: the model behind the Motor interface, exact by default, with optional sensor effects."""

import math
import threading

import pytest

from fleet_node.motor.base import Motor
from fleet_node.motor.sim_motor import SimMotor
from gym_raas_mqtt import physics
from gym_raas_mqtt.physics import DEFAULT_PARAMS


def test_implements_the_motor_protocol():
    assert isinstance(SimMotor(), Motor)


def test_read_advances_one_period_under_the_applied_command_exactly():
    m = SimMotor()
    m.set_state(0.3, -1.2)
    assert m.apply(0.7) == 0.7
    th, thd = physics.step(DEFAULT_PARAMS, 0.3, -1.2, 0.7)
    assert m.read() == (th, thd)
    assert m.read() == physics.step(DEFAULT_PARAMS, th, thd, 0.7)  # command is held


@pytest.mark.parametrize("desired, applied", [(5.0, 2.0), (-9.0, -2.0), (float("nan"), 0.0)])
def test_apply_clamps_and_never_passes_nan(desired, applied):
    m = SimMotor()
    assert m.apply(desired) == applied
    assert m.command == applied


def test_stop_zeroes_torque_from_another_thread():
    m = SimMotor()
    m.apply(2.0)
    t = threading.Thread(target=m.stop)
    t.start()
    t.join()
    assert m.command == 0.0


def test_quantisation_reports_encoder_counts_and_finite_difference_speed():
    p = DEFAULT_PARAMS.replace(counts_per_rev=400)
    m = SimMotor(p, quantize=True)
    m.set_state(1.0, 3.0)
    count = 2 * math.pi / 400
    theta, theta_dot = m.read()
    exact, _ = m.peek()
    assert theta != exact and abs(theta - exact) <= count / 2
    assert abs(theta / count - round(theta / count)) < 1e-9
    assert theta_dot == pytest.approx((theta - round(1.0 / count) * count) / p.dt)


def test_deadband_only_when_asked():
    p = DEFAULT_PARAMS.replace(deadband_low=-0.26, deadband_high=0.96)
    for deadband, moves in ((True, False), (False, True)):
        m = SimMotor(p, deadband=deadband)
        m.set_state(math.pi, 0.0)
        m.apply(0.5)
        assert (abs(m.read()[1]) > 1e-6) is moves


def test_model_may_differ_from_calibration_but_not_in_dt():
    true = DEFAULT_PARAMS.replace(action_gain=4.0)
    m = SimMotor(DEFAULT_PARAMS, model=true)
    m.set_state(math.pi, 0.0)
    m.apply(1.0)
    assert m.read() == physics.step(true, math.pi, 0.0, 1.0)
    assert m.params is DEFAULT_PARAMS
    with pytest.raises(ValueError):
        SimMotor(DEFAULT_PARAMS, model=true.replace(dt=0.01))
