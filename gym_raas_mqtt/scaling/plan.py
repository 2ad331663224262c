"""Fleet planning: the smallest fleet and best built-in policy that meet a waiting-time SLO on a trace."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gym_raas_mqtt.scaling.actions import ActionSpec
from gym_raas_mqtt.scaling.env import FleetScalingEnv
from gym_raas_mqtt.scaling.policies import BUILTIN_POLICIES, KeepConstant, Policy
from gym_raas_mqtt.scaling.raster import BLACK, BLUE, GREY, RED, Canvas
from gym_raas_mqtt.scaling.trace import Trace, TraceError

PLAN_DT_S = 60.0
"""Control step of the simulated autoscaler [s]."""


@dataclass(frozen=True)
class PlanRow:
    """One simulated (fleet size, policy) on the trace.

    Attributes:
        size: fleet size [stations].
        policy: built-in policy name.
        wait_quantile_s: the requested quantile of job waits [s] (jobs still queued at the end
            count with the wait they had then).
        mean_wait_s: mean wait [s].
        cost: station cost over the trace [cost units: 1 per powered station-hour, 0.1 standby].
        jobs: jobs that started.
        meets_slo: wait_quantile_s ≤ the SLO.
    """

    size: int
    policy: str
    wait_quantile_s: float
    mean_wait_s: float
    cost: float
    jobs: int
    meets_slo: bool


@dataclass(frozen=True)
class PlanResult:
    """The answer of :func:`plan_fleet`.

    Attributes:
        slo_wait_s: the objective [s].
        quantile: which wait quantile must meet it, in (0, 1).
        rows: every simulated (size, policy), sizes ascending.
        size: the smallest fleet meeting the SLO, or None if none of ``sizes`` does.
        policy: the cheapest policy meeting it at that size, or None.
    """

    slo_wait_s: float
    quantile: float
    rows: list[PlanRow] = field(default_factory=list)
    size: int | None = None
    policy: str | None = None

    def best_per_size(self) -> list[PlanRow]:
        """Per size, the cheapest row meeting the SLO, else the one with the lowest wait."""
        best: dict[int, PlanRow] = {}
        for row in self.rows:
            key = (not row.meets_slo, row.cost if row.meets_slo else row.wait_quantile_s)
            old = best.get(row.size)
            if old is None or key < (not old.meets_slo,
                                     old.cost if old.meets_slo else old.wait_quantile_s):
                best[row.size] = row
        return [best[s] for s in sorted(best)]


def env_kwargs_from_trace(trace: Trace) -> dict:
    """FleetScaling-v0 arguments that replay ``trace``: its arrivals and run times, the median
    boot/reset/self-test latencies it recorded (the env's defaults where it has none), and its
    failures per busy station-hour.
    """
    kwargs: dict = {"arrivals": "trace", "trace": trace, "durations": "trace"}
    for name, samples in (("boot_s", trace.boot_s), ("reset_s", trace.reset_s),
                          ("selftest_s", trace.selftest_s)):
        if len(samples):
            kwargs[name] = float(np.median(samples))
    busy_h = float(trace.durations_s.sum()) / 3600.0
    if len(trace.failure_t_s) and busy_h > 0:
        kwargs["failure_rate_per_h"] = len(trace.failure_t_s) / busy_h
    return kwargs


def simulate(trace: Trace, size: int, policy: Policy, quantile: float, slo_wait_s: float,
             seed: int = 0, dt_s: float = PLAN_DT_S) -> tuple[float, float, float, int]:
    """Replay ``trace`` on a fleet of ``size`` run by ``policy`` (target-count actions).

    Returns:
        (wait quantile [s], mean wait [s], cost [units], jobs started).
    """
    env = FleetScalingEnv(max_stations=size, stations=size, action_mode="target", dt_s=dt_s,
                          slo_wait_s=slo_wait_s, max_queue=10**9, **env_kwargs_from_trace(trace))
    obs, _ = env.reset(seed=seed)
    policy.reset()
    waits: list[float] = []
    cost, truncated = 0.0, False
    for _ in range(math.ceil(trace.span_s / dt_s) + 1):
        obs, _, _, truncated, info = env.step(policy.decide(obs))
        waits.extend(info["waits_s"])
        cost += info["cost"]
        if truncated:
            break
    started = len(waits)
    waits.extend(env.sim.t - arrival for arrival, _ in env.sim.queue)
    if not waits:
        return 0.0, 0.0, cost, 0
    w = np.asarray(waits)
    return float(np.quantile(w, quantile)), float(w.mean()), cost, started


def default_sizes(trace: Trace) -> list[int]:
    """Fleet sizes worth trying: from the offered load a = λ·E[S] to 2a + 2 (at least 5 sizes)."""
    durations = trace.durations_s
    mean_s = float(durations.mean()) if len(durations) else 600.0
    a = len(trace.arrival_t_s) / max(trace.span_s, 1.0) * mean_s
    low = max(1, math.floor(a))
    return list(range(low, max(low + 5, math.ceil(2 * a) + 3)))


def plan_fleet(trace: Trace, slo_wait_s: float, quantile: float, sizes: Sequence[int] | None = None,
               policies: Sequence[str] | None = None, seed: int = 0) -> PlanResult:
    """Find the smallest fleet, and the cheapest built-in policy on it, whose wait quantile meets
    the SLO when the trace is replayed.

    Args:
        trace: the arrivals (and latencies) to replay.
        slo_wait_s: the waiting-time objective [s] > 0.
        quantile: the fraction of jobs that must start within it, in (0, 1) (e.g. 0.95).
        sizes: fleet sizes to try [stations] (default :func:`default_sizes`).
        policies: names from :data:`~gym_raas_mqtt.scaling.policies.BUILTIN_POLICIES` (default:
            all; ``"keep"`` keeps the whole fleet online).
        seed: seeds the run times drawn for jobs without one.

    Returns:
        Every (size, policy) simulated, and the answer (``size``/``policy`` None if no size meets
        the SLO).

    Raises:
        ValueError: a bad SLO, quantile, size or policy name, or a trace without arrivals.
    """
    if not (math.isfinite(slo_wait_s) and slo_wait_s > 0):
        raise ValueError(f"slo_wait_s must be > 0, got {slo_wait_s}")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    if len(trace.arrival_t_s) == 0:
        raise TraceError("the trace has no arrivals")
    sizes = sorted(set(sizes or default_sizes(trace)))
    if sizes[0] < 1:
        raise ValueError("fleet sizes must be ≥ 1")
    names = list(policies or BUILTIN_POLICIES)
    unknown = [n for n in names if n not in BUILTIN_POLICIES]
    if unknown:
        raise ValueError(f"unknown policies {unknown}; built-in: {sorted(BUILTIN_POLICIES)}")
    result = PlanResult(slo_wait_s=slo_wait_s, quantile=quantile)
    for size in sizes:
        env_spec = ActionSpec("target", 1, size, 0)
        for name in names:
            policy = KeepConstant(env_spec, stations=size) if name == "keep" else \
                BUILTIN_POLICIES[name](env_spec)
            q, mean, cost, jobs = simulate(trace, size, policy, quantile, slo_wait_s, seed)
            result.rows.append(PlanRow(size, name, q, mean, cost, jobs, q <= slo_wait_s))
    meeting = [r for r in result.rows if r.meets_slo]
    if meeting:
        smallest = min(r.size for r in meeting)
        best = min((r for r in meeting if r.size == smallest), key=lambda r: r.cost)
        result = PlanResult(slo_wait_s, quantile, result.rows, best.size, best.policy)
    return result


def _scale(values: np.ndarray, lo: float, hi: float, top_px: int, bottom_px: int) -> np.ndarray:
    span = hi - lo if hi > lo else 1.0
    return bottom_px - (values - lo) / span * (bottom_px - top_px)


def plot_plan(result: PlanResult, path: str | os.PathLike[str]) -> None:
    """Write a PNG: wait quantile (red, SLO grey) and cost (blue) against fleet size, per size's
    best policy; the chosen size is marked black.

    Args:
        result: from :func:`plan_fleet`.
        path: the PNG file to write.
    """
    rows = result.best_per_size()
    width, height, left, right, top, bottom = 640, 400, 60, 600, 40, 340
    canvas = Canvas(width, height)
    canvas.rect(left, top, right, bottom, BLACK)
    sizes = np.array([r.size for r in rows], dtype=np.float64)
    xs = left + 10 + (sizes - sizes.min()) / max(np.ptp(sizes), 1.0) * (right - left - 20)
    waits = np.array([r.wait_quantile_s for r in rows])
    costs = np.array([r.cost for r in rows])
    # beyond 4 SLOs the exact wait does not matter for the answer: keep the SLO line readable
    wait_top = min(max(float(waits.max()), result.slo_wait_s), 4 * result.slo_wait_s) * 1.1
    waits = np.minimum(waits, wait_top)
    slo_y = _scale(np.array([result.slo_wait_s]), 0, wait_top, top, bottom)[0]
    canvas.polyline(np.array([left, right]), np.array([slo_y, slo_y]), GREY)
    canvas.polyline(xs, _scale(waits, 0, wait_top, top, bottom), RED)
    canvas.polyline(xs, _scale(costs, 0, float(costs.max()) * 1.1, top, bottom), BLUE)
    for x, row in zip(xs, rows):
        canvas.text(int(x) - 4, bottom + 6, str(row.size), BLACK, scale=2)
        if row.size == result.size:
            canvas.rect(int(x) - 1, top, int(x) + 1, bottom, BLACK, fill=True)
    q = f"P{result.quantile * 100:g} wait"
    canvas.text(left, 10, f"{q} (red, axis 0-{wait_top:.0f} s) slo {result.slo_wait_s:g} s (grey)",
                RED, scale=2)
    canvas.text(left, 24, f"cost (blue, axis 0-{costs.max() * 1.1:.3g} units)", BLUE, scale=2)
    answer = "no size meets the slo" if result.size is None else \
        f"answer: {result.size} stations, policy {result.policy}"
    canvas.text(left, bottom + 24, "fleet size (stations)   " + answer, BLACK, scale=2)
    canvas.save(path)
