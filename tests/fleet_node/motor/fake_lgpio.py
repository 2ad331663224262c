"""A fake ``lgpio`` module over the emulated pendulum (:mod:`pendulum_rig`): one emulated chip.

It keeps lgpio 0.2's observable behaviour (PY_LGPIO/lgpio.py and lgGpio.c) where the driver
depends on it:

* ``gpiochip_open(n)`` only for the header's chip (``chip``; label ``pinctrl-rp1``), handle
  ``n << 16 | k``; ``gpiochip_close`` frees every line (outputs fall to their pull-down).
* ``tx_pwm`` is per pin (no shared channel), 0.1..10 000 Hz, duty 0..100 %, on whole-µs on-times;
  ``tx_pwm(h, g, 0, 0)`` stops a running PWM *leaving the pin at its last level* (here: high, the
  worst case) and is refused (``bad PWM micros``) when no PWM runs; ``gpio_write`` does not stop a
  PWM (lgpio's transmit thread keeps toggling).
* alerts only on lines claimed with ``gpio_claim_alert``; debounce = pigpio's glitch filter;
  the watchdog reports TIMEOUT once per quiet spell, and not before a first edge; callbacks get
  ``(chip, gpio, level, timestamp_ns)`` on CLOCK_MONOTONIC, ``delivery_delay_us`` after the
  timestamp (lgpio holds alerts 0.5 ms to sort them, and polls every 0.5 ms).
"""

from __future__ import annotations

from typing import Callable

from gym_raas_mqtt.physics import DEFAULT_PARAMS, PendulumParams
from pendulum_rig import Call, Callback, PendulumRig

# lgpio 0.2.2's constants
SET_PULL_UP = 32
RISING_EDGE, FALLING_EDGE, BOTH_EDGES = 1, 2, 3
TIMEOUT = 2
PWM_MIN_HZ, PWM_MAX_HZ = 0.1, 10_000
OUTPUT, ALERT = "output", "alert"


class error(Exception):  # noqa: N801 - lgpio's name
    """What lgpio.error is: a call the library refuses."""


