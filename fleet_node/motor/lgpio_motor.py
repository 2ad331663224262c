"""The real pendulum through lgpio (Raspberry Pi 5, or any Pi on Trixie): software PWM, alerts.

The drive rule, the angle and the zeroing are :class:`~fleet_node.motor.gpio_motor.GpioMotor`'s;
this module supplies lgpio's pin operations. lgpio talks to the kernel's GPIO character device
(``/dev/gpiochipN``) in-process: no daemon (unlike pigpiod); the ``raas`` user needs the group
``gpio``. The same header pins and wiring as on a Pi 4 (``hardware/pi5-trixie.md``).

Chip: the Pi 5's header GPIOs are on the RP1 south bridge: ``gpiochip4`` on kernels before
6.6.45, ``gpiochip0`` from 6.6.45 on (a Pi 4's header is always ``gpiochip0``). The chip is a
setting (``RAAS_LGPIO_CHIP``); a chip whose label is not a ``pinctrl-*`` header controller is
refused, so an old-kernel Pi 5 cannot drive lines of the wrong chip.

Drive: lgpio has no hardware PWM; ``tx_pwm`` is *software-timed* by lgpio's transmit thread
(``clock_nanosleep`` to absolute times, whole microseconds, 0.1 Hz..10 kHz). Every edge is late by
the thread's wake-up latency (tens of µs on a loaded Pi), so the higher the frequency, the larger
each period's duty error (10 µs of jitter is 10 % of a 10 kHz period) and the CPU cost (two wake-ups
per period). Default 5 kHz: 200 µs periods give 0.5 % duty steps (0.02 in u) and a few % jitter
per period that averages out over the 250 periods of one 20 Hz control step; audible, where the
Pi 4's 20 kHz hardware PWM is not. A new duty takes effect at the end of the running period; a
stop (``tx_pwm(gpio, 0, 0)``) halts the thread's toggling at once but leaves the pin at its last
level, so ``_low`` always writes 0 after it. The frequency changes the motor's response a little:
refit the model on a Pi 5 (``hardware/calibration.md``).

Encoder: ``gpio_claim_alert`` + ``callback`` report ``(chip, gpio, level, timestamp)`` with the
kernel's CLOCK_MONOTONIC nanoseconds (kernels ≥ 5.7; checked on the first report). lgpio's
debounce is pigpio's glitch filter (reports delayed by it); its watchdog reports TIMEOUT (2) once
per quiet spell. Timestamps become the decoder's µs ticks (``ns // 1000`` mod 2**32).

Alert latency: lgpio emits an alert at least 0.5 ms after its timestamp (to sort edges of
several lines), polls every 0.5 ms, and its Python callback thread then waits for the GIL (up to
the 5 ms switch interval). Read at the wall-clock "now", an edge in flight looks like a stalled
shaft, and the decoder's staleness bound (|v| ≤ 1 count / time since the last edge) would read
low — at the 15 rad/s over-speed limit, by a third. So the decoder is read at now −
``RAAS_LGPIO_ALERT_LATENCY_US`` (5 ms): θ is unchanged (it is whatever edges have arrived), θ̇
settles to 0 that much later when the shaft stops.

lgpio is imported only when no ``lg`` module is given (extra ``hardware-pi5``). Importing it makes
the notification FIFO ``.lgd-nfy*`` in ``$LG_WD`` (default: the working directory, which it
chdir()s to); the working directory is restored after the import, and the systemd unit sets
``LG_WD`` to a writable runtime directory.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from gym_raas_mqtt.config import load, setting
from gym_raas_mqtt.errors import BackendError, ConfigError, MotorFault
from gym_raas_mqtt.physics import PendulumParams

from fleet_node.motor.encoder import TICK_MASK, TIMEOUT
from fleet_node.motor.gpio_motor import GpioConfig, GpioMotor

log = logging.getLogger(__name__)

PWM_MAX_HZ = 10_000
"""lgpio's highest ``tx_pwm`` frequency (software-timed)."""
HEADER_CHIP_PREFIX = "pinctrl-"
"""Label of the header's GPIO controller (``pinctrl-rp1`` on a Pi 5, ``pinctrl-bcm2711`` on a
Pi 4); a Pi 5's other chips (``gpio-brcmstb@...``) drive SoC-internal lines."""
CLOCK_SKEW_LIMIT_NS = 10_000_000_000
"""An alert timestamp further than this from CLOCK_MONOTONIC is on another clock [ns]."""


