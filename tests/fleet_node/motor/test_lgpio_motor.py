"""LgpioMotor's own behaviour on the emulated chip: software PWM stops, the chip setting, claims,
alert latency and clock. What every GPIO backend does is test_gpio_contract.py."""

from __future__ import annotations

import math
import os
import sys

import pytest

from fake_lgpio import FakeLgpio
from fleet_node.motor.lgpio_motor import LgpioConfig, LgpioMotor, LgpioUnavailable
from gym_raas_mqtt.errors import ConfigError, MotorFault
from gym_raas_mqtt.physics import DEFAULT_PARAMS

P = DEFAULT_PARAMS


def make(rig: FakeLgpio | None = None, **cfg) -> tuple[FakeLgpio, LgpioMotor]:
    rig = rig or FakeLgpio(P)
    return rig, LgpioMotor(P, lg=rig, config=LgpioConfig(**cfg), clock_ns=rig.monotonic_ns)


def test_claims_outputs_low_and_alerts_with_pull_ups_debounce_and_watchdog():
    chip, m = make()
    assert chip.modes == {13: "output", 19: "output", 15: "alert", 14: "alert"}
    assert chip.levels[13] == chip.levels[19] == 0 and not chip.pwm
    assert chip.pulls[15] == chip.pulls[14] == chip.SET_PULL_UP
    assert chip.glitch_us[15] == 100 and chip.watchdog_us[15] == 100_000
    assert m.name == "lgpio" and m.read() == (math.pi, 0.0)


def test_reversal_stops_the_pwm_then_writes_the_idle_input_low():
    chip, m = make()
    m.apply(1.5)
    assert chip.commands[-1] == ("tx_pwm", 13, 5000.0, 37.5)  # 250·1.5 per 1000 = 37.5 %
    m.apply(-1.0)
    # a stopped lgpio PWM keeps its last level: stop it, write 0, only then drive IN2
    assert chip.commands[-3:] == [("tx_pwm", 13, 0, 0), ("gpio_write", 13, 0),
                                  ("tx_pwm", 19, 5000.0, 25.0)]
    n = len(chip.commands)
    m.apply(-1.2)  # same direction: one command per period
    assert len(chip.commands) == n + 1
    m.stop()
    assert chip.commands[-3:] == [("gpio_write", 13, 0), ("tx_pwm", 19, 0, 0),
                                  ("gpio_write", 19, 0)]
    assert chip.held_low(13) and chip.held_low(19) and chip.overlaps == 0


def test_fake_models_the_software_pwm_hazards():
    chip = FakeLgpio(P)
    h = chip.gpiochip_open(0)
    chip.gpio_claim_output(h, 13, 0)
    chip.tx_pwm(h, 13, 5000, 50)
    chip.gpio_write(h, 13, 0)  # a write does not stop lgpio's transmit thread
    assert chip.torque_u() == pytest.approx(2.0)
    chip.tx_pwm(h, 13, 0, 0)  # stopped, but the pin may be left high
    assert chip.torque_u() > 0
    with pytest.raises(chip.error, match="bad PWM micros"):
        chip.tx_pwm(h, 13, 0, 0)  # no PWM running
    with pytest.raises(chip.error, match="frequency"):
        chip.tx_pwm(h, 13, 20_000, 50)  # lgpio's software PWM stops at 10 kHz


def test_duty_is_whole_microseconds_of_the_period():
    """5 kHz = 200 µs periods: an on-time under 0.5 µs is no PWM at all (|u| < 0.01)."""
    chip, m = make()
    assert m.apply(0.005) == 0.0 and chip.torque_u() == 0.0
    assert m.apply(0.02) == 0.02 and chip.torque_u() == pytest.approx(0.02)


@pytest.mark.parametrize("rp1, setting", [(0, 0), (4, 4)])
def test_the_chip_is_a_setting(rp1, setting):
    """RP1 is gpiochip4 on Pi 5 kernels before 6.6.45, gpiochip0 after."""
    chip, m = make(FakeLgpio(P, chip=rp1), chip=setting)
    m.apply(1.0)
    assert chip.torque_u() == pytest.approx(1.0)


