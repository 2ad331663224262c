"""A fake ``pigpio.pi`` that emulates the pendulum: PWM → torque → physics → quadrature edges.

The one mock the project allows (the Pi's GPIO). It keeps pigpio's observable behaviour where the
driver depends on it:

* ``hardware_PWM`` only on GPIO 12/13/18/19, duty 0..1e6, and GPIO 13/19 (12/18) share one PWM
  channel: the latest duty applies to every pin of the channel that is in PWM mode; ``write``
  takes a pin out of PWM mode. An L298N sees IN1 − IN2, so driving both inputs from one channel
  gives no torque, as on the real board.
* encoder edges in quadrature order (A leads B for increasing count) with uint32 µs ticks that
  wrap at 2**32; the glitch filter suppresses shorter pulses and delays reports by ``steady`` µs;
  watchdogs report level 2 (TIMEOUT); callbacks get ``(gpio, level, tick)``.

Time is simulated: :meth:`FakePi.advance` integrates gym_raas_mqtt.physics at ``physics_dt``
(1 kHz) and delivers the callbacks synchronously, so tests are deterministic and fast.
:meth:`FakePi.start_realtime` instead advances with the wall clock from a background thread (as
pigpio's callback thread does) for running under the motor node's real-time loop.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from typing import Callable

from gym_raas_mqtt import physics
from gym_raas_mqtt.physics import DEFAULT_PARAMS, PendulumParams

MASK = 0xFFFFFFFF
INPUT, OUTPUT, ALT = 0, 1, 4
EITHER_EDGE, RISING_EDGE, FALLING_EDGE = 2, 0, 1
TIMEOUT = 2
PWM_CHANNEL = {12: 0, 13: 1, 18: 0, 19: 1}
GRAY = (0b00, 0b10, 0b11, 0b01)  # (A << 1 | B) for position index mod 4; A leads B going up


class FakeError(RuntimeError):
    """What pigpio.error would be: a command the real daemon rejects."""


class _Callback:
    def __init__(self, pi: "FakePi", gpio: int, edge: int, func: Callable[[int, int, int], None]):
        self.pi, self.gpio, self.edge, self.func, self.active = pi, gpio, edge, func, True

    def cancel(self) -> None:
        self.active = False


class FakePi:
    """Emulated ``pigpio.pi`` with a pendulum on L298N + encoder.

    Args:
        params: model of the emulated pendulum (a, b, c, limits, pwm mapping).
        theta: initial angle [rad] (π = hanging); the encoder reads index 0 there.
        theta_dot: initial velocity [rad/s].
        counts_per_rev: the *true* encoder resolution (default params.counts_per_rev).
        encoder_direction: +1 if θ increasing makes A lead B.
        start_tick: initial tick [µs]; put it near 2**32 to exercise wrap-around.
        physics_dt: internal integration step [s].
        encoder_offset: fraction of a count the shaft sits past an edge at θ = theta.
        forward, backward, enc_a, enc_b: BCM pins (defaults of PigpioConfig).
    """

    def __init__(self, params: PendulumParams = DEFAULT_PARAMS, *, theta: float = math.pi,
                 theta_dot: float = 0.0, counts_per_rev: int | None = None,
                 encoder_direction: int = 1, start_tick: int = 0, physics_dt: float = 1e-3,
                 encoder_offset: float = 0.5, forward: int = 13, backward: int = 19,
                 enc_a: int = 15, enc_b: int = 14) -> None:
        self.connected = True
        self.params = params
        self._fine = params.replace(dt=physics_dt)
        self.physics_dt = physics_dt
        self.theta, self.theta_dot = float(theta), float(theta_dot)
        self._theta0 = float(theta)
        self.cpr = counts_per_rev or params.counts_per_rev
        self.enc_dir = encoder_direction
        self.enc_offset = encoder_offset
        self.forward, self.backward, self.enc_a, self.enc_b = forward, backward, enc_a, enc_b
        self.start_tick = start_tick & MASK
        self.t_us = 0  # simulated µs since construction
        self.modes: dict[int, int] = {}
        self.levels: dict[int, int] = {}
        self.pud: dict[int, int] = {}
        self.glitch_us: dict[int, int] = {}
        self.watchdog_ms: dict[int, int] = {}
        self._wd_last: dict[int, int] = {}  # last change/report time per watched gpio [µs]
        self.channel_duty = {0: 0, 1: 0}
        self.channel_freq = {0: 0, 1: 0}
        self.commands: list[tuple] = []  # every pin command, for assertions
        self.callbacks: list[_Callback] = []
        self._pending: list[tuple[int, int, int, int]] = []  # heap (t_us, seq, gpio, level)
        self._seq = 0
        self._lock = threading.RLock()
        self._rt_thread: threading.Thread | None = None
        self._rt_stop = threading.Event()
        self.u_history: list[float] = []
        self._pos = self._position(self.theta)
        state = GRAY[math.floor(self._pos) % 4]
        self.levels[enc_a], self.levels[enc_b] = state >> 1, state & 1

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
            self._wd_last[gpio] = self.t_us
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
        return 0

    def get_current_tick(self) -> int:
        self._check()
        with self._lock:
            return (self.start_tick + self.t_us) & MASK

    def callback(self, gpio: int, edge: int = RISING_EDGE,
                 func: Callable[[int, int, int], None] | None = None) -> _Callback:
        if func is None:
            raise NotImplementedError("tally callbacks are not emulated")
        cb = _Callback(self, gpio, edge, func)
        with self._lock:
            self.callbacks.append(cb)
        return cb

    def stop(self) -> None:
        self.stop_realtime()
        self.connected = False

    def _check(self) -> None:
        if not self.connected:
            raise ConnectionError("pigpio connection closed")

    # ---- the emulated L298N + pendulum --------------------------------------------------------
    def pin_duty(self, gpio: int) -> float:
        """Fraction of time ``gpio`` is high (PWM duty, or its output level)."""
        mode = self.modes.get(gpio, INPUT)
        if mode == ALT:
            return self.channel_duty[PWM_CHANNEL[gpio]] / 1e6
        if mode == OUTPUT:
            return float(self.levels.get(gpio, 0))
        return 0.0

    def torque_u(self) -> float:
        """The action the driver's inputs amount to: (duty(IN1) − duty(IN2)) in units of u."""
        p = self.params
        return ((self.pin_duty(self.forward) - self.pin_duty(self.backward))
                * p.pwm_range / p.pwm_per_unit)

    def _position(self, theta: float) -> float:
        return self.enc_offset + self.enc_dir * (theta - self._theta0) * self.cpr / (2 * math.pi)

    def _push(self, t_us: int, gpio: int, level: int) -> None:
        self._seq += 1
        heapq.heappush(self._pending, (t_us, self._seq, gpio, level))

    def _emit_edge(self, t_us: int, gpio: int, level: int) -> None:
        """A level change on an input at ``t_us``: reported after the glitch filter delay."""
        self.levels[gpio] = level
        self._push(t_us + self.glitch_us.get(gpio, 0), gpio, level)

    def _move(self, theta_new: float, t0: int, t1: int) -> None:
        """Encoder edges for the shaft moving linearly from self.theta to theta_new in [t0, t1]."""
        p0, p1 = self._pos, self._position(theta_new)
        n0, n1 = math.floor(p0), math.floor(p1)
        if n1 != n0:
            step = 1 if n1 > n0 else -1
            for k in range(n0, n1, step):
                boundary = k + 1 if step > 0 else k
                frac = (boundary - p0) / (p1 - p0)
                t = t0 + round(frac * (t1 - t0))
                old, new = GRAY[k % 4], GRAY[(k + step) % 4]
                changed = old ^ new
                gpio = self.enc_a if changed & 2 else self.enc_b
                level = (new >> 1) if changed & 2 else (new & 1)
                self._emit_edge(t, gpio, level)
        self._pos = p1
        self.theta = theta_new

    def _deliver_until(self, t_us: int) -> list[tuple[Callable, int, int, int]]:
        out = []
        while self._pending and self._pending[0][0] <= t_us:
            t, _, gpio, level = heapq.heappop(self._pending)
            if level != TIMEOUT:
                self._wd_last[gpio] = t
            out.append((gpio, level, t))
        for gpio, ms in self.watchdog_ms.items():  # watchdog: no change for ms → level 2
            while ms and t_us - self._wd_last.get(gpio, 0) >= ms * 1000:
                t = self._wd_last.get(gpio, 0) + ms * 1000
                self._wd_last[gpio] = t
                out.append((gpio, TIMEOUT, t))
        out.sort(key=lambda e: e[2])
        calls = []
        for gpio, level, t in out:
            for cb in self.callbacks:
                if cb.active and cb.gpio == gpio and (
                        cb.edge == EITHER_EDGE or level == TIMEOUT
                        or (cb.edge == RISING_EDGE) == (level == 1)):
                    calls.append((cb.func, gpio, level, (self.start_tick + t) & MASK))
        return calls

    def advance(self, seconds: float) -> None:
        """Run the emulation for ``seconds`` of simulated time, delivering callbacks."""
        steps = max(1, round(seconds / self.physics_dt))
        dt_us = round(self.physics_dt * 1e6)
        for _ in range(steps):
            with self._lock:
                u = self.torque_u()
                th, thd = physics.step(self._fine, self.theta, self.theta_dot, u)
                self.theta_dot = thd
                t0 = self.t_us
                self.t_us += dt_us
                self._move(th, t0, self.t_us)
                calls = self._deliver_until(self.t_us)
            for func, gpio, level, tick in calls:  # outside the lock, like pigpio's thread
                func(gpio, level, tick)

    def rotate_by(self, angle: float, seconds: float) -> None:
        """Turn the shaft by hand: ``angle`` [rad] at constant speed in ``seconds`` (no physics)."""
        steps = max(1, round(seconds / self.physics_dt))
        dt_us = round(self.physics_dt * 1e6)
        start = self.theta
        for i in range(1, steps + 1):
            with self._lock:
                t0 = self.t_us
                self.t_us += dt_us
                self._move(start + angle * i / steps, t0, self.t_us)
                self.theta_dot = angle / seconds
                calls = self._deliver_until(self.t_us)
            for func, gpio, level, tick in calls:
                func(gpio, level, tick)
        self.theta_dot = 0.0

    def pulse(self, gpio: int, width_us: int) -> None:
        """A glitch: ``gpio`` toggles now and back after ``width_us`` (filtered if shorter than
        the glitch filter). Delivered by the next :meth:`advance`."""
        with self._lock:
            steady = self.glitch_us.get(gpio, 0)
            if width_us < steady:
                return
            level = self.levels.get(gpio, 0)
            self._push(self.t_us + steady, gpio, 1 - level)
            self._push(self.t_us + width_us + steady, gpio, level)

    # ---- wall-clock mode ----------------------------------------------------------------------
    def start_realtime(self) -> None:
        """Advance simulated time with the wall clock from a background thread."""
        if self._rt_thread:
            return
        self._rt_stop.clear()

        def run() -> None:
            t_wall0, t_sim0 = time.monotonic(), self.t_us
            while not self._rt_stop.wait(self.physics_dt):
                behind = (time.monotonic() - t_wall0) * 1e6 - (self.t_us - t_sim0)
                n = int(behind // (self.physics_dt * 1e6))
                if n > 0:
                    self.advance(n * self.physics_dt)

        self._rt_thread = threading.Thread(target=run, name="fake-pigpio", daemon=True)
        self._rt_thread.start()

    def stop_realtime(self) -> None:
        if self._rt_thread:
            self._rt_stop.set()
            self._rt_thread.join(timeout=5)
            self._rt_thread = None
