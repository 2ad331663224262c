"""The Erlang C formula: waiting in an M/M/c queue (Poisson arrivals, exponential service, c servers).

>>> round(prob_wait(0.5 * 2, 2), 4)   # 2 stations, offered load 1 (utilization 0.5)
0.3333
>>> round(mean_wait_s(arrival_rate_per_h=60, mean_duration_s=60, stations=2), 2)
20.0
"""

from __future__ import annotations

import math


def erlang_b(offered_load: float, stations: int) -> float:
    """Blocking probability B(c, a) of an M/M/c/c system, by the stable recursion.

    Args:
        offered_load: a = λ·E[S] [stations] ≥ 0.
        stations: c ≥ 1.

    Returns:
        B in [0, 1].
    """
    if stations < 1 or offered_load < 0:
        raise ValueError("need stations ≥ 1 and offered_load ≥ 0")
    b = 1.0
    for k in range(1, stations + 1):
        b = offered_load * b / (k + offered_load * b)
    return b


def prob_wait(offered_load: float, stations: int) -> float:
    """Erlang C: P(wait > 0) for an arriving job, C(c, a) = c·B / (c − a·(1 − B)).

    Args:
        offered_load: a = λ·E[S] [stations], with a < c (a stable queue).
        stations: c ≥ 1.

    Returns:
        C in [0, 1].

    Raises:
        ValueError: a ≥ c (the queue grows without bound).
    """
    if offered_load >= stations:
        raise ValueError(f"unstable: offered load {offered_load} ≥ {stations} stations")
    b = erlang_b(offered_load, stations)
    return stations * b / (stations - offered_load * (1.0 - b))


def mean_wait_s(arrival_rate_per_h: float, mean_duration_s: float, stations: int) -> float:
    """Mean wait before service W_q = C(c, a) · E[S] / (c − a) [s].

    Args:
        arrival_rate_per_h: λ [jobs/h] > 0.
        mean_duration_s: E[S] [s] > 0.
        stations: c ≥ 1.

    Returns:
        The mean wait over all jobs (those that do not wait count as 0) [s].
    """
    a = arrival_rate_per_h / 3600.0 * mean_duration_s
    return prob_wait(a, stations) * mean_duration_s / (stations - a)


def wait_quantile_s(q: float, arrival_rate_per_h: float, mean_duration_s: float,
                    stations: int) -> float:
    """The q-quantile of the wait [s]: P(W > t) = C·exp(−(c − a)·t / E[S]).

    Args:
        q: the quantile in (0, 1).
        arrival_rate_per_h: λ [jobs/h].
        mean_duration_s: E[S] [s].
        stations: c.

    Returns:
        t with P(W ≤ t) = q (0 when at least a fraction q of jobs do not wait) [s].
    """
    a = arrival_rate_per_h / 3600.0 * mean_duration_s
    c_prob = prob_wait(a, stations)
    if c_prob <= 1.0 - q:
        return 0.0
    return mean_duration_s / (stations - a) * math.log(c_prob / (1.0 - q))
