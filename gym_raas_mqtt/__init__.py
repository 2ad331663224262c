"""RaaS-MQTT: a Gymnasium pendulum env that runs in simulation or on a fleet of real pendulums.

Importing the package registers ``RaasPendulum-v0`` and its original lower-case alias
``raaspendulum-v0`` (200-step limit by default), and the fleet-scaling envs ``FleetScaling-v0``
(1440 steps) and ``FleetScalingCompat-v0`` (gym-scaling's, no limit) with Gymnasium — at once
when Gymnasium is already loaded, otherwise the moment it is. Gymnasium and numpy are therefore loaded only by code that
uses them: ``import gym_raas_mqtt.protocol`` (what every platform service does) loads neither.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from typing import Any

__version__ = "0.1.0"

ENV_IDS = ("RaasPendulum-v0", "raaspendulum-v0")
DEFAULT_MAX_EPISODE_STEPS = 200
SCALING_ENVS = {  # id: (entry point, max_episode_steps)
    "FleetScaling-v0": ("gym_raas_mqtt.scaling.env:FleetScalingEnv", 1440),
    "FleetScalingCompat-v0": ("gym_raas_mqtt.scaling.compat:GymScalingEnv", None),
}


def register_envs() -> None:
    """Register :data:`ENV_IDS` and :data:`SCALING_ENVS` with Gymnasium (idempotent)."""
    from gymnasium.envs.registration import register, registry

    for env_id in ENV_IDS:
        if env_id not in registry:
            register(id=env_id, entry_point="gym_raas_mqtt.envs.pendulum:RaasPendulumEnv",
                     max_episode_steps=DEFAULT_MAX_EPISODE_STEPS)
    for env_id, (entry_point, max_steps) in SCALING_ENVS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=entry_point, max_episode_steps=max_steps)


class _RegisterWhenGymnasiumLoads(importlib.abc.MetaPathFinder):
    """Import hook: registers the env ids right after ``gymnasium`` finishes importing.

    It finds nothing itself; on the first import of ``gymnasium`` it steps aside, lets the other
    finders locate the package, and wraps the loader's ``exec_module`` so registration follows
    the package's own initialisation.
    """

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "gymnasium":
            return None
        sys.meta_path.remove(self)  # one shot; the regular finders locate gymnasium
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_register(module: Any) -> None:
            exec_module(module)
            register_envs()

        spec.loader.exec_module = exec_and_register  # type: ignore[method-assign]
        return spec


if "gymnasium" in sys.modules:
    register_envs()
elif not any(isinstance(f, _RegisterWhenGymnasiumLoads) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenGymnasiumLoads())


def __getattr__(name: str) -> Any:
    if name == "RaasPendulumEnv":  # the env class loads gymnasium: only when asked for
        from gym_raas_mqtt.envs import RaasPendulumEnv

        return RaasPendulumEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_MAX_EPISODE_STEPS", "ENV_IDS", "RaasPendulumEnv", "SCALING_ENVS",
           "__version__", "register_envs"]