class FakeLgpio(PendulumRig):
    """Emulated ``lgpio`` module with a pendulum on L298N + encoder behind one GPIO chip.

    Args:
        params, theta, theta_dot, counts_per_rev, encoder_direction, physics_dt, encoder_offset,
        forward, backward, enc_a, enc_b: the rig's (:class:`pendulum_rig.PendulumRig`).
        chip: the header chip's number (0 on a Pi 5 with kernel >= 6.6.45, 4 before).
        label: that chip's label.
        start_ns: CLOCK_MONOTONIC at construction [ns].
        delivery_delay_us: alerts reach the callbacks this long after their timestamp [µs].
        busy: lines another user holds (claiming them fails, like the UART's 14/15).
    """

    error = error
    SET_PULL_UP, RISING_EDGE, FALLING_EDGE, BOTH_EDGES = (SET_PULL_UP, RISING_EDGE,
                                                          FALLING_EDGE, BOTH_EDGES)
    TIMEOUT = TIMEOUT

    def __init__(self, params: PendulumParams = DEFAULT_PARAMS, *, chip: int = 0,
                 label: str = "pinctrl-rp1", start_ns: int = 10**12,
                 delivery_delay_us: int = 500, busy: tuple[int, ...] = (), **rig: float) -> None:
        super().__init__(params, delivery_delay_us=delivery_delay_us, watchdog_repeats=False,
                         **rig)
        self.chip, self.label, self.start_ns = chip, label, start_ns
        self.busy = set(busy)
        self.open_handles: set[int] = set()
        self.modes: dict[int, str] = {}
        self.pulls: dict[int, int] = {}
        self.pwm: dict[int, tuple[float, float]] = {}  # gpio → (frequency, duty %) while running
        self.commands: list[tuple] = []
        self.callbacks: list[Callback] = []
        self.failing = False

    # ---- lgpio API ----------------------------------------------------------------------------
    def gpiochip_open(self, gpiochip: int) -> int:
        if gpiochip != self.chip:
            raise error("can not open gpiochip")
        handle = (gpiochip << 16) | (len(self.open_handles) + 1)
        self.open_handles.add(handle)
        return handle

    def gpiochip_close(self, handle: int) -> int:
        self._check(handle)
        with self._lock:
            self.open_handles.discard(handle)
            for g in list(self.modes):
                self._free(g)
        return 0

    def gpio_get_chip_info(self, handle: int) -> list:
        self._check(handle)
        return [0, 54, f"gpiochip{self.chip}", self.label]

    def gpio_claim_output(self, handle: int, gpio: int, level: int = 0, lFlags: int = 0) -> int:  # noqa: N803
        self._claim(handle, gpio, OUTPUT)
        with self._lock:
            self.levels[gpio] = 1 if level else 0
            self.note_drive()
        return 0

    def gpio_claim_alert(self, handle: int, gpio: int, eFlags: int, lFlags: int = 0,  # noqa: N803
                         notify_handle: int | None = None) -> int:
        if eFlags != BOTH_EDGES:
            raise NotImplementedError("only BOTH_EDGES alerts are emulated")
        self._claim(handle, gpio, ALERT)
        self.pulls[gpio] = lFlags
        return 0

    def gpio_free(self, handle: int, gpio: int) -> int:
        self._check(handle)
        with self._lock:
            self._free(gpio)
        return 0

    def gpio_read(self, handle: int, gpio: int) -> int:
        self._check(handle)
        with self._lock:
            return self.levels.get(gpio, 0)

    def gpio_write(self, handle: int, gpio: int, level: int) -> int:
        self._io(handle, gpio)
        with self._lock:
            self.commands.append(("gpio_write", gpio, level))
            self.levels[gpio] = 1 if level else 0
            self.note_drive()
        return 0

    def tx_pwm(self, handle: int, gpio: int, pwm_frequency: float, pwm_duty_cycle: float,
               pulse_offset: int = 0, pulse_cycles: int = 0) -> int:
        self._io(handle, gpio)
        with self._lock:
            if pwm_frequency == 0:
                if gpio not in self.pwm:
                    raise error("bad PWM micros")
                _, duty = self.pwm.pop(gpio)
                self.levels[gpio] = 1 if duty > 0 else 0  # stopped mid-period, at worst high
            else:
                if not PWM_MIN_HZ <= pwm_frequency <= PWM_MAX_HZ:
                    raise error("bad PWM frequency")
                if not 0 <= pwm_duty_cycle <= 100:
                    raise error("bad PWM duty cycle")
                self.pwm[gpio] = (pwm_frequency, pwm_duty_cycle)
            self.commands.append(("tx_pwm", gpio, pwm_frequency, pwm_duty_cycle))
            self.note_drive()
        return 9  # entries left in lgpio's PWM queue

    def gpio_set_debounce_micros(self, handle: int, gpio: int, debounce_micros: int) -> int:
        self._check(handle)
        self.glitch_us[gpio] = debounce_micros
        return 0

    def gpio_set_watchdog_micros(self, handle: int, gpio: int, watchdog_micros: int) -> int:
        self._check(handle)
        self.arm_watchdog(gpio, watchdog_micros)
        return 0

    def callback(self, handle: int, gpio: int, edge: int = RISING_EDGE,
                 func: Callable[[int, int, int, int], None] | None = None) -> Callback:
        if func is None:
            raise NotImplementedError("tally callbacks are not emulated")
        cb = Callback(gpio, func, chip=handle >> 16)
        with self._lock:
            self.callbacks.append(cb)
        return cb

    # ---- the clock ----------------------------------------------------------------------------
    def monotonic_ns(self) -> int:
        """CLOCK_MONOTONIC of the emulation [ns] (the alerts' clock)."""
        with self._lock:
            return self.start_ns + self.t_us * 1000

    # ---- the rig's hooks ----------------------------------------------------------------------
    def pin_duty(self, gpio: int) -> float:
        """Fraction of time ``gpio`` is high (PWM duty, or its output level)."""
        if gpio in self.pwm:
            return self.pwm[gpio][1] / 100.0
        if self.modes.get(gpio) == OUTPUT:
            return float(self.levels.get(gpio, 0))
        return 0.0  # a freed line: the L298N input's pull-down

    def calls_for(self, gpio: int, level: int, t_us: int) -> list[Call]:
        if self.modes.get(gpio) != ALERT:
            return []
        ns = self.start_ns + t_us * 1000
        return [(cb.func, (cb.chip, gpio, level, ns)) for cb in self.callbacks
                if cb.active and cb.gpio == gpio]

    # ---- the contract suite's view (gpio_rigs) ------------------------------------------------
    def held_low(self, gpio: int) -> bool:
        """``gpio`` is a claimed output at 0 with no PWM running."""
        return (self.modes.get(gpio) == OUTPUT and gpio not in self.pwm
                and self.levels.get(gpio) == 0)

    def break_io(self) -> None:
        """The chip stops answering: every pin command fails from now on (an ioctl error)."""
        self.failing = True

    # ---- internals ----------------------------------------------------------------------------
    def _check(self, handle: int) -> None:
        if handle not in self.open_handles:
            raise error("unknown handle")

    def _io(self, handle: int, gpio: int) -> None:
        self._check(handle)
        if self.failing:
            raise error("bad write")
        if self.modes.get(gpio) != OUTPUT:
            raise error("GPIO not allocated")

    def _claim(self, handle: int, gpio: int, mode: str) -> None:
        self._check(handle)
        if gpio in self.busy:
            raise error("GPIO busy")
        with self._lock:
            self.modes[gpio] = mode

    def _free(self, gpio: int) -> None:
        mode = self.modes.pop(gpio, None)
        self.pwm.pop(gpio, None)
        if mode == OUTPUT:
            self.levels[gpio] = 0
