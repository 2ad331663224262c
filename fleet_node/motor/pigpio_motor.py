"""The real pendulum through pigpiod (Raspberry Pi 4, Bookworm): hardware PWM, edge callbacks.

The drive rule, the angle and the zeroing are :class:`~fleet_node.motor.gpio_motor.GpioMotor`'s;
this module supplies pigpio's pin operations.

Drive: pigpio ``hardware_PWM`` at 20 kHz (above hearing; pigpio's software PWM would snap to
8 kHz with 25 duty steps). GPIO 13 and 19 are the *same* PWM channel (PWM1): "the latest frequency
and dutycycle setting will be used by all GPIO which share a PWM channel" (pigpio docs). So only the
active input is ever in PWM mode; the other is switched to a plain output held low with
``write(gpio, 0)`` *before* the PWM is set. pigpio's duty range is 0..1 000 000.

Encoder: ``callback(gpio, EITHER_EDGE)`` reports ``(gpio, level, tick)`` with pigpiod's uint32 µs
ticks, sampled every 5 µs; the glitch filter and a watchdog per input (level 2 = TIMEOUT, repeated
while the shaft stands still) feed :class:`~fleet_node.motor.encoder.QuadratureDecoder` as is.

pigpio is imported only when no ``pi`` is given (extra ``hardware``); pigpiod must be running.
pigpio does not run on the Raspberry Pi 5 nor install on Raspberry Pi OS Trixie: the lgpio
backend (:mod:`fleet_node.motor.lgpio_motor`) is the path there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gym_raas_mqtt.config import load, setting
from gym_raas_mqtt.errors import BackendError, ConfigError
from gym_raas_mqtt.physics import PendulumParams

from fleet_node.motor.gpio_motor import GpioConfig, GpioMotor

log = logging.getLogger(__name__)

# pigpio's constants (pigpio.py 1.78), repeated so that tests and the fake need no pigpio install.
INPUT, OUTPUT = 0, 1
PUD_UP = 2
EITHER_EDGE = 2
HW_PWM_GPIOS = {12: 0, 13: 1, 18: 0, 19: 1}
"""Header GPIOs with hardware PWM → PWM channel (pigpio ``hardware_PWM`` docs)."""
DUTY_FULL = 1_000_000
"""pigpio hardware_PWM duty for 100 %."""


class PigpioUnavailable(BackendError):
    """pigpio is not installed or pigpiod cannot be reached."""


@dataclass(frozen=True)
class PigpioConfig(GpioConfig):
    """Settings of the pigpio motor driver: pigpiod's address and the PWM, plus the pins."""

    host: str = setting("RAAS_PIGPIO_HOST", "localhost", "pigpiod host (run pigpiod with -l)")
    port: int = setting("RAAS_PIGPIO_PORT", 8888, "pigpiod port")
    pwm_frequency_hz: int = setting("RAAS_PWM_FREQUENCY_HZ", 20_000,
                                    "pigpio hardware PWM frequency (above hearing)", unit="Hz")

    def __post_init__(self) -> None:
        for name in ("gpio_forward", "gpio_backward"):
            if getattr(self, name) not in HW_PWM_GPIOS:
                raise ConfigError(f"{name}={getattr(self, name)}: not a hardware-PWM GPIO "
                                  f"{sorted(HW_PWM_GPIOS)}")
        super().__post_init__()
        if not 1 <= self.pwm_frequency_hz <= 125_000_000:
            raise ConfigError("RAAS_PWM_FREQUENCY_HZ out of range 1..125e6")


def connect_pigpio(config: PigpioConfig) -> Any:
    """Open a pigpio connection.

    Raises:
        PigpioUnavailable: the pigpio module is missing or pigpiod does not answer.
    """
    try:
        import pigpio  # noqa: PLC0415 - optional extra, only on the robot
    except ModuleNotFoundError as e:
        raise PigpioUnavailable(
            "the pigpio module is not installed: pip install 'raas-platform[hardware]'") from e
    pi = pigpio.pi(config.host, config.port, show_errors=False)
    if not pi.connected:
        raise PigpioUnavailable(
            f"cannot connect to pigpiod at {config.host}:{config.port}; is it running? "
            "(sudo systemctl enable --now pigpiod; see hardware/pi-setup.md)")
    return pi


class PigpioMotor(GpioMotor):
    """:class:`~fleet_node.motor.gpio_motor.GpioMotor` through pigpiod.

    Args:
        params: calibration in force (max_action, pwm_per_unit/pwm_range, counts_per_rev).
        pi: a connected ``pigpio.pi`` (or the test fake); None connects to pigpiod per ``config``
            and closes the connection in :meth:`close`.
        config: pins and filters; None loads :class:`PigpioConfig` from ``RAAS_*`` variables.

    Raises:
        PigpioUnavailable: pigpio missing or pigpiod not running (``pi.connected`` False).
        ConfigError: invalid pins or settings.
    """

    name = "pigpio"

    def __init__(self, params: PendulumParams, pi: Any = None,
                 config: PigpioConfig | None = None) -> None:
        cfg = config or load(PigpioConfig)
        super().__init__(params, cfg)
        self._own_pi = pi is None
        self._pi = connect_pigpio(cfg) if pi is None else pi
        if not self._pi.connected:
            raise PigpioUnavailable("pigpio connection is not connected (is pigpiod running?)")
        pi = self._pi
        for g in (cfg.gpio_forward, cfg.gpio_backward):
            pi.set_mode(g, OUTPUT)
            pi.write(g, 0)
        for g in (cfg.gpio_encoder_a, cfg.gpio_encoder_b):
            pi.set_mode(g, INPUT)
            pi.set_pull_up_down(g, PUD_UP)  # open-collector encoders need it; harmless otherwise
            pi.set_glitch_filter(g, cfg.glitch_filter_us)
        self.start_decoder(pi.read(cfg.gpio_encoder_a), pi.read(cfg.gpio_encoder_b))
        self._callbacks = [pi.callback(g, EITHER_EDGE, self._on_edge)
                           for g in (cfg.gpio_encoder_a, cfg.gpio_encoder_b)]
        # pigpio watchdog: a report at least every max_age without edges keeps the tick unwrap
        # unambiguous and tells the decoder the shaft has stopped.
        wd_ms = max(1, round(cfg.velocity_max_age_s * 1000))
        for g in (cfg.gpio_encoder_a, cfg.gpio_encoder_b):
            pi.set_watchdog(g, wd_ms)

    def _on_edge(self, gpio: int, level: int, tick: int) -> None:
        """pigpio's callback thread: one edge or watchdog report."""
        self.decoder.edge(self.channel(gpio), level, tick)

    # pin operations (GpioMotor) ---------------------------------------------------------------
    def _duty(self, fraction: float) -> int:
        return min(DUTY_FULL, round(fraction * DUTY_FULL))

    def _pwm(self, gpio: int, duty: float) -> None:
        self._pi.hardware_PWM(gpio, self.config.pwm_frequency_hz, duty)

    def _low(self, gpio: int) -> None:
        self._pi.write(gpio, 0)  # also takes the pin out of the shared PWM channel

    def _now_tick(self) -> int:
        return self._pi.get_current_tick()

    def _release(self) -> None:
        try:
            for g in (self.config.gpio_encoder_a, self.config.gpio_encoder_b):
                self._pi.set_watchdog(g, 0)
                self._pi.set_glitch_filter(g, 0)
        except Exception:
            log.debug("pigpio cleanup failed", exc_info=True)
        if self._own_pi:
            self._pi.stop()
