"""Backends that move the pendulum: in-process simulation or a motor node over MQTT."""

from __future__ import annotations

import os

from gym_raas_mqtt.backends.base import (RESET_INFO_KEYS, STEP_INFO_KEYS, Backend, StepInfo,
                                         step_info)
from gym_raas_mqtt.backends.sim import SimBackend
from gym_raas_mqtt.physics import PendulumParams

BACKEND_ENV_VAR = "RAAS_MQTT_URL"
"""When set (by the fleet node inside a job container), envs default to the bus backend."""


def make_backend(backend: str | Backend | None, params: PendulumParams) -> Backend:
    """Resolve the env's ``backend`` argument.

    Args:
        backend: ``"sim"``, ``"bus"``, a :class:`Backend` instance, or None for automatic choice:
            ``"bus"`` when ``RAAS_MQTT_URL`` is set, else ``"sim"``.
        params: model parameters for the simulation (the bus backend reads the motor node's).

    Raises:
        ValueError: unknown backend name.
        BackendError: the bus backend cannot reach its motor node.
    """
    if backend is None:
        backend = "bus" if os.environ.get(BACKEND_ENV_VAR) else "sim"
    if backend == "sim":
        return SimBackend(params)
    if backend == "bus":
        from gym_raas_mqtt.backends.bus import BusBackend  # paho only loaded when used

        return BusBackend.from_env(params)
    if isinstance(backend, str):
        raise ValueError(f"unknown backend {backend!r}: expected 'sim' or 'bus'")
    return backend


__all__ = ["Backend", "StepInfo", "SimBackend", "make_backend", "BACKEND_ENV_VAR", "STEP_INFO_KEYS",
           "RESET_INFO_KEYS", "step_info"]
