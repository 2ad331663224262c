"""What a job may ask of the motor node: the bounds on episode ids, sequence numbers and resets.

A job's env is the only sender of actions and resets, and a hostile one must not be able to leave
the motor node in a state the next job cannot work with. Episode ids and sequence numbers may only
move forward, by a bounded step, so no id can be pushed to where the next one would overflow the
wire's integer range; a start state is honoured only where it is physically possible (a simulated
pendulum) and only within the model's limits.
"""

from __future__ import annotations

import math

from gym_raas_mqtt.physics import PendulumParams, angle_normalize
from gym_raas_mqtt.protocol import ResetRequest

MAX_EPISODE_ID = 2**31 - 1
"""Largest episode id a reset may name (far below the wire's integer bound of 2**53)."""
EPISODE_STEP_MAX = 1000
"""A reset's episode id may be at most this far ahead of the last one (the env counts by one)."""
SEQ_STEP_MAX = 1000
"""An action's seq may be at most this far ahead of the last one applied (the env counts by one;
a gap means lost QoS 0 actions)."""
REST_START_TOL = 0.1
"""On hardware, a requested start this close to hanging at rest (|θ − π| [rad] and |θ̇| [rad/s])
is what the closed-loop reset gives anyway, so it is accepted; the env's default start is within
0.05 of it."""


def seq_in_window(last_seq: int, seq: int) -> bool:
    """Whether an action numbered ``seq`` may follow the last one applied, ``last_seq``."""
    return last_seq < seq <= last_seq + SEQ_STEP_MAX


def reset_refusal(req: ResetRequest, last_episode: int | None, params: PendulumParams,
                  placeable: bool) -> str | None:
    """Why the motor node refuses reset request ``req``; None when it may start.

    Args:
        req: the request (its episode id and optional ``initial_state`` = (θ [rad], θ̇ [rad/s])).
        last_episode: the current or last episode of this job; None before its first.
        params: the model in force (``max_speed`` [rad/s] bounds a requested θ̇).
        placeable: the motor can be placed at a state (a simulation); a real pendulum cannot.

    Returns:
        One line for the env's ``ResetReply.error``, or None.
    """
    last = last_episode or 0
    episode = req.episode_id
    if episode <= last:
        return f"episode id {episode} is not newer than {last}"
    if episode > last + EPISODE_STEP_MAX:
        return (f"episode id {episode} is more than {EPISODE_STEP_MAX} ahead of the last "
                f"episode ({last})")
    if episode > MAX_EPISODE_ID:
        return f"episode id {episode} is above {MAX_EPISODE_ID}"
    if req.initial_state is None:
        return None
    theta, theta_dot = req.initial_state
    if not (math.isfinite(theta) and math.isfinite(theta_dot)):
        return "initial_state must be finite"
    if abs(theta_dot) > params.max_speed:
        return (f"initial_state θ̇ = {theta_dot:g} rad/s is beyond the pendulum's max speed "
                f"{params.max_speed:g} rad/s")
    at_rest = (abs(angle_normalize(theta - math.pi)) <= REST_START_TOL
               and abs(theta_dot) <= REST_START_TOL)
    if not placeable and not at_rest:
        return (f"this node's pendulum is real and cannot be placed at initial_state "
                f"(θ = {theta:g} rad, θ̇ = {theta_dot:g} rad/s): it starts hanging at rest "
                f"after its closed-loop reset (use the env's default start)")
    return None