class LgpioUnavailable(BackendError):
    """lgpio is not installed, or the GPIO chip or a line cannot be claimed."""


@dataclass(frozen=True)
class LgpioConfig(GpioConfig):
    """Settings of the lgpio motor driver: the GPIO chip and the software PWM, plus the pins."""

    chip: int = setting("RAAS_LGPIO_CHIP", 0,
                        "/dev/gpiochipN of the header: 0 (Pi 4; Pi 5 on kernel >= 6.6.45), "
                        "4 (Pi 5 on older kernels)")
    pwm_frequency_hz: float = setting(
        "RAAS_LGPIO_PWM_FREQUENCY_HZ", 5_000.0,
        "lgpio software PWM frequency (0.1..10000; higher = more jitter and CPU)", unit="Hz")
    alert_latency_us: int = setting(
        "RAAS_LGPIO_ALERT_LATENCY_US", 5_000,
        "read the encoder this long in the past: lgpio's alerts arrive late", unit="µs")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.chip < 0:
            raise ConfigError("RAAS_LGPIO_CHIP must be >= 0")
        if not 0.1 <= self.pwm_frequency_hz <= PWM_MAX_HZ:
            raise ConfigError(f"RAAS_LGPIO_PWM_FREQUENCY_HZ out of lgpio's range 0.1..{PWM_MAX_HZ}")
        if not 0 <= self.alert_latency_us < self.velocity_max_age_s * 1e6:
            raise ConfigError("need 0 <= RAAS_LGPIO_ALERT_LATENCY_US < RAAS_VELOCITY_MAX_AGE_S")


def import_lgpio() -> Any:
    """The ``lgpio`` module, the working directory kept (its import chdir()s to ``$LG_WD``).

    Raises:
        LgpioUnavailable: lgpio is not installed, or its notification FIFO cannot be made.
    """
    cwd = os.getcwd()
    try:
        import lgpio  # noqa: PLC0415 - optional extra, only on the robot
    except ModuleNotFoundError as e:
        raise LgpioUnavailable(
            "the lgpio module is not installed: apt install python3-lgpio, or pip install "
            "'raas-platform[hardware-pi5]' (hardware/pi5-trixie.md)") from e
    except OSError as e:  # the FIFO .lgd-nfy* in $LG_WD
        raise LgpioUnavailable(f"lgpio cannot make its notification FIFO ({e}): set LG_WD to "
                               "a writable directory") from e
    finally:
        os.chdir(cwd)
    return lgpio


