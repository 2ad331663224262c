"""PigpioMotor against the emulated pendulum (fake pigpio): drive, decoding, zeroing, physics."""

from __future__ import annotations

import math
import threading

import pytest

from fake_pigpio import FakePi
from fleet_node.motor.base import Motor
from fleet_node.motor.pigpio_motor import PigpioConfig, PigpioMotor, PigpioUnavailable
from gym_raas_mqtt import physics
from gym_raas_mqtt.errors import ConfigError, MotorFault
from gym_raas_mqtt.physics import DEFAULT_PARAMS

P = DEFAULT_PARAMS
COUNT = 2 * math.pi / P.counts_per_rev  # one encoder count [rad]
CFG = PigpioConfig()


def make(pi=None, **cfg):
    pi = pi or FakePi(P)
    return pi, PigpioMotor(P, pi=pi, config=PigpioConfig(**cfg) if cfg else CFG)


def test_is_a_motor_and_starts_safe():
    pi, m = make()
    assert isinstance(m, Motor) and m.name == "pigpio"
    assert pi.modes[13] == pi.modes[19] == 1 and pi.levels[13] == pi.levels[19] == 0
    assert pi.glitch_us[15] == pi.glitch_us[14] == CFG.glitch_filter_us
    assert pi.watchdog_ms[15] == 100
    assert m.read() == (math.pi, 0.0)
    assert m.set_state(0.0, 0.0) is False


@pytest.mark.parametrize("u, pin, duty", [(1.0, 13, 250_000), (2.0, 13, 500_000),
                                          (-0.5, 19, 125_000), (-2.0, 19, 500_000)])
def test_pwm_mapping(u, pin, duty):
    """250·u per 1000 on pigpio's 0..1e6 duty scale: |u| = 2 is 50 %."""
    pi, m = make()
    assert m.apply(u) == u
    assert pi.commands[-1] == ("hardware_PWM", pin, 20_000, duty)
    assert pi.torque_u() == pytest.approx(u)


@pytest.mark.parametrize("desired, applied", [(5.0, 2.0), (-7.5, -2.0), (float("nan"), 0.0),
                                              (float("inf"), 0.0), (0.0, 0.0)])
def test_clamping(desired, applied):
    pi, m = make()
    assert m.apply(desired) == applied
    assert pi.torque_u() == pytest.approx(applied)


def test_reversal_takes_the_idle_input_off_the_shared_pwm_channel():
    pi, m = make()
    m.apply(1.5)
    m.apply(-1.0)
    # GPIO 13 and 19 share PWM channel 1: 13 must be a plain low output before 19 gets the PWM
    assert pi.commands[-2:] == [("write", 13, 0), ("hardware_PWM", 19, 20_000, 250_000)]
    assert pi.torque_u() == pytest.approx(-1.0)
    n = len(pi.commands)
    m.apply(-1.2)  # same direction: one command per period
    assert len(pi.commands) == n + 1


def test_fake_models_the_shared_channel_hazard():
    pi = FakePi(P)
    pi.hardware_PWM(13, 20_000, 500_000)
    pi.hardware_PWM(19, 20_000, 0)  # the naive "hold the other input at 0"
    assert pi.torque_u() == 0.0


def test_stop_zeroes_both_inputs_from_another_thread():
    pi, m = make()
    done = threading.Event()

    def hammer():
        i = 0
        while not done.is_set():
            m.apply(1.0 if i % 2 else -1.0)
            i += 1

    t = threading.Thread(target=hammer)
    t.start()
    for _ in range(50):
        m.stop()
    done.set()
    t.join()
    m.stop()
    m.stop()  # idempotent
    assert pi.torque_u() == 0.0 and pi.modes[13] == pi.modes[19] == 1
    m.apply(0.8)  # usable again after a stop
    assert pi.torque_u() == pytest.approx(0.8)


def test_close_releases_and_disables():
    pi, m = make()
    m.apply(1.0)
    m.close()
    assert pi.torque_u() == 0.0
    assert all(not cb.active for cb in pi.callbacks)
    assert pi.watchdog_ms[15] == 0 and pi.connected  # a pi passed in stays open
    assert m.apply(1.0) == 0.0 and pi.torque_u() == 0.0
    m.close()


def test_disconnected_pi_is_a_clear_error():
    pi = FakePi(P)
    pi.connected = False
    with pytest.raises(PigpioUnavailable, match="pigpiod"):
        PigpioMotor(P, pi=pi, config=CFG)


def test_no_pigpiod_is_a_clear_error():
    from tests.conftest import free_port

    with pytest.raises(PigpioUnavailable, match="pigpio"):
        PigpioMotor(P, config=PigpioConfig(port=free_port()))


