"""RaaS-MQTT: a Gymnasium pendulum env that runs in simulation or on a fleet of real pendulums.

Importing the package registers ``RaasPendulum-v0`` and its original lower-case alias
``raaspendulum-v0`` (200-step limit by default).
"""

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

ENV_IDS = ("RaasPendulum-v0", "raaspendulum-v0")
DEFAULT_MAX_EPISODE_STEPS = 200

for _env_id in ENV_IDS:
    if _env_id not in registry:
        register(id=_env_id, entry_point="gym_raas_mqtt.envs.pendulum:RaasPendulumEnv",
                 max_episode_steps=DEFAULT_MAX_EPISODE_STEPS)

from gym_raas_mqtt.envs import RaasPendulumEnv  # noqa: E402

__all__ = ["RaasPendulumEnv", "ENV_IDS", "__version__"]
