"""The fleet's event simulation: stations (standby, booting, idle, busy), the job queue, failures.

Continuous time, advanced one control step at a time by :meth:`FleetSim.advance`. A station's
life: ``standby`` → (woken) ``booting`` for boot + reset + self-test → ``idle`` → ``busy`` for the
job's run time + one reset → ``idle`` ... Failures hit powered stations at a rate; a failed
station's job goes back to the head of the queue and the station is repaired and boots again.
Jobs are served first come, first served.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from gym_raas_mqtt.scaling.arrivals import Arrivals

# Station states and event kinds: plain ints, compared in the hot loop of every step.
STANDBY, BOOTING, IDLE, BUSY = 0, 1, 2, 3
PHASE_END, FAILURE = 0, 1


@dataclass(frozen=True)
class Latencies:
    """Station latencies [s] (all ≥ 0).

    Attributes:
        boot_s: power-up and calibration of a woken station.
        reset_s: the pendulum's reset, after a wake and after every job.
        selftest_s: the self-test after a wake (a station takes no job before passing it).
        repair_s: time a failed station is down before it boots again.
    """

    boot_s: float = 120.0
    reset_s: float = 30.0
    selftest_s: float = 20.0
    repair_s: float = 1800.0

    def __post_init__(self) -> None:
        for name in ("boot_s", "reset_s", "selftest_s", "repair_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and ≥ 0, got {value}")

    @property
    def wake_s(self) -> float:
        """Standby → idle: boot + reset + self-test [s]."""
        return self.boot_s + self.reset_s + self.selftest_s


class FleetSim:
    """Stations and a FIFO queue driven by an arrival process (state only; no reward).

    Args:
        max_stations: fleet size [stations].
        arrivals: the job source (reset by :meth:`reset`).
        latencies: station latencies.
        failure_rate_per_h: failures per powered station-hour (0 = none).
        slo_wait_s: waits beyond this count as overdue [s].
    """

    def __init__(self, max_stations: int, arrivals: Arrivals, latencies: Latencies,
                 failure_rate_per_h: float = 0.0, slo_wait_s: float = 300.0) -> None:
        if not (math.isfinite(failure_rate_per_h) and failure_rate_per_h >= 0):
            raise ValueError(f"failure_rate_per_h must be ≥ 0, got {failure_rate_per_h}")
        self.max_stations, self.arrivals, self.latencies = max_stations, arrivals, latencies
        self.failure_rate_per_h, self.slo_wait_s = failure_rate_per_h, slo_wait_s
        self.rng = np.random.default_rng()
        self.reset(self.rng, 0)

    def reset(self, rng: np.random.Generator, online: int) -> None:
        """Empty queue, ``online`` stations idle, the rest in standby, t = 0."""
        m = self.max_stations
        self.rng, self.t = rng, 0.0
        self.arrivals.reset(rng)
        self.state = [STANDBY] * m
        self.job: list[tuple[float, float] | None] = [None] * m
        self.phase_epoch = [0] * m
        self.fail_epoch = [0] * m
        self.draining = [False] * m
        self.heap: list[tuple[float, int, int, int]] = []
        self.queue: deque[tuple[float, float]] = deque()
        self.idle: list[int] = []
        self.booting: set[int] = set()
        self.n_busy = self.n_draining = self.n_failures = 0
        self.next_arrival = self.arrivals.next_job()
        self.powered_s = self.standby_s = self.overdue_s = 0.0
        self._t_mark = self.step_start = 0.0
        self.waits: list[float] = []
        for i in range(online):
            self._power_on(i, 0.0)
            self._become_idle(i)

    # -- counts ------------------------------------------------------------------------------
    @property
    def committed(self) -> int:
        """Stations online or coming online, not draining [stations]."""
        return len(self.idle) + self.n_busy - self.n_draining + len(self.booting)

    @property
    def powered(self) -> int:
        """Stations not in standby [stations]."""
        return len(self.idle) + self.n_busy + len(self.booting)

    def _account(self, t: float) -> None:
        dt = t - self._t_mark
        if dt > 0:
            p = self.powered
            self.powered_s += p * dt
            self.standby_s += (self.max_stations - p) * dt
            self._t_mark = t

    # -- scaling -----------------------------------------------------------------------------
    def scale_to(self, target: int) -> None:
        """Bring the committed count to ``target`` at the current time.

        Up: un-drain busy stations and wake standby ones (lowest index first). Down: cancel
        boots, then put idle stations in standby, then let busy ones drain (standby when their
        job is done).
        """
        change = target - self.committed
        if change == 0:
            return
        self._account(self.t)
        if change > 0:
            self._scale_up(change)
            return
        while change < 0 and self.booting:
            self._power_off(max(self.booting))
            change += 1
        while change < 0 and self.idle:
            self._power_off(self.idle.pop())
            change += 1
        for i in range(self.max_stations):
            if change >= 0:
                return
            if self.state[i] == BUSY and not self.draining[i]:
                self.draining[i] = True
                self.n_draining += 1
                change += 1

    def _scale_up(self, change: int) -> None:
        for i in range(self.max_stations):
            if change <= 0:
                return
            if self.state[i] == BUSY and self.draining[i]:
                self.draining[i] = False
                self.n_draining -= 1
                change -= 1
            elif self.state[i] == STANDBY:
                self._power_on(i, self.t)
                self._start_phase(i, BOOTING, self.t + self.latencies.wake_s)
                change -= 1

    def _power_on(self, i: int, t: float) -> None:
        if self.failure_rate_per_h > 0:
            self.fail_epoch[i] += 1
            when = t + self.rng.exponential(3600.0 / self.failure_rate_per_h)
            heapq.heappush(self.heap, (when, FAILURE, i, self.fail_epoch[i]))

    def _power_off(self, i: int) -> None:
        self.booting.discard(i)
        self.state[i] = STANDBY
        self.phase_epoch[i] += 1
        self.fail_epoch[i] += 1

    def _start_phase(self, i: int, state: int, until: float) -> None:
        if self.state[i] == BOOTING:
            self.booting.discard(i)
        self.state[i] = state
        if state == BOOTING:
            self.booting.add(i)
        self.phase_epoch[i] += 1
        heapq.heappush(self.heap, (until, PHASE_END, i, self.phase_epoch[i]))

    def _become_idle(self, i: int) -> None:
        self.booting.discard(i)
        self.state[i] = IDLE
        if self.queue:
            self._start_job(i, self.queue.popleft())
        else:
            self.idle.append(i)

    def _start_job(self, i: int, job: tuple[float, float]) -> None:
        arrival, run_s = job
        t = self.t
        self.waits.append(t - arrival)
        overdue_from = arrival + self.slo_wait_s
        if t > overdue_from:
            self.overdue_s += t - max(overdue_from, self.step_start)
        self.job[i] = job
        self.n_busy += 1
        self.state[i] = BUSY
        self.phase_epoch[i] += 1
        heapq.heappush(self.heap, (t + run_s + self.latencies.reset_s, PHASE_END, i,
                                   self.phase_epoch[i]))

    # -- time --------------------------------------------------------------------------------
    def advance(self, t_end: float) -> tuple[list[float], int]:
        """Run the events up to ``t_end`` [s].

        Returns:
            (waits [s] of the jobs started in the interval, number of arrivals). The interval's
            overdue job-seconds (waits beyond the SLO) accumulate in ``overdue_s``; powered and
            standby station-seconds in ``powered_s`` and ``standby_s``.
        """
        self.waits = []
        self.step_start = self.t
        arrived = 0
        heap, queue, idle = self.heap, self.queue, self.idle
        next_arrival = self.next_arrival
        while True:
            t_event = heap[0][0] if heap else math.inf
            if next_arrival[0] <= t_event:
                if next_arrival[0] > t_end:
                    break
                self.t = next_arrival[0]
                arrived += 1
                if idle:
                    self._start_job(idle.pop(), next_arrival)
                else:
                    queue.append(next_arrival)
                next_arrival = self.arrivals.next_job()
                continue
            if t_event > t_end:
                break
            when, kind, i, epoch = heapq.heappop(heap)
            self.t = when
            if kind == PHASE_END and epoch == self.phase_epoch[i]:
                self._end_phase(i)
            elif kind == FAILURE and epoch == self.fail_epoch[i]:
                self._fail(i)
        self.next_arrival = next_arrival
        self.t = t_end
        self._account(t_end)
        self._count_overdue(t_end)
        return self.waits, arrived

    def _end_phase(self, i: int) -> None:
        if self.state[i] == BUSY:
            self.n_busy -= 1
            self.job[i] = None
            if self.draining[i]:
                self._account(self.t)
                self.draining[i] = False
                self.n_draining -= 1
                self._power_off(i)
                return
        self._become_idle(i)

    def _fail(self, i: int) -> None:
        self.n_failures += 1
        draining = False
        if self.state[i] == BUSY:
            self.n_busy -= 1
            draining = self.draining[i]
            if draining:
                self.draining[i] = False
                self.n_draining -= 1
            self.queue.appendleft(self.job[i])  # type: ignore[arg-type]
            self.job[i] = None
        elif self.state[i] == IDLE:
            self.idle.remove(i)
        if draining:  # it was leaving anyway: straight to standby, repaired there
            self._account(self.t)
            self._power_off(i)
            return
        self._start_phase(i, BOOTING, self.t + self.latencies.repair_s + self.latencies.wake_s)
        self._power_on(i, self.t)

    def _count_overdue(self, t_end: float) -> None:
        # Queued jobs are in arrival order (requeued ones, at the head, are older), so from the
        # newest back: skip those not yet overdue, add the part of the step the others were
        # overdue, and once one was overdue the whole step, so were all before it.
        start, slo = self.step_start, self.slo_wait_s
        remaining = len(self.queue)
        for arrival, _ in reversed(self.queue):
            overdue_from = arrival + slo
            if overdue_from <= start:
                self.overdue_s += remaining * (t_end - start)
                return
            if overdue_from < t_end:
                self.overdue_s += t_end - overdue_from
            remaining -= 1
