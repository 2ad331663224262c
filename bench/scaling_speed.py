"""Simulation speed of FleetScaling-v0 and FleetScalingCompat-v0 in steps/s (goal ≥ 100 000).

Each env is stepped with a constant no-op action for ``--steps`` steps, raw (``env.unwrapped``)
and through ``gym.make``'s wrappers (order enforcing, passive checker, time limit), resetting at
episode end. Gymnasium's CartPole-v1 is measured in the same run as a yardstick of the machine.
Rates use process CPU time, so other load on a shared machine counts less.

Usage: python bench/scaling_speed.py [--steps 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import gymnasium as gym
import numpy as np

import gym_raas_mqtt  # noqa: F401  (registers the ids)

GOAL_STEPS_PER_S = 100_000
CASES = (("FleetScaling-v0", {}, "default: 10 stations, 12 jobs/h, 60 s steps"),
         ("FleetScaling-v0", {"max_stations": 40, "stations": 20, "arrival_rate_per_h": 96,
                              "failure_rate_per_h": 0.05, "arrivals": "sine"},
          "busy: 20 of 40 online, sine 96 jobs/h, failures"),
         ("FleetScalingCompat-v0", {}, "gym-scaling compatibility, RANDOM"),
         ("CartPole-v1", {}, "yardstick: Gymnasium's CartPole"))


def steps_per_second(env_id: str, kwargs: dict, steps: int, raw: bool) -> float:
    """CPU-time steps/s of ``steps`` no-op steps."""
    env = gym.make(env_id, **kwargs)
    if raw:
        env = env.unwrapped
    env.reset(seed=0)
    action = env.unwrapped.action_spec.noop if hasattr(env.unwrapped, "action_spec") else 0
    step = env.step
    t0 = time.process_time()
    for _ in range(steps):
        _, _, terminated, truncated, _ = step(action)
        if terminated or truncated:
            env.reset()
    elapsed = time.process_time() - t0
    env.close()
    return steps / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"python {platform.python_version()}, gymnasium {gym.__version__}, numpy {np.__version__}"
          f", {args.repeats} × {args.steps} steps (median CPU-time steps/s; goal ≥ "
          f"{GOAL_STEPS_PER_S:,})")
    for env_id, kwargs, label in CASES:
        for raw in (True, False):
            rates = [steps_per_second(env_id, kwargs, args.steps, raw) for _ in range(args.repeats)]
            rate = statistics.median(rates)
            verdict = "" if env_id == "CartPole-v1" else \
                ("  goal met" if rate >= GOAL_STEPS_PER_S else "  goal NOT met")
            print(f"  {label:48s} {'raw' if raw else 'gym.make':8s} {rate:>10,.0f} steps/s"
                  f"{verdict}")


if __name__ == "__main__":
    main()
