"""FleetScaling-v0 as an M/M/c queue: mean wait and P(wait > 0) against the Erlang C formula."""

from __future__ import annotations

import pytest

from gym_raas_mqtt.scaling import erlang
from gym_raas_mqtt.scaling.env import FleetScalingEnv

MEAN_DURATION_S = 600.0


def simulate(arrival_rate_per_h: float, stations: int, jobs: int, seed: int) -> tuple[float, float]:
    """(mean wait [s], fraction of jobs that waited) over ``jobs`` jobs started."""
    env = FleetScalingEnv(arrivals="poisson", arrival_rate_per_h=arrival_rate_per_h,
                          durations="exponential", mean_duration_s=MEAN_DURATION_S,
                          max_stations=stations, stations=stations, boot_s=0, reset_s=0,
                          selftest_s=0, max_queue=10**9,
                          dt_s=500 * MEAN_DURATION_S)  # long steps: thousands of events each
    env.reset(seed=seed)
    noop = env.action_spec.noop
    started = waited = 0
    while started < jobs:
        _, _, terminated, truncated, info = env.step(noop)
        assert not (terminated or truncated)
        started += len(info["waits_s"])
        waited += sum(1 for w in info["waits_s"] if w > 0)
    return info["mean_wait_s"], waited / started


@pytest.mark.parametrize(("stations", "utilization", "jobs"),
                         [(2, 0.5, 400_000), (5, 0.7, 400_000), (10, 0.85, 800_000)])
def test_waits_match_erlang_c(stations, utilization, jobs):
    rate_per_h = utilization * stations / MEAN_DURATION_S * 3600.0
    mean_wait, p_wait = simulate(rate_per_h, stations, jobs, seed=1)
    want_wait = erlang.mean_wait_s(rate_per_h, MEAN_DURATION_S, stations)
    want_p = erlang.prob_wait(rate_per_h / 3600.0 * MEAN_DURATION_S, stations)
    assert mean_wait == pytest.approx(want_wait, rel=0.05)
    assert p_wait == pytest.approx(want_p, rel=0.05)


def test_erlang_c_formula():
    assert erlang.prob_wait(0.5, 1) == pytest.approx(0.5)  # M/M/1: P(wait) = ρ
    assert erlang.mean_wait_s(30, 60, 1) == pytest.approx(60.0)  # ρ/(1−ρ)·E[S]
    assert erlang.wait_quantile_s(0.5, 30, 60, 1) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="unstable"):
        erlang.prob_wait(3.0, 3)
