"""The emulated pendulum both fake GPIO libraries drive: L298N inputs → torque → physics → edges.

The one mock the project allows (the Pi's GPIO). :class:`PendulumRig` is the hardware: the duty of
the two L298N inputs gives the action (an L298N sees IN1 − IN2), gym_raas_mqtt.physics integrates
the pendulum at ``physics_dt`` (1 kHz), and the shaft's motion becomes quadrature edges (A leads B
for increasing count) at interpolated µs times. Reports go through the library's glitch filter
(shorter pulses dropped, reports delayed by ``steady`` µs) and watchdogs (level 2 = TIMEOUT), then
reach the callbacks ``delivery_delay_us`` after their timestamp.

A subclass is one library's API over the rig (:mod:`fake_pigpio`, :mod:`fake_lgpio`): it says how
much each input is driven (:meth:`PendulumRig.pin_duty`) and how a report reaches its callbacks
(:meth:`PendulumRig.calls_for`).

Time is simulated: :meth:`PendulumRig.advance` runs the emulation and delivers the callbacks
synchronously, so tests are deterministic and fast. :meth:`PendulumRig.start_realtime` instead
advances with the wall clock from a background thread (as the libraries' callback threads do) for
running under the motor node's real-time loop. :meth:`PendulumRig.spin` turns the shaft at a set
speed (a hand or a drill on the rod), e.g. at the over-speed limit.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from typing import Any, Callable

from gym_raas_mqtt import physics
from gym_raas_mqtt.physics import DEFAULT_PARAMS, PendulumParams

TIMEOUT = 2
GRAY = (0b00, 0b10, 0b11, 0b01)  # (A << 1 | B) for position index mod 4; A leads B going up

Call = tuple[Callable[..., None], tuple]


class Callback:
    """A registered edge callback: ``func`` for reports on ``gpio`` until :meth:`cancel`.

    Attributes:
        edge: the library's edge selector (pigpio filters by it; lgpio by the alert's claim).
        chip: the chip number (lgpio), None for pigpio.
    """

    def __init__(self, gpio: int, func: Callable[..., None], edge: int | None = None,
                 chip: int | None = None) -> None:
        self.gpio, self.func, self.edge, self.chip, self.active = gpio, func, edge, chip, True

    def cancel(self) -> None:
        """No more calls."""
        self.active = False


class PendulumRig:
    """An emulated pendulum on an L298N + quadrature encoder.

    Args:
        params: model of the emulated pendulum (a, b, c, limits, pwm mapping).
        theta: initial angle [rad] (π = hanging); the encoder reads index 0 there.
        theta_dot: initial velocity [rad/s].
        counts_per_rev: the *true* encoder resolution (default params.counts_per_rev).
        encoder_direction: +1 if θ increasing makes A lead B.
        physics_dt: internal integration step [s].
        encoder_offset: fraction of a count the shaft sits past an edge at θ = theta.
        forward, backward, enc_a, enc_b: BCM pins (defaults of GpioConfig).
        delivery_delay_us: reports reach the callbacks this long after their timestamp [µs].
        watchdog_repeats: a watchdog reports every period while quiet (pigpio), or once per
            quiet spell and only after a first edge (lgpio).

    Attributes:
        edges: encoder edges the shaft has made (before any filter).
        overlaps: pin commands after which both L298N inputs were driven at once.
    """

    def __init__(self, params: PendulumParams = DEFAULT_PARAMS, *, theta: float = math.pi,
                 theta_dot: float = 0.0, counts_per_rev: int | None = None,
                 encoder_direction: int = 1, physics_dt: float = 1e-3,
                 encoder_offset: float = 0.5, forward: int = 13, backward: int = 19,
                 enc_a: int = 15, enc_b: int = 14, delivery_delay_us: int = 0,
                 watchdog_repeats: bool = True) -> None:
        self.params = params
        self._fine = params.replace(dt=physics_dt)
        self.physics_dt = physics_dt
        self.theta, self.theta_dot = float(theta), float(theta_dot)
        self._theta0 = float(theta)
        self.cpr = counts_per_rev or params.counts_per_rev
        self.enc_dir = encoder_direction
        self.enc_offset = encoder_offset
        self.forward, self.backward, self.enc_a, self.enc_b = forward, backward, enc_a, enc_b
        self.delivery_delay_us = delivery_delay_us
        self.watchdog_repeats = watchdog_repeats
        self.t_us = 0  # simulated µs since construction
        self.levels: dict[int, int] = {}
        self.glitch_us: dict[int, int] = {}
        self.watchdog_us: dict[int, int] = {}
        self._wd_last: dict[int, int] = {}  # last report time per watched gpio [µs]
        self._wd_armed: dict[int, bool] = {}
        self._pending: list[tuple[int, int, int, int]] = []  # heap (t_us, seq, gpio, level)
        self._ready: list[tuple[int, int, int]] = []  # reports awaiting delivery (t, gpio, level)
        self._seq = 0
        self._lock = threading.RLock()
        self._rt_thread: threading.Thread | None = None
        self._rt_stop = threading.Event()
        self.hand_speed: float | None = None
        self.edges = 0
        self.overlaps = 0
        self._pos = self._position(self.theta)
        self._index0 = math.floor(self._pos)
        state = GRAY[self._index0 % 4]
        self.levels[enc_a], self.levels[enc_b] = state >> 1, state & 1

    # ---- the library's side (subclasses) -----------------------------------------------------
    def pin_duty(self, gpio: int) -> float:
        """Fraction of time ``gpio`` is high (PWM duty, or its output level)."""
        raise NotImplementedError

    def calls_for(self, gpio: int, level: int, t_us: int) -> list[Call]:
        """The callback invocations a report ``(gpio, level)`` at rig time ``t_us`` makes."""
        raise NotImplementedError

    def arm_watchdog(self, gpio: int, period_us: int) -> None:
        """Start (``period_us`` > 0) or stop the watchdog of input ``gpio``."""
        with self._lock:
            self.watchdog_us[gpio] = period_us
            self._wd_last[gpio] = self.t_us
            self._wd_armed[gpio] = self.watchdog_repeats

    def note_drive(self) -> None:
        """Record a hazard if both L298N inputs are driven after a pin command."""
        if self.pin_duty(self.forward) > 0 and self.pin_duty(self.backward) > 0:
            self.overlaps += 1

    # ---- the emulated L298N + pendulum -------------------------------------------------------
    def torque_u(self) -> float:
        """The action the driver's inputs amount to: (duty(IN1) − duty(IN2)) in units of u."""
        p = self.params
        return ((self.pin_duty(self.forward) - self.pin_duty(self.backward))
                * p.pwm_range / p.pwm_per_unit)

    def true_count(self) -> int:
        """Edges the shaft is past its start, signed as a correct decoder counts them."""
        return math.floor(self._pos) - self._index0

    def _position(self, theta: float) -> float:
        return self.enc_offset + self.enc_dir * (theta - self._theta0) * self.cpr / (2 * math.pi)

    def _push(self, t_us: int, gpio: int, level: int) -> None:
        self._seq += 1
        heapq.heappush(self._pending, (t_us, self._seq, gpio, level))

    def _move(self, theta_new: float, t0: int, t1: int) -> None:
        """Encoder edges for the shaft moving linearly from self.theta to theta_new in [t0, t1]."""
        p0, p1 = self._pos, self._position(theta_new)
        n0, n1 = math.floor(p0), math.floor(p1)
        if n1 != n0:
            step = 1 if n1 > n0 else -1
            for k in range(n0, n1, step):
                boundary = k + 1 if step > 0 else k
                t = t0 + round((boundary - p0) / (p1 - p0) * (t1 - t0))
                old, new = GRAY[k % 4], GRAY[(k + step) % 4]
                gpio = self.enc_a if (old ^ new) & 2 else self.enc_b
                level = (new >> 1) if gpio == self.enc_a else (new & 1)
                self.levels[gpio] = level
                self.edges += 1
                self._push(t + self.glitch_us.get(gpio, 0), gpio, level)  # after the filter
        self._pos = p1
        self.theta = theta_new

    def _collect_until(self, t_us: int) -> list[Call]:
        """Reports up to ``t_us`` (filtered edges, watchdogs) → the calls now due."""
        out = []
        while self._pending and self._pending[0][0] <= t_us:
            t, _, gpio, level = heapq.heappop(self._pending)
            self._wd_last[gpio], self._wd_armed[gpio] = t, True
            out.append((t, gpio, level))
        for gpio, period in self.watchdog_us.items():  # no report for a period → level 2
            while (period and self._wd_armed.get(gpio)
                   and t_us - self._wd_last.get(gpio, 0) >= period):
                t = self._wd_last[gpio] + period
                self._wd_last[gpio], self._wd_armed[gpio] = t, self.watchdog_repeats
                out.append((t, gpio, TIMEOUT))
        out.sort(key=lambda e: e[0])
        self._ready.extend(out)
        due = t_us - self.delivery_delay_us
        n = 0
        while n < len(self._ready) and self._ready[n][0] <= due:
            n += 1
        calls = [c for t, gpio, level in self._ready[:n] for c in self.calls_for(gpio, level, t)]
        del self._ready[:n]
        return calls

    def _run(self, steps: int, move: Callable[[], tuple[float, float]]) -> None:
        dt_us = round(self.physics_dt * 1e6)
        for _ in range(steps):
            with self._lock:
                th, thd = move()
                t0 = self.t_us
                self.t_us += dt_us
                self._move(th, t0, self.t_us)
                self.theta_dot = thd
                calls = self._collect_until(self.t_us)
            for func, args in calls:  # outside the lock, like the libraries' threads
                func(*args)

    def advance(self, seconds: float) -> None:
        """Run the emulation for ``seconds`` of simulated time, delivering callbacks."""
        def move() -> tuple[float, float]:
            if self.hand_speed is not None:
                return self.theta + self.hand_speed * self.physics_dt, self.hand_speed
            return physics.step(self._fine, self.theta, self.theta_dot, self.torque_u())

        self._run(max(1, round(seconds / self.physics_dt)), move)

    def rotate_by(self, angle: float, seconds: float) -> None:
        """Turn the shaft by hand: ``angle`` [rad] at constant speed in ``seconds`` (no physics)."""
        steps = max(1, round(seconds / self.physics_dt))
        start, i = self.theta, iter(range(1, steps + 1))
        self._run(steps, lambda: (start + angle * next(i) / steps, angle / seconds))
        self.theta_dot = 0.0

    def spin(self, speed_rad_s: float | None) -> None:
        """Hold the shaft at ``speed_rad_s`` from now on (None: let go, physics again)."""
        with self._lock:
            self.hand_speed = speed_rad_s

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

        self._rt_thread = threading.Thread(target=run, name="emulated-rig", daemon=True)
        self._rt_thread.start()

    def stop_realtime(self) -> None:
        """Stop the wall-clock thread (if running)."""
        if self._rt_thread:
            self._rt_stop.set()
            self._rt_thread.join(timeout=5)
            self._rt_thread = None

    def describe(self) -> dict[str, Any]:
        """Where the rig is: θ, θ̇, simulated time, edges made (for assertion messages)."""
        return {"theta": self.theta, "theta_dot": self.theta_dot, "t_us": self.t_us,
                "edges": self.edges, "true_count": self.true_count()}
