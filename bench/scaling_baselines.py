"""Baselines on FleetScalingCompat-v0 (gym-scaling's dynamics): mean reward per step of the four
built-in policies for RANDOM inputs (change_rate 10000 and 100) and SINE (change_rate 1).

Each cell: 3 seeds × 20 000 steps (an episode that ends by queue overflow is reset and the count
goes on), mean reward per step over all 60 000 steps, and the fixed cost in $ per step.

Usage: python bench/scaling_baselines.py [--steps 20000] [--seeds 3]
"""

from __future__ import annotations

import argparse
import statistics

from gym_raas_mqtt.scaling.compat import GymScalingEnv
from gym_raas_mqtt.scaling.policies import BUILTIN_POLICIES

SETTINGS = (("random", 10000), ("random", 100), ("sine", 1))


def run(policy_name: str, input_kind: str, change_rate: int, seed: int,
        steps: int) -> tuple[float, float, int]:
    """(mean reward per step, mean cost per step [$], episodes ended by overflow)."""
    env = GymScalingEnv(input=input_kind, change_rate=change_rate)
    policy = BUILTIN_POLICIES[policy_name](env.action_spec)
    obs, _ = env.reset(seed=seed)
    policy.reset()
    total = cost = 0.0
    overflows = 0
    for _ in range(steps):
        obs, reward, terminated, _, info = env.step(policy.decide(obs))
        total += reward
        cost += info["cost"]
        if terminated:
            overflows += 1
            obs, _ = env.reset()
            policy.reset()
    return total / steps, cost / steps, overflows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    header = "| policy | " + " | ".join(f"{k.upper()} change_rate {c}" for k, c in SETTINGS) + " |"
    print(f"mean reward per step ({args.seeds} seeds × {args.steps} steps; ± = std over seeds; "
          "[n] = episodes ended by queue overflow)")
    print(header)
    print("|" + "---|" * (len(SETTINGS) + 1))
    for name in BUILTIN_POLICIES:
        cells = []
        for kind, rate in SETTINGS:
            runs = [run(name, kind, rate, seed, args.steps) for seed in range(args.seeds)]
            rewards = [r[0] for r in runs]
            overflows = sum(r[2] for r in runs)
            cells.append(f"{statistics.mean(rewards):.4f} ± {statistics.pstdev(rewards):.4f}"
                         + (f" [{overflows}]" if overflows else ""))
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
