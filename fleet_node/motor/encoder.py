"""Quadrature decoding of the pendulum's encoder: 4× state table, errors, tick unwrap, velocity.

Hardware-free: :class:`QuadratureDecoder` consumes ``(channel, level, tick)`` events exactly as
pigpio's edge callbacks deliver them (lgpio's alerts after ``tick = ns // 1000 mod 2**32``), so
the same code is tested on scripted edge sequences and used by both GPIO backends
(:class:`~fleet_node.motor.gpio_motor.GpioMotor`).

Conventions:
    The state is ``(A << 1) | B``. A leading B (00 → 10 → 11 → 01 → 00) counts +1 per edge, the
    reverse −1: four counts per encoder line cycle ("4× decoding"). A transition in which both
    inputs change at once (same tick) cannot be decoded and is counted in :attr:`errors`, not as a
    step; so is a level report that repeats the known level (an edge was lost in between).

Velocity method ("M/T" with a staleness bound), all in µs ticks:
    1. Keep the tick and count of the last 64 valid edges.
    2. At read time ``now``, take the edges in (now − window, now] — at least the last two, as long
       as they are younger than ``max_age``. If that span has more than 4 intervals, drop the oldest
       so it covers a whole number of line cycles (cancels the disc's A/B phase and duty errors).
    3. v = (count_last − count_first) / (tick_last − tick_first): edge-to-edge timing has no window
       quantisation (the time resolution is pigpiod's sample period, 5 µs by default), unlike
       counting edges in a fixed window (resolution 2π/(counts_per_rev·window) = 0.7 rad/s for
       445 counts/rev and 20 ms).
    4. Staleness: if no edge came for ``age`` µs the shaft moved less than one count since, so
       |v| ≤ 1 count/age; with no edge for ``max_age`` (or a watchdog report that long after
       the last edge) v = 0. Edges must have arrived by ``now``: a backend whose reports come
       late reads the decoder at a ``now`` that far in the past (lgpio_motor).

Tick wrap-around: pigpio ticks are uint32 µs and wrap every 2**32 µs ≈ 71.6 min. Every tick seen
(edges, watchdog reports, the current tick at read time) is unwrapped onto a 64-bit time line by
its signed 32-bit difference to the newest tick so far; the motor loop's reads (20 Hz) and pigpio's
watchdog (``max_age``) keep ticks arriving far more often than every 35 min, so the difference is
never ambiguous.
"""

from __future__ import annotations

import math
import threading
from collections import deque

TICK_MASK = 0xFFFFFFFF
"""pigpio ticks are unsigned 32-bit microseconds."""
_HALF = 1 << 31
_WRAP = 1 << 32

CHANNEL_A = 1
"""Bit of channel A in the state (``state = A << 1 | B``)."""
CHANNEL_B = 0
"""Bit of channel B in the state."""

TIMEOUT = 2
"""The level pigpio reports for a watchdog timeout (``pigpio.TIMEOUT``), not an edge."""

_X = None  # both inputs changed: direction unknown
TRANSITIONS: tuple[int | None, ...] = (
    # new:  00  01  10  11         old
    0, -1, +1, _X,  # 00
    +1, 0, _X, -1,  # 01
    -1, _X, 0, +1,  # 10
    _X, +1, -1, 0,  # 11
)
"""Count change for ``TRANSITIONS[old << 2 | new]``; ``None`` marks an invalid double transition."""

HISTORY = 64
"""Edges kept for the velocity estimate (>= window × top edge rate: 20 ms × 1.4 kHz = 28)."""


def tick_diff(later: int, earlier: int) -> int:
    """Signed difference of two uint32 µs ticks (pigpio's ``tickDiff`` but signed), in µs."""
    d = (later - earlier) & TICK_MASK
    return d - _WRAP if d >= _HALF else d


