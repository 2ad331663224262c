"""Gymnasium environments of RaaS-MQTT."""

from gym_raas_mqtt.envs.pendulum import RaasPendulumEnv

__all__ = ["RaasPendulumEnv"]
