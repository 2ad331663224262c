"""Job arrivals and durations of the fleet simulation: Poisson, diurnal sine and trace replay.

Every process hands out jobs one at a time, ``(arrival time [s], run time [s])``, from batches
drawn with numpy so the simulation pays a list index per job, not a random draw.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from gym_raas_mqtt.scaling.observation import DAY_S
from gym_raas_mqtt.scaling.trace import Trace

BATCH = 4096
"""Jobs drawn per numpy batch."""
DURATION_KINDS = ("exponential", "constant", "lognormal", "trace")
ARRIVAL_KINDS = ("poisson", "sine", "trace")


class Durations:
    """Run times of jobs [s]: ``exponential`` or ``constant`` with a mean, ``lognormal`` with a mean
    and a coefficient of variation, or ``trace`` (resampled from observed run times).

    Args:
        kind: one of :data:`DURATION_KINDS`.
        mean_s: the mean run time [s] > 0 (ignored for ``trace``: the samples' mean).
        cv: coefficient of variation of ``lognormal`` (std / mean).
        samples: observed run times [s] for ``trace`` (at least one).
    """

    def __init__(self, kind: str = "exponential", mean_s: float = 600.0, cv: float = 1.0,
                 samples: np.ndarray | None = None) -> None:
        if kind not in DURATION_KINDS:
            raise ValueError(f"durations must be one of {DURATION_KINDS}, got {kind!r}")
        if kind == "trace":
            if samples is None or len(samples) == 0:
                raise ValueError("durations='trace' needs a trace with at least one job that ran")
            self.samples = np.asarray(samples, dtype=np.float64)
            mean_s = float(self.samples.mean())
        if not (math.isfinite(mean_s) and mean_s > 0):
            raise ValueError(f"mean_duration_s must be > 0, got {mean_s}")
        if not cv > 0:
            raise ValueError(f"duration_cv must be > 0, got {cv}")
        self.kind, self.mean_s, self.cv = kind, float(mean_s), float(cv)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` run times [s], float64 (n,)."""
        if self.kind == "exponential":
            return rng.exponential(self.mean_s, n)
        if self.kind == "constant":
            return np.full(n, self.mean_s)
        if self.kind == "lognormal":
            sigma2 = math.log1p(self.cv**2)
            return rng.lognormal(math.log(self.mean_s) - sigma2 / 2, math.sqrt(sigma2), n)
        return rng.choice(self.samples, n)


class Arrivals(Protocol):
    """A source of jobs; ``next_job`` returns (inf, 0) once exhausted."""

    mean_rate_per_h: float
    """Long-run arrival rate [jobs/h]."""

    def reset(self, rng: np.random.Generator) -> None:
        """Restart at t = 0 with this random generator."""
        ...

    def next_job(self) -> tuple[float, float]:
        """The next job: (arrival time [s] since the episode start, run time [s])."""
        ...


class _Batched:
    """Hands out jobs from arrays refilled by ``_refill`` (times ascending, durations)."""

    def __init__(self, durations: Durations) -> None:
        self.durations = durations
        self._times: list[float] = []
        self._runs: list[float] = []
        self._i = 0
        self._t = 0.0
        self.rng = np.random.default_rng()

    def reset(self, rng: np.random.Generator) -> None:
        """Restart at t = 0 with this random generator."""
        self.rng, self._t, self._i, self._times, self._runs = rng, 0.0, 0, [], []

    def _refill(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def next_job(self) -> tuple[float, float]:
        """The next job: (arrival time [s] since the episode start, run time [s])."""
        i = self._i
        if i >= len(self._times):
            times, runs = self._refill()
            self._times, self._runs, i = times.tolist(), runs.tolist(), 0
            if not self._times:
                return math.inf, 0.0
        self._i = i + 1
        return self._times[i], self._runs[i]


class PoissonArrivals(_Batched):
    """A Poisson process of ``rate_per_h`` jobs per hour.

    Args:
        rate_per_h: arrival rate λ [jobs/h] > 0.
        durations: run times of the jobs.
    """

    def __init__(self, rate_per_h: float, durations: Durations) -> None:
        super().__init__(durations)
        if not (math.isfinite(rate_per_h) and rate_per_h > 0):
            raise ValueError(f"arrival_rate_per_h must be > 0, got {rate_per_h}")
        self.mean_rate_per_h = float(rate_per_h)

    def _refill(self) -> tuple[np.ndarray, np.ndarray]:
        gaps = self.rng.exponential(3600.0 / self.mean_rate_per_h, BATCH)
        times = self._t + np.cumsum(gaps)
        self._t = float(times[-1])
        return times, self.durations.sample(self.rng, BATCH)


class SineArrivals(_Batched):
    """A diurnal Poisson process: λ(t) = rate·(1 + amplitude·sin(2π(t + t₀ − peak + 6 h)/1 day)).

    The rate peaks at ``peak_s`` (time of day) and is lowest 12 h later. Drawn by thinning.

    Args:
        rate_per_h: mean arrival rate [jobs/h] > 0.
        amplitude: relative swing in [0, 1].
        peak_s: time of day of the peak [s].
        start_s: time of day at t = 0 [s].
        durations: run times of the jobs.
    """

    def __init__(self, rate_per_h: float, durations: Durations, amplitude: float = 0.8,
                 peak_s: float = 14 * 3600.0, start_s: float = 0.0) -> None:
        super().__init__(durations)
        if not (math.isfinite(rate_per_h) and rate_per_h > 0):
            raise ValueError(f"arrival_rate_per_h must be > 0, got {rate_per_h}")
        if not 0.0 <= amplitude <= 1.0:
            raise ValueError(f"amplitude must be in [0, 1], got {amplitude}")
        self.mean_rate_per_h, self.amplitude = float(rate_per_h), float(amplitude)
        self.phase_s = start_s - peak_s + DAY_S / 4

    def rate_per_h(self, t_s: np.ndarray | float) -> np.ndarray | float:
        """λ(t) [jobs/h] at ``t_s`` seconds since the episode start."""
        return self.mean_rate_per_h * (
            1.0 + self.amplitude * np.sin(2 * np.pi * (np.asarray(t_s) + self.phase_s) / DAY_S))

    def _refill(self) -> tuple[np.ndarray, np.ndarray]:
        peak = self.mean_rate_per_h * (1.0 + self.amplitude)
        times = self._t + np.cumsum(self.rng.exponential(3600.0 / peak, BATCH))
        self._t = float(times[-1])
        kept = times[self.rng.random(BATCH) * peak < self.rate_per_h(times)]
        return kept, self.durations.sample(self.rng, len(kept))


class TraceArrivals(_Batched):
    """Replays a trace's arrivals; jobs that never ran get a run time from ``durations``.

    Args:
        trace: the trace (arrival times relative to its ``since``).
        durations: run times for jobs with none in the trace (``Durations("trace", ...)`` resamples
            the trace's own).
        use_trace_durations: False draws every run time from ``durations``.
    """

    def __init__(self, trace: Trace, durations: Durations,
                 use_trace_durations: bool = True) -> None:
        super().__init__(durations)
        self.trace, self.use_trace_durations = trace, use_trace_durations
        self.mean_rate_per_h = len(trace.arrival_t_s) / max(trace.span_s, 1.0) * 3600.0
        self._done = False

    def reset(self, rng: np.random.Generator) -> None:
        """Restart the replay at the trace's first arrival."""
        super().reset(rng)
        self._done = False

    def _refill(self) -> tuple[np.ndarray, np.ndarray]:
        if self._done:
            return np.zeros(0), np.zeros(0)
        self._done = True
        runs = self.durations.sample(self.rng, len(self.trace.arrival_t_s))
        if self.use_trace_durations:
            ran = ~np.isnan(self.trace.arrival_duration_s)
            runs[ran] = self.trace.arrival_duration_s[ran]
        return self.trace.arrival_t_s, runs