def test_a_missing_chip_says_which_setting_to_change():
    chip = FakeLgpio(P, chip=4)
    with pytest.raises(LgpioUnavailable, match="RAAS_LGPIO_CHIP"):
        make(chip, chip=0)


def test_a_chip_that_is_not_the_header_is_refused_and_released():
    """An old-kernel Pi 5's gpiochip0 is the SoC's own GPIO: its line 13 is not header pin 33."""
    chip = FakeLgpio(P, label="gpio-brcmstb@107d508500")
    with pytest.raises(LgpioUnavailable, match="RAAS_LGPIO_CHIP=4"):
        make(chip)
    assert not chip.open_handles and not chip.modes


def test_a_busy_line_is_a_clear_error_and_nothing_stays_claimed():
    chip = FakeLgpio(P, busy=(14,))  # the UART still on GPIO 14/15
    with pytest.raises(LgpioUnavailable, match="UART"):
        make(chip)
    assert not chip.open_handles and not chip.modes


def test_close_frees_the_lines():
    chip, m = make()
    m.apply(1.0)
    m.close()
    assert not chip.open_handles and not chip.modes and not chip.pwm
    assert chip.torque_u() == 0.0


@pytest.mark.parametrize("kw", [dict(pwm_frequency_hz=20_000), dict(pwm_frequency_hz=0.0),
                                dict(chip=-1), dict(alert_latency_us=100_000),
                                dict(gpio_encoder_a=13), dict(encoder_direction=0)])
def test_config_validation(kw):
    with pytest.raises(ConfigError):
        LgpioConfig(**kw)


def test_any_header_gpio_drives_the_motor():
    """No hardware-PWM pin restriction (unlike pigpio): software PWM works on every line."""
    cfg = LgpioConfig(gpio_forward=20, gpio_backward=21)
    chip = FakeLgpio(P, forward=20, backward=21)
    m = LgpioMotor(P, lg=chip, config=cfg, clock_ns=chip.monotonic_ns)
    m.apply(-1.0)
    assert chip.torque_u() == pytest.approx(-1.0)


@pytest.mark.parametrize("latency_us, reads_true", [(0, False), (5_000, True)])
def test_the_alert_latency_allowance_keeps_the_speed_at_the_overspeed_limit(latency_us,
                                                                           reads_true):
    """Alerts arrive ≥ 0.5 ms late: read at "now", the decoder takes the gap for a slowing
    shaft and under-reads θ̇ near the 15 rad/s cut; read 5 ms in the past, it does not."""
    chip = FakeLgpio(P.replace(counts_per_rev=480))
    m = LgpioMotor(P.replace(counts_per_rev=480), lg=chip,
                   config=LgpioConfig(alert_latency_us=latency_us), clock_ns=chip.monotonic_ns)
    chip.spin(14.7)
    chip.advance(0.1)
    speeds = []
    for _ in range(40):
        chip.advance(0.0503)  # reads at every phase of the edge pattern
        speeds.append(m.read()[1])
    assert (min(speeds) > 0.99 * 14.7) is reads_true, min(speeds)
    assert max(speeds) < 1.01 * 14.7


def test_alerts_on_another_clock_fault_the_reading():
    """Kernels before 5.7 stamped line events with CLOCK_REALTIME: θ̇ could not be timed."""
    chip = FakeLgpio(P)
    m = LgpioMotor(P, lg=chip, config=LgpioConfig(),
                   clock_ns=lambda: chip.monotonic_ns() + 55 * 365 * 86400 * 10**9)
    assert m.read() == (math.pi, 0.0)  # no alert yet
    chip.rotate_by(0.1, 0.1)
    with pytest.raises(MotorFault, match="CLOCK_MONOTONIC"):
        m.read()


def test_missing_lgpio_is_a_clear_error_and_keeps_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "lgpio", None)  # not installed
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LgpioUnavailable, match="python3-lgpio"):
        LgpioMotor(P, config=LgpioConfig())
    assert os.getcwd() == str(tmp_path)
