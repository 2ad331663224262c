"""``FleetScalingCompat-v0``: adobe gym-scaling's dynamics and reward, with its cost bug fixed."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from gym_raas_mqtt.scaling.actions import ActionSpec
from gym_raas_mqtt.scaling.observation import (
    DAY_S,
    OBSERVATION_HIGH,
    OBSERVATION_LOW,
    FleetSnapshot,
    observe,
)
from gym_raas_mqtt.scaling.render import History, draw_panel

STEP_S = 300.0
"""One step is 5 minutes (AWS CloudWatch's finest resolution, gym-scaling's choice) [s]."""
C3_LARGE_PER_H = 0.192
"""gym-scaling's instance price: a c3.large [$ per instance-hour]."""
INPUTS = ("random", "sine")
OUT_OF_BOUNDS_PENALTY = 0.1
"""Reward penalty of an action that would leave [min, max] instances (the action is dropped)."""


class GymScalingEnv(gym.Env[np.ndarray, np.int64]):
    """gym-scaling's cloud service: requests queue for instances of a fixed capacity.

    ## Description
    Each 5-minute step ``influx`` requests arrive; the ``n`` instances process up to
    ``n · capacity_per_instance`` of influx + queue; the rest stays queued. ``load`` is the
    percentage of capacity used (rounded up). Scaling takes effect one step late (instance boot
    time): the action of step t is applied at the end of step t + 1, after that step's requests
    are processed. ``input="random"``: the influx is redrawn uniformly in [offset, max influx]
    every ``change_rate`` steps (max influx = max_instances / 2 · capacity_per_instance);
    ``input="sine"``: influx = ⌈(sin(0.01·step) + 1) · max influx / 2⌉ at every ``change_rate``-th
    step. The episode starts with max_instances / 2 instances and an empty queue.

    Fixed here: gym-scaling charged the initial instances their *capacity* (87) as an hourly
    price, and charged each instance, every hour, its price times its age in steps, so the total
    cost grew quadratically with time. Here every instance costs ``cost_per_instance_per_hour``
    per hour it exists (``info["cost"]``, ``info["total_cost"]`` in $). The reward never
    contained the cost, so rewards compare with the original's.

    ## Action Space
    ``Discrete(3)``: −1, 0, +1 instance (index 0, 1, 2; ``ActionSpec("delta", 1, 100, 2)``).

    ## Observation Space
    The 9 entries of :func:`~gym_raas_mqtt.scaling.observation.observe` (so the same policies run
    here and on ``FleetScaling-v0``), from this snapshot: queued = the queue, busy = ⌈processed /
    capacity⌉, idle = n − busy, booting = a pending +1, standby = the rest; arrivals = influx·12
    per hour; job duration = 300 s / capacity; wait = queue / capacity·300 s (time to drain);
    SLO = 300 s. ``info["gym_scaling_observation"]`` has the original 5 values
    (n / max, load / 100, capacity, influx, queue).

    ## Rewards
    r = −(1 − load / 100) · n / max_instances − q / (1 + q) − 0.1 if the applied action was out of
    bounds. Range [−2.1, 0].

    ## Episode End
    Terminated when the queue exceeds 10 × max influx. No time limit (as the original).

    ## Arguments
    ``input`` (``"random"``/``"sine"``), ``change_rate`` (10000 steps), ``max_instances`` (100),
    ``min_instances`` (2), ``capacity_per_instance`` (87 requests per step), ``offset`` (500),
    ``cost_per_instance_per_hour`` (0.192 $), ``render_mode`` (``"rgb_array"``).

    ```python
    >>> import gymnasium as gym
    >>> import gym_raas_mqtt
    >>> env = gym.make("FleetScalingCompat-v0", input="sine", change_rate=1)
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(1)
    >>> info["gym_scaling_observation"]  # 50 instances, sin(0.01) influx, empty queue
    (0.5, 0.51, 4350.0, 2197.0, 0.0)
    >>> round(reward, 4)  # −(1 − 0.51) · 0.5
    -0.245

    ```

    ## Version History
    - v0: gym-scaling's ScalingEnv on Gymnasium 1.x, seeded, with the cost fixed.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, input: str = "random", change_rate: int = 10000,
                 max_instances: int = 100, min_instances: int = 2,
                 capacity_per_instance: int = 87, offset: int = 500,
                 cost_per_instance_per_hour: float = C3_LARGE_PER_H,
                 render_mode: str | None = None) -> None:
        if input not in INPUTS:
            raise ValueError(f"input must be one of {INPUTS}, got {input!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}")
        if change_rate < 1 or capacity_per_instance < 1 or min_instances < 1:
            raise ValueError("change_rate, capacity_per_instance and min_instances must be ≥ 1")
        self.action_spec = ActionSpec("delta", 1, max_instances, min_instances)
        self.input, self.change_rate, self.offset = input, int(change_rate), int(offset)
        self.max_instances, self.min_instances = max_instances, min_instances
        self.capacity = capacity_per_instance
        self.price_per_step = cost_per_instance_per_hour * STEP_S / 3600.0
        self.max_influx = max_instances // 2 * capacity_per_instance
        if not 0 <= offset <= self.max_influx:
            raise ValueError(f"offset must be in [0, {self.max_influx}], got {offset}")
        self.action_space = spaces.Discrete(3)
        self.observation_space = spaces.Box(OBSERVATION_LOW, OBSERVATION_HIGH, dtype=np.float32)
        self.render_mode = render_mode
        self.history = History()

    def _next_influx(self) -> int:
        if self.input == "random":
            return int(self.np_random.integers(self.offset, self.max_influx + 1))
        return math.ceil((math.sin(self.step_idx * 0.01) + 1.0) * self.max_influx / 2)

    def _snapshot(self, processed: int) -> FleetSnapshot:
        n = self.instances
        busy = min(n, -(-processed // self.capacity))
        booting = 1 if self.pending > 0 else 0
        return FleetSnapshot(
            queued=self.queue, idle=n - busy, busy=busy, booting=booting,
            standby=max(self.max_instances - n - booting, 0), max_stations=self.max_instances,
            arrivals_last_hour=self.influx * 3600.0 / STEP_S,
            mean_wait_s=self.queue / (n * self.capacity) * STEP_S,
            time_of_day_s=(self.step_idx * STEP_S) % DAY_S, slo_wait_s=STEP_S,
            mean_duration_s=STEP_S / self.capacity)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start with max_instances / 2 instances, an empty queue and a fresh influx.

        Returns:
            observation float32 (9,), info with ``total_cost`` (0).
        """
        super().reset(seed=seed)
        self.instances, self.queue, self.load, self.pending = self.max_instances // 2, 0, 0, 0
        self.step_idx, self.total_cost = 0, 0.0
        self.influx = self._next_influx()
        self.history.clear()
        return observe(self._snapshot(0)), {"total_cost": 0.0}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Process one 5-minute step, then apply the previous step's action.

        Returns:
            (observation (9,), reward, terminated (queue overflow), False, info with ``load``
            [%], ``cost`` and ``total_cost`` [$], ``influx``, ``gym_scaling_observation``).

        Raises:
            ValueError: an action outside ``Discrete(3)``.
        """
        if not 0 <= int(action) < 3:
            raise ValueError(f"action must be 0, 1 or 2, got {action!r}")
        self.step_idx += 1
        if self.step_idx % self.change_rate == 0:
            self.influx = self._next_influx()
        total = self.influx + self.queue
        capacity = self.instances * self.capacity
        processed = min(total, capacity)
        self.load = math.ceil(processed / capacity * 100)
        self.queue = total - processed
        cost = self.instances * self.price_per_step  # the fix: a price per instance-hour
        self.total_cost += cost
        applied, self.pending = self.pending, int(action) - 1
        penalty = 0.0
        if self.min_instances <= self.instances + applied <= self.max_instances:
            self.instances += applied
        else:
            penalty = OUT_OF_BOUNDS_PENALTY
        q = self.queue
        reward = -(1.0 - self.load / 100) * self.instances / self.max_instances - q / (1 + q) \
            - penalty
        snapshot = self._snapshot(processed)
        if self.render_mode is not None:
            self.history.record(self.influx, snapshot, reward)
        info = {"load": self.load, "cost": cost, "total_cost": self.total_cost,
                "influx": self.influx,
                "gym_scaling_observation": (self.instances / self.max_instances, self.load / 100,
                                            float(capacity), float(self.influx), float(q))}
        return observe(snapshot), reward, q > self.max_influx * 10, False, info

    def render(self) -> np.ndarray | None:
        """An RGB frame uint8 (H, W, 3): influx, queue, instances over 300 steps, and stats."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode to gym.make")
            return None
        return draw_panel(self.history, self.max_instances, self.step_idx * STEP_S)
