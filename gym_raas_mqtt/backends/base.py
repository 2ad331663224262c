"""The one interface between the env and whatever moves the pendulum.

The env (:class:`gym_raas_mqtt.envs.RaasPendulumEnv`) owns spaces, observation building, reward and
episode end; a backend only moves the pendulum. Two implementations: :class:`SimBackend`
(in-process, ``sim.py``) and ``BusBackend`` (a motor node over the node-local MQTT broker,
``bus.py``). Both step with :func:`gym_raas_mqtt.physics.step` semantics so that results agree.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from gym_raas_mqtt.physics import PendulumParams

StepInfo = dict[str, Any] | None
"""Extra per-step facts for ``info``: the keys :data:`STEP_INFO_KEYS`, built by :func:`step_info`
(None only from third-party backends that have none)."""

STEP_INFO_KEYS = ("t", "u_applied", "deadline_miss", "fault")
"""The keys of a step's ``info``, the same in simulation and on a node: ``t`` [s since the
episode started, motor clock; simulation: steps × dt], ``u_applied`` (action the motor got,
N·m-equivalent), ``deadline_miss`` (the tick was late; never in simulation), ``fault`` (why the
motor node went safe, else None)."""
RESET_INFO_KEYS = ("backend", "calibration_id", "episode_id")
"""The keys of ``reset()``'s ``info``: the backend's name, the model's calibration id and the
episode's number (from 1, per job on a node, per env in simulation)."""


def step_info(t: float, u_applied: float, deadline_miss: bool = False,
              fault: str | None = None) -> dict[str, Any]:
    """A step's ``info`` with exactly the keys :data:`STEP_INFO_KEYS` (units there)."""
    return {"t": t, "u_applied": u_applied, "deadline_miss": deadline_miss, "fault": fault}


@runtime_checkable
class Backend(Protocol):
    """What the env needs from a pendulum.

    Attributes:
        name: ``"sim"`` or ``"bus"``; reported in ``info["backend"]``.
        params: the model in force (dt, limits, calibration id).
    """

    name: str
    params: PendulumParams

    def reset(self, initial_state: tuple[float, float]) -> tuple[float, float, dict[str, Any]]:
        """Start an episode.

        Args:
            initial_state: (θ [rad], θ̇ [rad/s]) sampled by the env; a simulated pendulum starts
                there, a real one performs its closed-loop reset and ignores it.

        Returns:
            (θ, θ̇, info) of the episode's first state; info carries ``episode_id``.

        Raises:
            BackendError: the pendulum could not be reset (e.g. motor node missing or in fault).
        """
        ...

    def step(self, u: float) -> tuple[float, float, float, StepInfo]:
        """Apply action ``u`` (already clamped to ±params.max_action) for one control period.

        Returns:
            (θ [rad], θ̇ [rad/s], applied u, :func:`step_info` of the step).

        Raises:
            BackendError: no answer from the pendulum within the backend's deadline.
        """
        ...

    def close(self) -> None:
        """Release connections; idempotent."""
        ...