def test_broken_connection_is_a_motor_fault():
    pi, m = make()
    pi.connected = False
    with pytest.raises(MotorFault):
        m.apply(1.0)
    with pytest.raises(MotorFault):
        m.stop()


@pytest.mark.parametrize("kw", [dict(gpio_forward=14), dict(gpio_encoder_a=13),
                                dict(encoder_direction=0), dict(glitch_filter_us=400_000),
                                dict(velocity_window_s=0.5)])
def test_config_validation(kw):
    with pytest.raises(ConfigError):
        PigpioConfig(**kw)


def test_counts_per_rev_comes_from_the_calibration():
    pi = FakePi(P, counts_per_rev=480)
    m = PigpioMotor(P.replace(counts_per_rev=480), pi=pi, config=CFG)
    pi.rotate_by(2 * math.pi, 1.0)
    assert m.read()[0] == pytest.approx(3 * math.pi)
    assert m.stats() == {"count": 480, "zero": 0, "errors": 0}


def test_hand_rotation_reads_to_one_count_and_zero_recalibrates():
    pi, m = make()
    pi.rotate_by(1.0, 0.5)
    theta, _ = m.read()
    assert abs(theta - (math.pi + 1.0)) <= COUNT
    with pytest.raises(MotorFault, match="not still"):
        m.calibrate_zero(require_still_s=0.5)
    pi2, m2 = make()
    pi2.rotate_by(10 * COUNT, 0.1)
    pi2.rotate_by(0.0, 0.6)  # held still by hand for 0.6 s
    assert m2.calibrate_zero(require_still_s=0.5) == 10
    assert m2.read() == (math.pi, 0.0)
    pi2.rotate_by(-2 * math.pi - 3 * COUNT, 0.5)
    assert m2.read()[0] == pytest.approx(-math.pi - 3 * COUNT, abs=1e-9)
    assert m2.calibrate_zero() == -3  # correction taken modulo one revolution


def test_encoder_direction_setting():
    # encoder wired the other way round: with direction -1, positive u still increases θ
    pi = FakePi(P, encoder_direction=-1)
    m = PigpioMotor(P, pi=pi, config=PigpioConfig(encoder_direction=-1))
    m.apply(1.0)
    pi.advance(0.3)
    assert m.read()[0] > math.pi + 0.1
    pi = FakePi(P, encoder_direction=-1)
    m = PigpioMotor(P, pi=pi, config=CFG)  # the check calibration.md asks for catches this
    m.apply(1.0)
    pi.advance(0.3)
    assert m.read()[0] < math.pi - 0.1


def test_glitches_through_the_filter():
    pi, m = make()
    pi.pulse(14, 30)  # shorter than the 100 µs filter: never reported
    pi.advance(0.01)
    assert m.stats()["count"] == 0
    pi.pulse(14, 400)  # long enough to pass: +1 then -1
    pi.advance(0.01)
    assert m.stats() == {"count": 0, "zero": 0, "errors": 0}
    assert m.read()[0] == math.pi


@pytest.mark.parametrize("start_tick", [0, 2**32 - 1_500_000])  # the second wraps after 1.5 s
def test_constant_action_follows_the_model(start_tick):
    """u = 1 from hanging still: measured θ, θ̇ track a 1 kHz integration of the same model;
    the steady angle is where a·sin θ + b·u = 0."""
    pi, m = make(FakePi(P, start_tick=start_tick))
    fine = P.replace(dt=1e-3)
    th, thd = math.pi, 0.0
    u = 1.0
    m.apply(u)
    worst_th = worst_thd = 0.0
    for k in range(1, 161):  # 8 s at the 20 Hz control period
        pi.advance(P.dt)
        for _ in range(50):
            th, thd = physics.step(fine, th, thd, u)
        meas_th, meas_thd = m.read()
        worst_th = max(worst_th, abs(meas_th - th))
        # θ̇ is an average over the last ≤ 20 ms window: allow |θ̈|·10 ms lag + half a count/20 ms
        acc = abs(P.gravity_coeff * math.sin(th) + P.action_gain * u - P.damping * thd)
        err = abs(meas_thd - thd)
        worst_thd = max(worst_thd, err / (acc * 0.01 + COUNT / 0.04 + 1e-9))
    assert worst_th <= COUNT  # within encoder resolution
    assert worst_thd <= 1.0
    steady = math.pi + math.asin(P.action_gain * u / P.gravity_coeff)
    assert abs(th - steady) < 1e-3
    assert abs(m.read()[0] - steady) <= COUNT
    assert m.read()[1] == 0.0
    assert m.stats()["errors"] == 0
