"""Synthetic fleet traces: a week of diurnal job arrivals with quiet weekends, as a trace CSV.

Usage: ``python -m gym_raas_mqtt.scaling.synthetic -o week.csv [--days 7] [--rate 6] [--seed 0]``
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

import numpy as np

from gym_raas_mqtt.scaling.arrivals import Durations, SineArrivals
from gym_raas_mqtt.scaling.observation import DAY_S
from gym_raas_mqtt.scaling.trace import TraceRow, meta_row, write_trace

DEFAULT_SINCE = datetime(2026, 1, 5, tzinfo=timezone.utc)
"""A Monday, 00:00 UTC."""


def synthetic_trace(days: int = 7, rate_per_h: float = 6.0, amplitude: float = 0.8,
                    weekend_factor: float = 0.3, mean_duration_s: float = 600.0,
                    duration_cv: float = 0.5, stations: int = 8, seed: int = 0,
                    since: datetime = DEFAULT_SINCE) -> list[TraceRow]:
    """A trace of ``days`` days from ``since``: arrivals and latencies a small fleet might show.

    Arrivals: a diurnal Poisson process (mean ``rate_per_h`` jobs/h, ±``amplitude``, peak at
    14:00 UTC), thinned to ``weekend_factor`` on Saturdays and Sundays. Run times: lognormal,
    mean ``mean_duration_s``, coefficient of variation ``duration_cv``. Each of ``stations``
    nodes boots once (~2 min) and self-tests daily (~20 s); every job is followed by a reset
    (~30 s).

    Returns:
        The rows, ``meta`` first (pass them to :func:`~gym_raas_mqtt.scaling.trace.write_trace`).
    """
    rng = np.random.default_rng(seed)
    durations = Durations("lognormal", mean_duration_s, duration_cv)
    source = SineArrivals(rate_per_h, durations, amplitude, 14 * 3600.0,
                          since.timestamp() % DAY_S)
    source.reset(rng)
    span_s = days * DAY_S
    rows = [meta_row(since, since + timedelta(days=days))]
    for n in range(stations):
        node = f"node-{n + 1}"
        rows.append(TraceRow("boot", round(rng.uniform(0, 60), 3), round(rng.normal(120, 10), 3),
                             node_id=node))
        rows += [TraceRow("selftest", d * DAY_S + 3600.0, round(rng.normal(20, 2), 3),
                          node_id=node) for d in range(days)]
    k = 0
    t_s, run_s = source.next_job()
    while t_s < span_s:
        weekday = (since + timedelta(seconds=t_s)).weekday()
        if weekday < 5 or rng.random() < weekend_factor:
            k += 1
            rows.append(TraceRow("arrival", round(t_s, 3), round(run_s, 3), f"job-{k}"))
            rows.append(TraceRow("reset", round(t_s + run_s, 3), round(rng.normal(30, 3), 3),
                                 f"job-{k}", f"node-{k % stations + 1}"))
        t_s, run_s = source.next_job()
    return rows


def main() -> None:
    """Write a synthetic trace CSV (``-o``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--rate", type=float, default=6.0, help="mean arrivals per hour")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n = write_trace(args.output, synthetic_trace(args.days, args.rate, seed=args.seed))
    print(f"{args.output}: {n} rows")


if __name__ == "__main__":
    main()