class QuadratureDecoder:
    """Thread-safe 4× quadrature decoder with an edge-timing velocity estimate.

    Args:
        a: initial level of channel A (0/1).
        b: initial level of channel B (0/1).
        window_us: velocity window [µs] (see the module docstring).
        max_age_us: edges older than this do not count for velocity [µs]; v = 0 after it.

    Attributes:
        count: signed edge count since construction [counts].
        errors: undecodable transitions (simultaneous A/B change, repeated level).
    """

    def __init__(self, a: int = 0, b: int = 0, *, window_us: int = 20_000,
                 max_age_us: int = 100_000) -> None:
        if window_us <= 0 or max_age_us < window_us:
            raise ValueError("need 0 < window_us <= max_age_us")
        self.window_us = int(window_us)
        self.max_age_us = int(max_age_us)
        self.count = 0
        self.errors = 0
        self._state = (int(bool(a)) << 1) | int(bool(b))
        self._lock = threading.Lock()
        self._hist: deque[tuple[int, int]] = deque(maxlen=HISTORY)  # (unwrapped µs, count)
        self._ref_raw: int | None = None  # newest raw tick seen
        self._ref_ext = 0  # its unwrapped value
        # the previous edge, to merge two reports with the same tick into one double transition
        self._last_t: int | None = None
        self._last_channel = -1
        self._last_delta = 0
        self._state_before_last = self._state

    @property
    def state(self) -> int:
        """Current ``A << 1 | B``."""
        return self._state

    # -- time line -------------------------------------------------------------------------------
    def _unwrap(self, tick: int) -> int:
        tick &= TICK_MASK
        if self._ref_raw is None:
            self._ref_raw, self._ref_ext = tick, tick
            return tick
        d = tick_diff(tick, self._ref_raw)
        ext = self._ref_ext + d
        if d > 0:
            self._ref_raw, self._ref_ext = tick, ext
        return ext

    # -- events ----------------------------------------------------------------------------------
    def edge(self, channel: int, level: int, tick: int) -> None:
        """Consume one pigpio callback report.

        Args:
            channel: :data:`CHANNEL_A` or :data:`CHANNEL_B`.
            level: 0, 1, or :data:`TIMEOUT` (watchdog: no edge for the watchdog period).
            tick: pigpio tick of the report [µs, uint32].
        """
        with self._lock:
            t = self._unwrap(tick)
            if level == TIMEOUT:
                if self._hist and t - self._hist[-1][0] >= self.max_age_us:
                    self._hist.clear()
                return
            bit = 1 << channel
            old = self._state
            new = (old | bit) if level else (old & ~bit)
            merged = t == self._last_t and channel != self._last_channel
            if merged:
                # Both inputs changed within one pigpiod sample: decode the pair as one transition.
                old = self._state_before_last
                self.count -= self._last_delta
                if self._last_delta:
                    self._hist.pop()
            delta = TRANSITIONS[(old << 2) | new]
            self._state = new
            self._state_before_last = old
            self._last_t = None if merged else t  # a third report with this tick starts afresh
            self._last_channel = channel
            if delta is None or (delta == 0 and not merged):
                self.errors += 1  # invalid double transition, or a repeated level (edge lost)
                self._last_delta = 0
                return
            self._last_delta = delta
            self.count += delta
            self._hist.append((t, self.count))

    # -- readings --------------------------------------------------------------------------------
    def snapshot(self, now_tick: int) -> tuple[int, float, float]:
        """Count, velocity and time since the last edge, consistently at ``now_tick``.

        Returns:
            (count [counts], velocity [counts/s], seconds since the last valid edge (inf if none)).
        """
        with self._lock:
            now = self._unwrap(now_tick)
            return self.count, self._velocity(now), self._still_s(now)

    def _still_s(self, now: int) -> float:
        if not self._hist:
            return math.inf
        return max(0, now - self._hist[-1][0]) / 1e6

    def _velocity(self, now: int) -> float:
        h = self._hist
        if len(h) < 2:
            return 0.0
        t_last, c_last = h[-1]
        age = max(0, now - t_last)
        if age >= self.max_age_us:
            return 0.0
        i = len(h) - 2
        while i > 0 and now - h[i - 1][0] <= self.window_us:
            i -= 1
        intervals = len(h) - 1 - i
        if intervals > 4:
            i += intervals % 4
        t_first, c_first = h[i]
        span = t_last - t_first
        if span <= 0 or span >= self.max_age_us:
            return 0.0
        v = (c_last - c_first) * 1e6 / span
        if age > 0 and abs(v) * age > 1e6:  # no edge for longer than one count at speed v
            v = math.copysign(1e6 / age, v)
        return v
