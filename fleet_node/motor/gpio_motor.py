"""The L298N + quadrature-encoder pendulum on any GPIO library: drive rule, angle, zeroing.

:class:`GpioMotor` is the :class:`~fleet_node.motor.base.Motor` both GPIO backends share — pigpio
(:mod:`fleet_node.motor.pigpio_motor`, a Raspberry Pi 4 on Bookworm) and lgpio
(:mod:`fleet_node.motor.lgpio_motor`, a Raspberry Pi 5, or any Pi on Trixie). A backend supplies
five pin operations (PWM on, hold low, duty in its own units, the encoder clock now, release);
everything else lives here once.

Wiring and pins: ``hardware/wiring.md``; defaults are the original RaaS robots' BCM pins
(``shared/reference/raas-original.md``): motor IN1 (forward) GPIO 13, IN2 (backward) GPIO 19,
encoder A GPIO 15, B GPIO 14. The same header pins on a Pi 4 and a Pi 5.

Drive: only the input of the wanted direction ever carries PWM; the other is held low, and it is
taken low *before* the active one gets its PWM (on a Pi 4, GPIO 13 and 19 share one hardware-PWM
channel; with any library, PWM on both inputs would fight the L298N). The duty is
|u|·pwm_per_unit/pwm_range of the PWM period (the original robots' 250·u per 1000: |u| = 2 → 50 %).
``stop()`` holds both inputs low (L298N with ENA high: brake, no torque).

Angle: θ = π + direction·2π·(count − zero)/counts_per_rev, counts_per_rev from the robot's
calibration file. The encoder is incremental, so the zero is a *convention*: at construction the
pendulum is assumed to hang still (θ = π, count 0 ↔ θ = π). :meth:`GpioMotor.calibrate_zero`
re-establishes it after the motor node's reset has seen the pendulum hang still.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

from gym_raas_mqtt.config import setting
from gym_raas_mqtt.errors import ConfigError, MotorFault
from gym_raas_mqtt.physics import PendulumParams

from fleet_node.motor.encoder import CHANNEL_A, CHANNEL_B, QuadratureDecoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpioConfig:
    """Pins (BCM numbers) and encoder settings every GPIO backend reads."""

    gpio_forward: int = setting("RAAS_GPIO_MOTOR_FORWARD", 13,
                                "L298N IN1: positive u (pigpio: a hardware-PWM GPIO 12/13/18/19)")
    gpio_backward: int = setting("RAAS_GPIO_MOTOR_BACKWARD", 19,
                                 "L298N IN2: negative u (pigpio: a hardware-PWM GPIO 12/13/18/19)")
    gpio_encoder_a: int = setting("RAAS_GPIO_ENCODER_A", 15, "encoder channel A")
    gpio_encoder_b: int = setting("RAAS_GPIO_ENCODER_B", 14, "encoder channel B")
    glitch_filter_us: int = setting(
        "RAAS_ENCODER_GLITCH_US", 100,
        "ignore encoder level changes shorter than this (pigpio glitch filter, lgpio debounce); "
        "edges are reported this much later", unit="µs")
    encoder_direction: int = setting(
        "RAAS_ENCODER_DIRECTION", 1, "+1 or -1 so that positive u increases θ (calibration.md)")
    velocity_window_s: float = setting("RAAS_VELOCITY_WINDOW_S", 0.02,
                                       "span of encoder edges timed for θ̇", unit="s")
    velocity_max_age_s: float = setting("RAAS_VELOCITY_MAX_AGE_S", 0.1,
                                        "θ̇ = 0 after this long without an edge", unit="s")

    def __post_init__(self) -> None:
        pins = [self.gpio_forward, self.gpio_backward, self.gpio_encoder_a, self.gpio_encoder_b]
        if len(set(pins)) != 4 or not all(0 <= p <= 27 for p in pins):
            raise ConfigError(f"GPIOs must be four distinct header GPIOs 0..27, got {pins}")
        if self.encoder_direction not in (1, -1):
            raise ConfigError("RAAS_ENCODER_DIRECTION must be 1 or -1")
        if not 0 <= self.glitch_filter_us <= 300_000:
            raise ConfigError("RAAS_ENCODER_GLITCH_US out of range 0..300000")
        if not 0 < self.velocity_window_s <= self.velocity_max_age_s <= 60:
            raise ConfigError("need 0 < RAAS_VELOCITY_WINDOW_S <= RAAS_VELOCITY_MAX_AGE_S <= 60")


class GpioMotor:
    """:class:`~fleet_node.motor.base.Motor` over an L298N and a quadrature encoder.

    Subclasses open their GPIO library, call :meth:`start_decoder` with the encoder's levels,
    feed :attr:`decoder` from their edge callbacks (kept in ``_callbacks``, cancelled on close),
    and implement the pin operations
    ``_pwm``, ``_low``, ``_duty``, ``_now_tick`` and ``_release``.

    Args:
        params: calibration in force (max_action, pwm_per_unit/pwm_range, counts_per_rev).
        config: pins and encoder settings.

    Attributes:
        name: the backend's name (published in the node's meta).
        decoder: the encoder's :class:`~fleet_node.motor.encoder.QuadratureDecoder`.
    """

    name = "gpio"
    placeable = False  # a real pendulum starts where its closed-loop reset leaves it

    def __init__(self, params: PendulumParams, config: GpioConfig) -> None:
        self.params = params
        self.config = config
        self._lock = threading.Lock()  # serialises pin writes: apply() vs stop() from any thread
        self._closed = False
        self._active_pin: int | None = None  # the input currently carrying PWM
        self._duty_per_unit = params.pwm_per_unit / params.pwm_range  # fraction of the period
        self._rad_per_count = config.encoder_direction * 2.0 * math.pi / params.counts_per_rev
        self._zero = 0  # count at θ = π: hanging still at construction (documented assumption)
        self.decoder: QuadratureDecoder | None = None
        self._callbacks: list[Any] = []  # the library's edge callbacks (each has cancel())

    def start_decoder(self, a: int, b: int) -> QuadratureDecoder:
        """Create :attr:`decoder` from the encoder's current levels ``a``, ``b`` (0/1)."""
        cfg = self.config
        self.decoder = QuadratureDecoder(a, b, window_us=round(cfg.velocity_window_s * 1e6),
                                         max_age_us=round(cfg.velocity_max_age_s * 1e6))
        return self.decoder

    def channel(self, gpio: int) -> int:
        """The decoder channel (CHANNEL_A or CHANNEL_B) of encoder input ``gpio``."""
        return CHANNEL_A if gpio == self.config.gpio_encoder_a else CHANNEL_B

    # Motor protocol ----------------------------------------------------------------------------
    def apply(self, desired: float) -> float:
        """Drive the motor with action ``desired`` until the next call.

        Returns:
            The applied action: ``desired`` clamped to ±max_action; 0.0 for NaN/±inf or after
            close().

        Raises:
            MotorFault: the GPIO library refused the command or the connection is gone.
        """
        u = float(desired)
        if not math.isfinite(u):
            u = 0.0
        lim = self.params.max_action
        u = -lim if u < -lim else lim if u > lim else u
        cfg = self.config
        with self._lock:
            if self._closed:
                return 0.0
            try:
                duty = self._duty(min(1.0, abs(u) * self._duty_per_unit))
                if not duty:
                    self._zero_pins()
                    return 0.0
                pin, other = ((cfg.gpio_forward, cfg.gpio_backward) if u > 0
                              else (cfg.gpio_backward, cfg.gpio_forward))
                if self._active_pin != pin:
                    self._low(other)  # the idle input low before `pin` gets its PWM
                    self._active_pin = pin
                self._pwm(pin, duty)
            except Exception as e:  # the library's error, socket or ioctl errors
                raise MotorFault(f"{self.name} drive failed: {e}") from e
        return u

    def read(self) -> tuple[float, float]:
        """(θ [rad, 0 = upright, unwrapped], θ̇ [rad/s]) from the encoder now."""
        count, v, _ = self.decoder.snapshot(self._now_tick())
        k = self._rad_per_count
        return math.pi + k * (count - self._zero), k * v

    def set_state(self, theta: float, theta_dot: float) -> bool:
        """Real hardware cannot be placed: returns False."""
        return False

    def stop(self) -> None:
        """Both L298N inputs low at once (motor braked, no torque); idempotent, any thread.

        Raises:
            MotorFault: the GPIO library did not take the command (the safe state is not
                confirmed).
        """
        with self._lock:
            if self._closed:
                return
            try:
                self._zero_pins()
            except Exception as e:
                raise MotorFault(f"{self.name} stop failed: {e}") from e

    def close(self) -> None:
        """Stop, cancel the edge callbacks, then release the pins and an own connection;
        idempotent."""
        with self._lock:
            if self._closed:
                return
            try:
                self._zero_pins()
            except Exception:  # best effort: the connection may already be gone
                log.exception("%s stop on close failed", self.name)
            self._closed = True
        for cb in self._callbacks:
            try:
                cb.cancel()
            except Exception:
                log.debug("callback cancel failed", exc_info=True)
        self._release()

    # Zeroing and diagnostics ------------------------------------------------------------------
    def still_for_s(self) -> float:
        """Seconds since the last encoder edge (inf if none yet): the pendulum's stillness."""
        return self.decoder.snapshot(self._now_tick())[2]

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
        count, _, still = self.decoder.snapshot(self._now_tick())
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
        self._low(cfg.gpio_forward)
        self._low(cfg.gpio_backward)
        self._active_pin = None

    # The backend's pin operations -------------------------------------------------------------
    def _duty(self, fraction: float) -> float:
        """The library's duty value for ``fraction`` ∈ [0, 1] of the period; 0 if it rounds off."""
        raise NotImplementedError

    def _pwm(self, gpio: int, duty: float) -> None:
        """PWM with the library's ``duty`` on ``gpio`` (the other input is already low)."""
        raise NotImplementedError

    def _low(self, gpio: int) -> None:
        """``gpio`` a plain output held low, its PWM (if any) stopped first."""
        raise NotImplementedError

    def _now_tick(self) -> int:
        """The encoder clock now, as the decoder's uint32 µs tick."""
        raise NotImplementedError

    def _release(self) -> None:
        """Undo filters, close an own connection (the pins are low, the callbacks cancelled)."""
        raise NotImplementedError
