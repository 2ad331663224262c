"""PigpioMotor's own behaviour on the fake pigpio: the shared PWM channel, pigpiod, settings.

What every GPIO backend does (drive, decoding, zeroing, physics) is test_gpio_contract.py."""

from __future__ import annotations

import math

import pytest

from fake_pigpio import FakePi
from fleet_node.motor.base import Motor
from fleet_node.motor.pigpio_motor import PigpioConfig, PigpioMotor, PigpioUnavailable
from gym_raas_mqtt.errors import ConfigError
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


def test_close_turns_the_watchdogs_off_and_leaves_a_given_pi_open():
    """The rest of close() is the contract's (test_gpio_contract.py)."""
    pi, m = make()
    m.apply(1.0)
    m.close()
    assert pi.watchdog_ms[15] == 0 and pi.connected  # a pi passed in stays open


def test_disconnected_pi_is_a_clear_error():
    pi = FakePi(P)
    pi.connected = False
    with pytest.raises(PigpioUnavailable, match="pigpiod"):
        PigpioMotor(P, pi=pi, config=CFG)


def test_no_pigpiod_is_a_clear_error():
    from tests.conftest import free_port

    with pytest.raises(PigpioUnavailable, match="pigpio"):
        PigpioMotor(P, config=PigpioConfig(port=free_port()))


@pytest.mark.parametrize("kw", [dict(gpio_forward=14), dict(gpio_encoder_a=13),
                                dict(encoder_direction=0), dict(glitch_filter_us=400_000),
                                dict(velocity_window_s=0.5)])
def test_config_validation(kw):
    with pytest.raises(ConfigError):
        PigpioConfig(**kw)

