"""In-process simulation backend: the pendulum is :func:`gym_raas_mqtt.physics.step`."""

from __future__ import annotations

from typing import Any

from gym_raas_mqtt import physics
from gym_raas_mqtt.backends.base import step_info
from gym_raas_mqtt.physics import PendulumParams


class SimBackend:
    """Simulated pendulum stepping the identified model; never faults, never waits.

    Its ``info`` has the keys a node's has (:data:`~gym_raas_mqtt.backends.base.STEP_INFO_KEYS`):
    ``t`` counts control periods as a lockstep node does, ``deadline_miss`` is False, ``fault``
    None; episodes are numbered from 1 per backend.
    """

    name = "sim"

    def __init__(self, params: PendulumParams = physics.DEFAULT_PARAMS) -> None:
        self.params = params
        self._theta = 0.0
        self._theta_dot = 0.0
        self._episode = 0
        self._seq = 0

    def reset(self, initial_state: tuple[float, float]) -> tuple[float, float, dict[str, Any]]:
        """Put the pendulum at ``initial_state`` = (θ [rad], θ̇ [rad/s]); returns it and the
        episode's number."""
        self._theta, self._theta_dot = float(initial_state[0]), float(initial_state[1])
        self._episode += 1
        self._seq = 0
        return self._theta, self._theta_dot, {"episode_id": self._episode}

    def step(self, u: float) -> tuple[float, float, float, dict[str, Any]]:
        """Advance one period under action ``u``; returns (θ [rad], θ̇ [rad/s], u applied, info)."""
        self._theta, self._theta_dot = physics.step(self.params, self._theta, self._theta_dot, u)
        self._seq += 1
        # as a lockstep node: exact multiples of the period, so sim and node agree bit for bit
        return self._theta, self._theta_dot, u, step_info(self._seq * self.params.dt, u)

    def close(self) -> None:
        """Nothing to release."""
