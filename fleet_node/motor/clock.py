"""The motor node's clocks: the fixed-rate real-time loop and lockstep's virtual time.

Real time (:class:`FixedRateClock`): ticks on the absolute deadline grid ``start + k·period`` of
``time.monotonic`` — sleep until shortly before the deadline, spin the last ``spin_s``, never
``sleep(dt)`` after work, never catch up by bursting: a stall skips the ticks it covered and counts
each as a deadline miss. Between ticks it hands control to a ``drain`` callback, so input that
arrives while the loop sleeps is handled at once (on the loop's thread), not at the next tick.

Lockstep (:class:`VirtualClock`): no wall clock; time advances exactly one period per tick, and
only while the state machine has work that needs time (an action to answer, a procedure running).
"""

from __future__ import annotations

import array
import dataclasses
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)

LATENESS_SAMPLES = 1_000_000
"""Tick lateness samples kept for statistics (8 MB; 14 h at 20 Hz, 17 min at 1 kHz)."""

Tick = Callable[[float, bool], None]
"""``tick(now [s], deadline_miss)``: one control period, sampled at ``now``."""


@dataclass
class LoopStats:
    """Counters of the control loop (read them from any thread).

    Written by the clock (ticks, misses, skipped, lateness_s), the state machine (late_actions,
    watchdog_trips, steps, stale actions in dropped) and the transport (malformed messages in
    dropped).

    Attributes:
        ticks: ticks run. misses: deadline misses (late ticks plus ticks skipped after a stall).
        skipped: ticks skipped after a stall. late_actions: steps whose action came after the
        tick that should have sampled its result. watchdog_trips: torque cut for lack of
        actions. dropped: malformed or stale messages dropped. steps: actions served.
        lateness_s: per-tick start time minus deadline [s] (first :data:`LATENESS_SAMPLES` ticks).
    """

    ticks: int = 0
    misses: int = 0
    skipped: int = 0
    late_actions: int = 0
    watchdog_trips: int = 0
    dropped: int = 0
    steps: int = 0
    lateness_s: array.array = dataclasses.field(default_factory=lambda: array.array("d"))


def set_rt_priority(priority: int) -> None:
    """SCHED_FIFO ``priority`` (1-99) for the calling thread (Linux: pid 0 = this thread).

    Does nothing for 0; logs a warning when the OS refuses (it needs CAP_SYS_NICE).
    """
    if not priority:
        return
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, AttributeError) as e:
        log.warning("cannot use SCHED_FIFO priority %d: %s", priority, e)


class FixedRateClock:
    """Ticks at a fixed rate on absolute deadlines of ``time.monotonic``.

    Args:
        period_s: the control period [s].
        miss_tolerance_s: a tick starting later than this after its deadline is a miss [s].
        spin_s: busy-wait this long before each deadline instead of sleeping [s].
        stats: where ticks, misses, skipped ticks and lateness are counted.
    """

    def __init__(self, period_s: float, miss_tolerance_s: float, spin_s: float,
                 stats: LoopStats) -> None:
        self.period = period_s
        self.miss_tolerance_s = miss_tolerance_s
        self.spin_s = spin_s
        self.stats = stats
        self._wake = threading.Event()

    def wake(self) -> None:
        """Cut the current sleep short so that ``drain`` runs now (any thread)."""
        self._wake.set()

    def run(self, tick: Tick, drain: Callable[[], None], stopping: threading.Event) -> None:
        """Tick until ``stopping`` is set (call :meth:`wake` after setting it).

        Args:
            tick: called at each deadline with (now [s], deadline miss).
            drain: called before each sleep and after each :meth:`wake`, on this thread.
            stopping: ends the loop.
        """
        period, tol = self.period, self.miss_tolerance_s
        # A thread holding the GIL keeps it up to the switch interval (5 ms by default) when the
        # loop wakes: bound that wait below the miss tolerance (process-wide setting).
        sys.setswitchinterval(min(sys.getswitchinterval(), max(tol / 2, 0.0001)))
        stats, lateness = self.stats, self.stats.lateness_s
        start = time.monotonic() + period
        k = 0
        while not stopping.is_set():
            deadline = start + k * period
            self._wait_until(deadline, drain, stopping)
            if stopping.is_set():
                break
            now = time.monotonic()
            late = now - deadline
            miss = late > tol
            tick(now, miss)
            stats.ticks += 1
            stats.misses += miss
            if len(lateness) < LATENESS_SAMPLES:
                lateness.append(late)
            # Next deadline on the grid; after a stall longer than a period skip the ticks it
            # covered (each a miss) instead of running them back to back.
            behind = int((time.monotonic() - start) / period)
            nxt = max(k + 1, behind)
            if nxt > k + 1:
                stats.skipped += nxt - k - 1
                stats.misses += nxt - k - 1
            k = nxt

    def _wait_until(self, deadline: float, drain: Callable[[], None],
                    stopping: threading.Event) -> None:
        spin = self.spin_s
        while True:
            drain()
            remaining = deadline - time.monotonic()
            if remaining <= spin or stopping.is_set():
                break
            if self._wake.wait(remaining - spin):
                self._wake.clear()
        while time.monotonic() < deadline:
            pass


class VirtualClock:
    """Lockstep time [s]: starts at 0 and advances exactly one period per tick, on no wall clock.

    Args:
        period_s: the control period [s].
        max_ticks: most ticks one :meth:`run` may take (a safety net: procedures time out sooner).
    """

    def __init__(self, period_s: float, max_ticks: int) -> None:
        self.period = period_s
        self.max_ticks = max_ticks
        self.now = 0.0

    def run(self, tick: Tick, busy: Callable[[], bool]) -> bool:
        """Tick (never a deadline miss) while ``busy()`` says work needs time.

        Returns:
            False if still busy after :attr:`max_ticks` ticks.
        """
        for _ in range(self.max_ticks):
            if not busy():
                return True
            self.now += self.period
            tick(self.now, False)
        return not busy()
