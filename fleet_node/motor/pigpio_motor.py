"""The real pendulum through pigpiod: L298N drive by hardware PWM, encoder decoding, zeroing.

Wiring and pins: ``hardware/wiring.md``; defaults are the original RaaS robots' BCM pins
(``shared/reference/raas-original.md``): motor IN1 (forward) GPIO 13, IN2 (backward) GPIO 19,
encoder A GPIO 15, B GPIO 14.

Drive: pigpio ``hardware_PWM`` at 20 kHz (above hearing; pigpio's software PWM would snap to
8 kHz with 25 duty steps). GPIO 13 and 19 are the *same* PWM channel (PWM1): "the latest frequency
and dutycycle setting will be used by all GPIO which share a PWM channel" (pigpio docs). So only the
active input is ever in PWM mode; the other is switched to a plain output held low with
``write(gpio, 0)`` *before* the PWM is set. Duty = |u|·pwm_per_unit/pwm_range·10⁶ (pigpio's
duty range is 0..1 000 000), i.e. 250·u per 1000: |u| = 2 → 50 %.

Angle: θ = π + direction·2π·(count − zero)/counts_per_rev, counts_per_rev from the robot's
calibration file. The encoder is incremental, so the zero is a *convention*: at construction the
pendulum is assumed to hang still (θ = π, count 0 ↔ θ = π). :meth:`PigpioMotor.calibrate_zero`
re-establishes it after the motor node's reset has seen the pendulum hang still.

pigpio is imported only when no ``pi`` is given (extra ``hardware``); pigpiod must be running.
pigpio does not run on the Raspberry Pi 5: a libgpiod backend implementing the same Motor
protocol is the path there.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

from gym_raas_mqtt.config import load, setting
from gym_raas_mqtt.errors import BackendError, ConfigError, MotorFault
from gym_raas_mqtt.physics import PendulumParams

from fleet_node.motor.encoder import CHANNEL_A, CHANNEL_B, QuadratureDecoder

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
class PigpioConfig:
    """Settings of the pigpio motor driver (pins are BCM numbers)."""

    host: str = setting("RAAS_PIGPIO_HOST", "localhost", "pigpiod host (run pigpiod with -l)")
    port: int = setting("RAAS_PIGPIO_PORT", 8888, "pigpiod port")
    gpio_forward: int = setting("RAAS_GPIO_MOTOR_FORWARD", 13,
                                "L298N IN1: positive u; hardware-PWM GPIO (12/13/18/19)")
    gpio_backward: int = setting("RAAS_GPIO_MOTOR_BACKWARD", 19,
                                 "L298N IN2: negative u; hardware-PWM GPIO (12/13/18/19)")
    gpio_encoder_a: int = setting("RAAS_GPIO_ENCODER_A", 15, "encoder channel A")
    gpio_encoder_b: int = setting("RAAS_GPIO_ENCODER_B", 14, "encoder channel B")
    pwm_frequency_hz: int = setting("RAAS_PWM_FREQUENCY_HZ", 20_000,
                                    "hardware PWM frequency (above hearing)", unit="Hz")
    glitch_filter_us: int = setting(
        "RAAS_ENCODER_GLITCH_US", 100,
        "ignore encoder level changes shorter than this (pigpio glitch filter)", unit="µs")
    encoder_direction: int = setting(
        "RAAS_ENCODER_DIRECTION", 1, "+1 or -1 so that positive u increases θ (calibration.md)")
    velocity_window_s: float = setting("RAAS_VELOCITY_WINDOW_S", 0.02,
                                       "span of encoder edges timed for θ̇", unit="s")
    velocity_max_age_s: float = setting("RAAS_VELOCITY_MAX_AGE_S", 0.1,
                                        "θ̇ = 0 after this long without an edge", unit="s")

    def __post_init__(self) -> None:
        for name in ("gpio_forward", "gpio_backward"):
            if getattr(self, name) not in HW_PWM_GPIOS:
                raise ConfigError(f"{name}={getattr(self, name)}: not a hardware-PWM GPIO "
                                  f"{sorted(HW_PWM_GPIOS)}")
        pins = [self.gpio_forward, self.gpio_backward, self.gpio_encoder_a, self.gpio_encoder_b]
        if len(set(pins)) != 4 or not all(0 <= p <= 27 for p in pins):
            raise ConfigError(f"GPIOs must be four distinct header GPIOs 0..27, got {pins}")
        if self.encoder_direction not in (1, -1):
            raise ConfigError("RAAS_ENCODER_DIRECTION must be 1 or -1")
        if not 1 <= self.pwm_frequency_hz <= 125_000_000:
            raise ConfigError("RAAS_PWM_FREQUENCY_HZ out of range 1..125e6")
        if not 0 <= self.glitch_filter_us <= 300_000:
            raise ConfigError("RAAS_ENCODER_GLITCH_US out of pigpio's range 0..300000")
        if not 0 < self.velocity_window_s <= self.velocity_max_age_s <= 60:
            raise ConfigError("need 0 < RAAS_VELOCITY_WINDOW_S <= RAAS_VELOCITY_MAX_AGE_S <= 60")


def connect_pigpio(config: PigpioConfig) -> Any:
    """Open a pigpio connection.

    Raises:
        PigpioUnavailable: the pigpio module is missing or pigpiod does not answer.
    """
    try:
        import pigpio  # noqa: PLC0415 - optional extra, only on the robot
    except ModuleNotFoundError as e:
        raise PigpioUnavailable(
            "the pigpio module is not installed: pip install 'gym-raas-mqtt[hardware]'") from e
    pi = pigpio.pi(config.host, config.port, show_errors=False)
    if not pi.connected:
        raise PigpioUnavailable(
            f"cannot connect to pigpiod at {config.host}:{config.port}; is it running? "
            "(sudo systemctl enable --now pigpiod; see hardware/pi-setup.md)")
    return pi


class PigpioMotor:
    """:class:`~fleet_node.motor.base.Motor` on a Raspberry Pi: L298N + quadrature encoder.

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
    placeable = False  # a real pendulum starts where its closed-loop reset leaves it

    def __init__(self, params: PendulumParams, pi: Any = None,
                 config: PigpioConfig | None = None) -> None:
        self.params = params
        self.config = cfg = config or load(PigpioConfig)
        self._own_pi = pi is None
        self._pi = connect_pigpio(cfg) if pi is None else pi
        if not self._pi.connected:
            raise PigpioUnavailable("pigpio connection is not connected (is pigpiod running?)")
        self._lock = threading.Lock()  # serialises pin writes: apply() vs stop() from any thread
        self._closed = False
        self._active_pin: int | None = None  # the input currently in PWM mode
        self._duty_per_unit = params.pwm_per_unit / params.pwm_range * DUTY_FULL
        self._rad_per_count = cfg.encoder_direction * 2.0 * math.pi / params.counts_per_rev
        pi = self._pi
        for g in (cfg.gpio_forward, cfg.gpio_backward):
            pi.set_mode(g, OUTPUT)
            pi.write(g, 0)
        for g in (cfg.gpio_encoder_a, cfg.gpio_encoder_b):
            pi.set_mode(g, INPUT)
            pi.set_pull_up_down(g, PUD_UP)  # open-collector encoders need it; harmless otherwise
            pi.set_glitch_filter(g, cfg.glitch_filter_us)
        self.decoder = QuadratureDecoder(
            pi.read(cfg.gpio_encoder_a), pi.read(cfg.gpio_encoder_b),
            window_us=round(cfg.velocity_window_s * 1e6),
            max_age_us=round(cfg.velocity_max_age_s * 1e6))
        self._callbacks = [
            pi.callback(cfg.gpio_encoder_a, EITHER_EDGE, self._on_a),
            pi.callback(cfg.gpio_encoder_b, EITHER_EDGE, self._on_b),
        ]
        # pigpio watchdog: a report at least every max_age without edges keeps the tick unwrap
        # unambiguous and tells the decoder the shaft has stopped.
        wd_ms = max(1, round(cfg.velocity_max_age_s * 1000))
        for g in (cfg.gpio_encoder_a, cfg.gpio_encoder_b):
            pi.set_watchdog(g, wd_ms)
        self._zero = 0  # count at θ = π: hanging still at construction (documented assumption)

    # pigpio callback thread ------------------------------------------------------------------
    def _on_a(self, gpio: int, level: int, tick: int) -> None:
        self.decoder.edge(CHANNEL_A, level, tick)

    def _on_b(self, gpio: int, level: int, tick: int) -> None:
        self.decoder.edge(CHANNEL_B, level, tick)

    # Motor protocol ----------------------------------------------------------------------------
    def apply(self, desired: float) -> float:
        """Drive the motor with action ``desired`` until the next call.

        Returns:
            The applied action: ``desired`` clamped to ±max_action; 0.0 for NaN/±inf or after
            close().

        Raises:
            MotorFault: pigpiod refused the command or the connection is gone.
        """
        u = float(desired)
        if not math.isfinite(u):
            u = 0.0
        lim = self.params.max_action
        u = -lim if u < -lim else lim if u > lim else u
        duty = min(DUTY_FULL, round(abs(u) * self._duty_per_unit))
        cfg = self.config
        with self._lock:
            if self._closed:
                return 0.0
            try:
                if duty == 0:
                    self._zero_pins()
                    return 0.0
                pin, other = ((cfg.gpio_forward, cfg.gpio_backward) if u > 0
                              else (cfg.gpio_backward, cfg.gpio_forward))
                if self._active_pin != pin:
                    self._pi.write(other, 0)  # leave the shared PWM channel before driving `pin`
                    self._active_pin = pin
                self._pi.hardware_PWM(pin, cfg.pwm_frequency_hz, duty)
            except Exception as e:  # pigpio.error, socket errors
                raise MotorFault(f"pigpio drive failed: {e}") from e
        return u

    def read(self) -> tuple[float, float]:
        """(θ [rad, 0 = upright, unwrapped], θ̇ [rad/s]) from the encoder now."""
        count, v, _ = self.decoder.snapshot(self._pi.get_current_tick())
        k = self._rad_per_count
        return math.pi + k * (count - self._zero), k * v

    def set_state(self, theta: float, theta_dot: float) -> bool:
        """Real hardware cannot be placed: returns False."""
        return False

    def stop(self) -> None:
        """Both L298N inputs low at once (motor braked, no torque); idempotent, any thread.

        Raises:
            MotorFault: pigpiod did not take the command (the safe state is not confirmed).
        """
        with self._lock:
            if self._closed:
                return
            try:
                self._zero_pins()
            except Exception as e:
                raise MotorFault(f"pigpio stop failed: {e}") from e

    def close(self) -> None:
        """Stop, cancel callbacks and watchdogs, and close an own pigpio connection."""
        with self._lock:
            if self._closed:
                return
            try:
                self._zero_pins()
            except Exception:  # best effort: the connection may already be gone
                log.exception("pigpio stop on close failed")
            self._closed = True
        for cb in self._callbacks:
            try:
                cb.cancel()
            except Exception:
                log.debug("callback cancel failed", exc_info=True)
        try:
            for g in (self.config.gpio_encoder_a, self.config.gpio_encoder_b):
                self._pi.set_watchdog(g, 0)
                self._pi.set_glitch_filter(g, 0)
        except Exception:
            log.debug("pigpio cleanup failed", exc_info=True)
        if self._own_pi:
            self._pi.stop()

    # Zeroing and diagnostics ------------------------------------------------------------------
    def still_for_s(self) -> float:
        """Seconds since the last encoder edge (inf if none yet): the pendulum's stillness."""
        return self.decoder.snapshot(self._pi.get_current_tick())[2]

    def calibrate_zero(self, require_still_s: float = 0.0) -> int:
        """Declare the current position hanging down: θ = π exactly from now on.

        The motor node's reset calls this once the pendulum hangs still; a gear motor's friction
        can hold it a little off the bottom, which this accepts as the new zero.

        Args:
            require_still_s: refuse unless no encoder edge came for this long [s].

        Returns:
            The correction [counts]: how far (mod one revolution, in [−cpr/2, cpr/2)) the old zero
            was from this position; nonzero values measure drift or lost counts.

        Raises:
            MotorFault: the pendulum moved within the last ``require_still_s`` seconds.
        """
        count, _, still = self.decoder.snapshot(self._pi.get_current_tick())
        if still < require_still_s:
            raise MotorFault(f"pendulum not still (last edge {still:.3f} s ago, "
                             f"need {require_still_s} s)")
        cpr = self.params.counts_per_rev
        correction = (count - self._zero + cpr // 2) % cpr - cpr // 2
        self._zero = count
        if correction:
            log.info("encoder re-zeroed: %+d counts from the previous zero", correction)
        return correction

    def stats(self) -> dict[str, int]:
        """Raw encoder count, the zero's count and decoding errors since construction."""
        return {"count": self.decoder.count, "zero": self._zero, "errors": self.decoder.errors}

    def _zero_pins(self) -> None:
        cfg = self.config
        self._pi.write(cfg.gpio_forward, 0)
        self._pi.write(cfg.gpio_backward, 0)
        self._active_pin = None