class LgpioMotor(GpioMotor):
    """:class:`~fleet_node.motor.gpio_motor.GpioMotor` through lgpio.

    Args:
        params: calibration in force (max_action, pwm_per_unit/pwm_range, counts_per_rev).
        lg: the ``lgpio`` module (or the test's emulated chip); None imports it.
        config: chip, pins and filters; None loads :class:`LgpioConfig` from ``RAAS_*``
            variables.
        clock_ns: the clock of the alerts' timestamps (CLOCK_MONOTONIC) [ns].

    Raises:
        LgpioUnavailable: lgpio missing; the chip cannot be opened or is not the header's; a
            line is busy (e.g. GPIO 14/15 still used by the UART).
        ConfigError: invalid pins or settings.
    """

    name = "lgpio"

    def __init__(self, params: PendulumParams, lg: Any = None,
                 config: LgpioConfig | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        cfg = config or load(LgpioConfig)
        super().__init__(params, cfg)
        self._lg = lg = import_lgpio() if lg is None else lg
        self._clock_ns = clock_ns
        self._latency_us = cfg.alert_latency_us
        self._pwm_pins: set[int] = set()  # inputs with a running tx_pwm
        self._clock_error: str | None = None
        self._first_alert = True
        try:
            self._handle = lg.gpiochip_open(cfg.chip)
        except Exception as e:  # lgpio.error
            raise LgpioUnavailable(
                f"cannot open /dev/gpiochip{cfg.chip}: {e} (is the user in group gpio? "
                "RAAS_LGPIO_CHIP: 0 on a Pi 4 and on a Pi 5 with kernel >= 6.6.45, 4 before)") from e
        try:
            self._claim(lg, cfg)
        except LgpioUnavailable:  # not the header's chip
            lg.gpiochip_close(self._handle)
            raise
        except Exception as e:  # lgpio.error: a line busy, or refused
            lg.gpiochip_close(self._handle)
            raise LgpioUnavailable(f"lgpio setup of gpiochip{cfg.chip} failed: {e} (a line in "
                                   "use? GPIO 14/15 are the UART: hardware/pi5-trixie.md)") from e

    def _claim(self, lg: Any, cfg: LgpioConfig) -> None:
        h = self._handle
        label = lg.gpio_get_chip_info(h)[3]
        if not label.startswith(HEADER_CHIP_PREFIX):
            raise LgpioUnavailable(
                f"gpiochip{cfg.chip} is {label!r}, not the header's GPIO controller: on a Pi 5 "
                "with a kernel before 6.6.45 set RAAS_LGPIO_CHIP=4")
        for g in (cfg.gpio_forward, cfg.gpio_backward):
            lg.gpio_claim_output(h, g, 0)
        for g in (cfg.gpio_encoder_a, cfg.gpio_encoder_b):
            # pull-ups: open-collector encoders need them; harmless otherwise
            lg.gpio_claim_alert(h, g, lg.BOTH_EDGES, lg.SET_PULL_UP)
            lg.gpio_set_debounce_micros(h, g, cfg.glitch_filter_us)
            # one TIMEOUT report per quiet spell: the decoder drops stale edges at once
            lg.gpio_set_watchdog_micros(h, g, round(cfg.velocity_max_age_s * 1e6))
        self.start_decoder(lg.gpio_read(h, cfg.gpio_encoder_a), lg.gpio_read(h, cfg.gpio_encoder_b))
        self._callbacks = [lg.callback(h, g, lg.BOTH_EDGES, self._on_alert)
                           for g in (cfg.gpio_encoder_a, cfg.gpio_encoder_b)]

    def _on_alert(self, chip: int, gpio: int, level: int, timestamp_ns: int) -> None:
        """lgpio's notification thread: one edge or watchdog alert."""
        if self._first_alert and level != TIMEOUT:  # a watchdog's time is lgpio's arithmetic
            self._first_alert = False
            skew = timestamp_ns - self._clock_ns()
            if abs(skew) > CLOCK_SKEW_LIMIT_NS:
                self._clock_error = (f"lgpio alert timestamps are {skew / 1e9:+.0f} s off "
                                     "CLOCK_MONOTONIC (kernel before 5.7?): θ̇ cannot be timed")
                log.error("%s", self._clock_error)
        self.decoder.edge(self.channel(gpio), level, (timestamp_ns // 1000) & TICK_MASK)

    def read(self) -> tuple[float, float]:
        """(θ [rad, 0 = upright, unwrapped], θ̇ [rad/s]) from the encoder now.

        Raises:
            MotorFault: the alerts' clock is not CLOCK_MONOTONIC (θ̇ would be wrong).
        """
        if self._clock_error is not None:
            raise MotorFault(self._clock_error)
        return super().read()

    # pin operations (GpioMotor) ---------------------------------------------------------------
    def _duty(self, fraction: float) -> float:
        period_us = round(1e6 / self.config.pwm_frequency_hz)
        if round(fraction * period_us) == 0:  # lgpio's on-time is whole µs
            return 0.0
        return min(100.0, fraction * 100.0)

    def _pwm(self, gpio: int, duty: float) -> None:
        self._lg.tx_pwm(self._handle, gpio, self.config.pwm_frequency_hz, duty)
        self._pwm_pins.add(gpio)

    def _low(self, gpio: int) -> None:
        if gpio in self._pwm_pins:  # lgpio refuses to stop a PWM that is not running
            self._lg.tx_pwm(self._handle, gpio, 0, 0)
            self._pwm_pins.discard(gpio)
        self._lg.gpio_write(self._handle, gpio, 0)  # a stopped PWM leaves its last level

    def _now_tick(self) -> int:
        return (self._clock_ns() // 1000 - self._latency_us) & TICK_MASK

    def _release(self) -> None:
        try:
            self._lg.gpiochip_close(self._handle)  # frees every line this motor claimed
        except Exception:
            log.debug("gpiochip close failed", exc_info=True)
