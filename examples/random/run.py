"""A random controller: uniform actions in [-2, 2] for one 200-step episode.

The simplest possible job: useful to see what the platform records (telemetry, logs, plots) and as
a baseline return to compare controllers with.
"""

import gymnasium as gym
import numpy as np

import gym_raas_mqtt  # noqa: F401  (registers RaasPendulum-v0)


def main() -> None:
    env = gym.make("RaasPendulum-v0")
    env.action_space.seed(0)
    obs, info = env.reset(seed=0)
    print(f"backend={info['backend']} calibration={info['calibration_id']}")
    total, steps = 0.0, 0
    truncated = terminated = False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        total += reward
        steps += 1
    print(f"steps={steps} return={total:.2f}")
    env.close()


if __name__ == "__main__":
    main()
