"""Known excitation for system identification, run as a job's ``run.py`` (hardware/calibration.md).

The motor node records the telemetry (θ, θ̇, u_desired, u_applied per step); this script only
chooses actions. Per episode: alternating blocks of piecewise-constant random actions (held
0.1–0.4 s, uniform in [−2, 2]) and linear chirps (0.2 → 3 Hz, amplitude 1.5), from a fixed seed so
that every robot gets the same excitation. Two episodes of 45 s fit the default 120 s job limit.
Without ``RAAS_MQTT_URL`` it runs against the simulator (a dry run).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

import gym_raas_mqtt  # noqa: F401 - registers RaasPendulum-v0

SEED = 20261121
EPISODES = 2
EPISODE_S = 45.0
BLOCK_S = 7.5  # alternate random steps and chirps every BLOCK_S
U_MAX = 2.0


def excitation(rng: np.random.Generator, dt: float, seconds: float) -> list[float]:
    """Actions for one episode, one per control period ``dt`` [s]."""
    n, out = round(seconds / dt), []
    block = round(BLOCK_S / dt)
    while len(out) < n:
        if (len(out) // block) % 2 == 0:  # random steps
            end = len(out) + block
            while len(out) < end:
                out += [float(rng.uniform(-U_MAX, U_MAX))] * round(rng.uniform(0.1, 0.4) / dt)
            del out[end:]
        else:  # chirp: phase of a linear sweep f0 → f1 over the block
            f0, f1, T = 0.2, 3.0, block * dt
            for k in range(block):
                t = k * dt
                out.append(1.5 * math.sin(2 * math.pi * (f0 * t + (f1 - f0) * t * t / (2 * T))))
    return out[:n]


def main() -> None:
    env = gym.make("RaasPendulum-v0", max_episode_steps=100_000)  # we stop ourselves
    dt = env.unwrapped.params.dt
    rng = np.random.default_rng(SEED)
    for episode in range(EPISODES):
        env.reset(seed=SEED + episode)
        steps = 0
        for u in excitation(rng, dt, EPISODE_S):
            _, _, terminated, truncated, info = env.step(np.array([u], dtype=np.float32))
            steps += 1
            if terminated or truncated:
                print(f"episode {episode}: ended early after {steps} steps ({info})")
                break
        print(f"episode {episode}: {steps} steps")
    env.close()


if __name__ == "__main__":
    main()
