"""Swing the RaaS pendulum up by energy shaping, then balance it with a PD controller.

Written only against the public env API: the same file runs in simulation on a laptop
(``python examples/swingup/run.py``) and, submitted as a job, on a real pendulum (the node sets
RAAS_MQTT_URL and the env drives the motor node instead of simulating).

Model constants (from the env's documented dynamics θ̈ = a·sin θ + b·u − c·θ̇, θ = 0 upright):
a = 27.0 1/s², b = 8.0 rad/s² per unit u, c = 2.0 1/s. The motor saturates at |u| = 2, i.e. at most
16 rad/s² against gravity's 27: it cannot lift the rod directly and must pump energy in.
"""

import math

import gymnasium as gym
import numpy as np

import gym_raas_mqtt  # noqa: F401  (registers RaasPendulum-v0)

A, B, C = 27.0, 8.0, 2.0
U_MAX = 2.0
K_ENERGY = 0.6  # swing-up gain [u per (energy unit · rad/s)]
KP, KD = 12.0, 2.5  # balance gains [u/rad], [u per rad/s]
HANDOVER_COS = 0.94  # switch to balancing when cos θ > 0.94 (|θ| < 20°), as the original example
EPISODE_STEPS = 400  # 20 s at 20 Hz: time to swing up and then balance for well over 5 s
UPRIGHT_RAD = 0.3


def policy(obs: np.ndarray) -> float:
    cos_t, sin_t, theta_dot = (float(v) for v in obs)
    theta = math.atan2(sin_t, cos_t)
    if cos_t > HANDOVER_COS:
        u = -(KP * theta + KD * theta_dot)
    else:
        # E = ½θ̇² + a·cos θ is conserved without torque and damping; upright at rest is E* = a.
        energy = 0.5 * theta_dot**2 + A * cos_t
        u = K_ENERGY * (A - energy) * theta_dot + C * theta_dot / B  # pump in, cancel damping
    return max(-U_MAX, min(U_MAX, u))


def main() -> None:
    env = gym.make("RaasPendulum-v0", max_episode_steps=EPISODE_STEPS)
    obs, info = env.reset(seed=0)
    print(f"backend={info['backend']} calibration={info['calibration_id']}")
    total, upright_steps, best_upright = 0.0, 0, 0
    for step in range(EPISODE_STEPS):
        obs, reward, terminated, truncated, info = env.step(np.array([policy(obs)], np.float32))
        total += reward
        theta = math.atan2(float(obs[1]), float(obs[0]))
        upright_steps = upright_steps + 1 if abs(theta) < UPRIGHT_RAD else 0
        best_upright = max(best_upright, upright_steps)
        if step % 20 == 0:
            print(f"t={step * 0.05:5.2f}s theta={theta:+.3f} rad return={total:9.2f}", flush=True)
        if terminated or truncated:
            break
    seconds = best_upright * env.unwrapped.params.dt
    print(f"return={total:.2f} longest upright stretch={seconds:.2f} s "
          f"({'balanced' if seconds >= 5.0 else 'did not balance'})")
    env.close()


if __name__ == "__main__":
    main()
