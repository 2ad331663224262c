"""Simulation speed: steps/s of RaasPendulum-v0 and Gymnasium's Pendulum-v1, measured in one run.

Both are made with ``gym.make`` (same wrappers: order enforcing, passive checker, time limit) and
stepped with the same constant action; episodes are reset at truncation. Goal: ratio ≥ 1.0.

Usage: python bench/sim_speed.py [--steps 200000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import gymnasium as gym
import numpy as np

import gym_raas_mqtt  # noqa: F401  (registers RaasPendulum-v0)


def steps_per_second(env_id: str, steps: int) -> float:
    env = gym.make(env_id)
    env.reset(seed=0)
    action = np.array([0.5], dtype=np.float32)
    step = env.step
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = step(action)
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - t0
    env.close()
    return steps / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    results: dict[str, list[float]] = {"RaasPendulum-v0": [], "Pendulum-v1": []}
    for _ in range(args.repeats):  # interleaved so machine noise hits both alike
        for env_id in results:
            results[env_id].append(steps_per_second(env_id, args.steps))
    print(f"python {platform.python_version()}, gymnasium {gym.__version__}, numpy {np.__version__}"
          f", {args.repeats} × {args.steps} steps each (median, min–max)")
    med = {}
    for env_id, vals in results.items():
        med[env_id] = statistics.median(vals)
        print(f"  {env_id:16s} {med[env_id]:>10,.0f} steps/s  ({min(vals):,.0f}–{max(vals):,.0f})")
    ratio = med["RaasPendulum-v0"] / med["Pendulum-v1"]
    print(f"  ratio RaasPendulum-v0 / Pendulum-v1 = {ratio:.2f}  (goal ≥ 1.0: "
          f"{'met' if ratio >= 1.0 else 'NOT met'})")


if __name__ == "__main__":
    main()
