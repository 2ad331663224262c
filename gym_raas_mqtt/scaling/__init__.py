"""Fleet scaling: the ``FleetScaling-v0`` simulator of a fleet of stations, its policies and tools.

Modules (numpy only; ``env`` and ``compat`` also load Gymnasium):

- :mod:`~gym_raas_mqtt.scaling.actions`: what an action means (shared with the dispatcher).
- :mod:`~gym_raas_mqtt.scaling.observation`: :class:`FleetSnapshot` and ``observe()``.
- :mod:`~gym_raas_mqtt.scaling.policies`: the ``decide(observation)`` protocol and baselines.
- :mod:`~gym_raas_mqtt.scaling.trace`: the trace CSV format (reader and writer).
- :mod:`~gym_raas_mqtt.scaling.arrivals`: Poisson, diurnal sine and trace-replay arrivals.
- :mod:`~gym_raas_mqtt.scaling.fleet`: the event simulation of stations and the queue.
- :mod:`~gym_raas_mqtt.scaling.env`: ``FleetScaling-v0``.
- :mod:`~gym_raas_mqtt.scaling.compat`: ``FleetScalingCompat-v0``, adobe gym-scaling's dynamics.
- :mod:`~gym_raas_mqtt.scaling.erlang`: the Erlang C formula (M/M/c waiting).
- :mod:`~gym_raas_mqtt.scaling.plan`: the smallest fleet meeting a waiting-time SLO on a trace.
- :mod:`~gym_raas_mqtt.scaling.render`, :mod:`~gym_raas_mqtt.scaling.raster`: numpy-only drawing.

Nothing here is imported by ``import gym_raas_mqtt.scaling``: the dispatcher imports
``observation``, ``policies``, ``actions`` and ``trace`` without loading Gymnasium.
"""
