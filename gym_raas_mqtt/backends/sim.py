"""In-process simulation backend: the pendulum is :func:`gym_raas_mqtt.physics.step`."""

from __future__ import annotations

from typing import Any

from gym_raas_mqtt import physics
from gym_raas_mqtt.physics import PendulumParams


class SimBackend:
    """Simulated pendulum stepping the identified model; never faults, never waits."""

    name = "sim"

    def __init__(self, params: PendulumParams = physics.DEFAULT_PARAMS) -> None:
        self.params = params
        self._theta = 0.0
        self._theta_dot = 0.0

    def reset(self, initial_state: tuple[float, float]) -> tuple[float, float, dict[str, Any]]:
        """Put the pendulum at ``initial_state`` = (θ [rad], θ̇ [rad/s]); returns it and no extra
        info."""
        self._theta, self._theta_dot = float(initial_state[0]), float(initial_state[1])
        return self._theta, self._theta_dot, {}

    def step(self, u: float) -> tuple[float, float, float, None]:
        """Advance one period under action ``u``; returns (θ [rad], θ̇ [rad/s], u applied, None)."""
        self._theta, self._theta_dot = physics.step(self.params, self._theta, self._theta_dot, u)
        return self._theta, self._theta_dot, u, None

    def close(self) -> None:
        """Nothing to release."""
