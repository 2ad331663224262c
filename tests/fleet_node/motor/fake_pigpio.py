"""A fake ``pigpio.pi`` over the emulated pendulum (:mod:`pendulum_rig`).

It keeps pigpio's observable behaviour where the driver depends on it:

* ``hardware_PWM`` only on GPIO 12/13/18/19, duty 0..1e6, and GPIO 13/19 (12/18) share one PWM
  channel: the latest duty applies to every pin of the channel that is in PWM mode; ``write``
  takes a pin out of PWM mode. An L298N sees IN1 − IN2, so driving both inputs from one channel
  gives no torque, as on the real board.
* uint32 µs ticks that wrap at 2**32; the glitch filter suppresses shorter pulses and delays
  reports by ``steady`` µs; watchdogs report level 2 (TIMEOUT) every period while quiet;
  callbacks get ``(gpio, level, tick)`` as soon as the report exists.
"""

from __future__ import annotations

from typing import Callable

from gym_raas_mqtt.physics import DEFAULT_PARAMS, PendulumParams
from pendulum_rig import TIMEOUT, Call, Callback, PendulumRig

MASK = 0xFFFFFFFF
INPUT, OUTPUT, ALT = 0, 1, 4
EITHER_EDGE, RISING_EDGE, FALLING_EDGE = 2, 0, 1
PWM_CHANNEL = {12: 0, 13: 1, 18: 0, 19: 1}


class FakeError(RuntimeError):
    """What pigpio.error would be: a command the real daemon rejects."""


class FakePi(PendulumRig):
    """Emulated ``pigpio.pi`` with a pendulum on L298N + encoder.

    Args:
        params, theta, theta_dot, counts_per_rev, encoder_direction, physics_dt, encoder_offset,
        forward, backward, enc_a, enc_b: the rig's (:class:`pendulum_rig.PendulumRig`).
        start_tick: initial tick [µs]; put it near 2**32 to exercise wrap-around.
    """

    def __init__(self, params: PendulumParams = DEFAULT_PARAMS, *, start_tick: int = 0,
                 **rig: float) -> None:
        super().__init__(params, **rig)
        self.connected = True
        self.start_tick = start_tick & MASK
        self.modes: dict[int, int] = {}
        self.pud: dict[int, int] = {}
        self.watchdog_ms: dict[int, int] = {}
        self.channel_duty = {0: 0, 1: 0}
        self.channel_freq = {0: 0, 1: 0}
        self.commands: list[tuple] = []  # every pin command, for assertions
        self.callbacks: list[Callback] = []

    # ---- pigpio API ---------------------------------------------------------------------------
    def set_mode(self, gpio: int, mode: int) -> int:
        with self._lock:
            self.commands.append(("set_mode", gpio, mode))
            self.modes[gpio] = mode
        return 0

    def get_mode(self, gpio: int) -> int:
        return self.modes.get(gpio, INPUT)

    def set_pull_up_down(self, gpio: int, pud: int) -> int:
        self.pud[gpio] = pud
        return 0

    def set_glitch_filter(self, gpio: int, steady: int) -> int:
        if not 0 <= steady <= 300_000:
            raise FakeError("PI_BAD_FILTER")
        self.glitch_us[gpio] = steady
        return 0

    def set_watchdog(self, gpio: int, timeout_ms: int) -> int:
        if not 0 <= timeout_ms <= 60_000:
            raise FakeError("PI_BAD_WDOG_TIMEOUT")
        with self._lock:
            self.watchdog_ms[gpio] = timeout_ms
            self.arm_watchdog(gpio, timeout_ms * 1000)
        return 0

    def read(self, gpio: int) -> int:
        with self._lock:
            return self.levels.get(gpio, 0)

    def write(self, gpio: int, level: int) -> int:
        self._check()
        with self._lock:
            self.commands.append(("write", gpio, level))
            self.modes[gpio] = OUTPUT
            self.levels[gpio] = 1 if level else 0
            self.note_drive()
        return 0

    def hardware_PWM(self, gpio: int, freq: int, duty: int) -> int:  # noqa: N802 - pigpio's name
        self._check()
        if gpio not in PWM_CHANNEL:
            raise FakeError("PI_NOT_HPWM_GPIO")
        if not 0 <= duty <= 1_000_000 or duty != int(duty):
            raise FakeError("PI_BAD_HPWM_DUTY")
        with self._lock:
            self.commands.append(("hardware_PWM", gpio, freq, duty))
            self.modes[gpio] = ALT
            ch = PWM_CHANNEL[gpio]
            self.channel_duty[ch], self.channel_freq[ch] = int(duty), freq
            self.note_drive()
        return 0

    def get_current_tick(self) -> int:
        self._check()
        with self._lock:
            return (self.start_tick + self.t_us) & MASK

    def callback(self, gpio: int, edge: int = RISING_EDGE,
                 func: Callable[[int, int, int], None] | None = None) -> Callback:
        if func is None:
            raise NotImplementedError("tally callbacks are not emulated")
        cb = Callback(gpio, func, edge=edge)
        with self._lock:
            self.callbacks.append(cb)
        return cb

    def stop(self) -> None:
        self.stop_realtime()
        self.connected = False

    def _check(self) -> None:
        if not self.connected:
            raise ConnectionError("pigpio connection closed")

    # ---- the rig's hooks ----------------------------------------------------------------------
    def pin_duty(self, gpio: int) -> float:
        """Fraction of time ``gpio`` is high (PWM duty, or its output level)."""
        mode = self.modes.get(gpio, INPUT)
        if mode == ALT:
            return self.channel_duty[PWM_CHANNEL[gpio]] / 1e6
        if mode == OUTPUT:
            return float(self.levels.get(gpio, 0))
        return 0.0

    def calls_for(self, gpio: int, level: int, t_us: int) -> list[Call]:
        tick = (self.start_tick + t_us) & MASK
        return [(cb.func, (gpio, level, tick)) for cb in self.callbacks
                if cb.active and cb.gpio == gpio and (
                    cb.edge == EITHER_EDGE or level == TIMEOUT
                    or (cb.edge == RISING_EDGE) == (level == 1))]

    # ---- the contract suite's view (gpio_rigs) ------------------------------------------------
    def held_low(self, gpio: int) -> bool:
        """``gpio`` is a plain output at 0 (out of PWM mode)."""
        return self.modes.get(gpio) == OUTPUT and self.levels.get(gpio) == 0

    def break_io(self) -> None:
        """The pigpiod connection drops: every command fails from now on."""
        self.connected = False
