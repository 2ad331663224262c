"""``FleetScaling-v0``: when to bring stations of a robot fleet online and offline, as a Gymnasium env."""

from __future__ import annotations

import math
import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from gym_raas_mqtt.scaling.actions import ActionSpec, target_online
from gym_raas_mqtt.scaling.arrivals import (
    ARRIVAL_KINDS,
    Durations,
    PoissonArrivals,
    SineArrivals,
    TraceArrivals,
)
from gym_raas_mqtt.scaling.fleet import FleetSim, Latencies
from gym_raas_mqtt.scaling.observation import (
    DAY_S,
    OBSERVATION_HIGH,
    OBSERVATION_LOW,
    FleetSnapshot,
    observe,
)
from gym_raas_mqtt.scaling.render import History, draw_panel
from gym_raas_mqtt.scaling.trace import Trace, read_trace

WINDOW_S = 3600.0
"""The observation's rolling window for the arrival rate and the mean wait [s]."""


class FleetScalingEnv(gym.Env[np.ndarray, np.int64]):
    """Scale a fleet of robot stations to a stream of jobs: cost against waiting time.

    ## Description
    Jobs arrive (Poisson, a diurnal sine, or a replayed platform trace) into one first-come,
    first-served queue. A station is in ``standby`` (powered down), ``booting`` (boot + reset +
    self-test, then idle), ``idle`` or ``busy`` (the job's run time, then a reset). Powered
    stations fail at a rate; a failed job goes back to the head of the queue and the station is
    repaired (``repair_s``) and boots again. Each step (``dt_s`` seconds) the agent sets how many
    stations should be online; scaling down cancels boots first, then idles, then lets busy
    stations finish their job (draining). The event simulation is exact in continuous time.

    ## Action Space
    ``Discrete(2k + 1)`` with ``action_mode="delta"``: change the online count by ``a − k``
    (``step_k = k``, default 1: −1, 0, +1). ``Discrete(max_stations + 1)`` with
    ``action_mode="target"``: ask for ``a`` stations. Clipped to [``min_stations``,
    ``max_stations``] (see :mod:`gym_raas_mqtt.scaling.actions`).

    ## Observation Space
    ``Box(low, high, (9,), float32)``, built by :func:`~gym_raas_mqtt.scaling.observation.observe`
    (M = max_stations, window = the last hour):

    | Num | Observation                                      | Min | Max |
    |-----|--------------------------------------------------|-----|-----|
    | 0   | online (idle + busy) / M                         | 0   | 1   |
    | 1   | busy / M                                         | 0   | 1   |
    | 2   | booting (pending boots) / M                      | 0   | 1   |
    | 3   | standby / M                                      | 0   | 1   |
    | 4   | queued / (queued + M)                            | 0   | 1   |
    | 5   | offered load a / (a + M), a = λ·E[S] [stations]  | 0   | 1   |
    | 6   | mean wait / (mean wait + SLO)                    | 0   | 1   |
    | 7   | sin(2π · time of day / 1 day)                    | -1  | 1   |
    | 8   | cos(2π · time of day / 1 day)                    | -1  | 1   |

    ## Rewards
    r = −cost − ``wait_weight`` · overdue, both per station of the fleet over the step:
    cost = (powered station-seconds + ``standby_cost_per_h / station_cost_per_h`` · standby
    station-seconds) / (M · dt_s), in [0, 1]; overdue = job-seconds spent waiting beyond
    ``slo_wait_s`` during the step / (M · dt_s), ≥ 0 and linear in the queue (not saturating).
    Range (−∞, 0]; 0 = nothing powered and nobody waiting past the SLO.

    ## Starting State
    Empty queue, ``stations`` stations idle (default M // 2), the rest in standby, at
    ``start_time_of_day_s`` (a trace starts at the time of day of its ``since``, UTC).

    ## Episode End
    Terminated when more than ``max_queue`` jobs wait. Truncated by the time limit
    (1440 steps = 1 day of 60 s steps with ``gym.make``), or when a replayed trace ends.

    ## Arguments
    - ``max_stations`` (10), ``stations`` (initial online; M // 2), ``min_stations`` (0),
      ``action_mode`` (``"delta"``), ``step_k`` (1), ``dt_s`` (60 s per step).
    - ``arrivals``: ``"poisson"``, ``"sine"`` or ``"trace"``; ``arrival_rate_per_h`` (12 jobs/h,
      the mean for ``"sine"``), ``sine_amplitude`` (0.8), ``sine_peak_s`` (14:00),
      ``start_time_of_day_s`` (0); ``trace`` (a :class:`~gym_raas_mqtt.scaling.trace.Trace` or a
      CSV path).
    - ``durations``: ``"exponential"``, ``"constant"``, ``"lognormal"`` (``duration_cv``) or
      ``"trace"``; ``mean_duration_s`` (600 s).
    - ``boot_s`` (120), ``reset_s`` (30), ``selftest_s`` (20), ``repair_s`` (1800) [s];
      ``failure_rate_per_h`` (0 per powered station-hour).
    - ``slo_wait_s`` (300 s), ``wait_weight`` (1), ``station_cost_per_h`` (1),
      ``standby_cost_per_h`` (0.1), ``max_queue`` (1000 jobs), ``render_mode`` (``"rgb_array"``).

    An M/M/c queue (for the Erlang C check): ``arrivals="poisson", arrival_rate_per_h=λ,
    durations="exponential", mean_duration_s=1/μ, max_stations=c, stations=c, boot_s=0,
    reset_s=0, selftest_s=0`` and the no-op action. ``info["waits_s"]`` lists the waits [s] of
    the jobs started in the step, ``info["mean_wait_s"]`` is the running mean since ``reset``.

    ```python
    >>> import gymnasium as gym
    >>> import gym_raas_mqtt
    >>> env = gym.make("FleetScaling-v0", max_stations=4, arrival_rate_per_h=30)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, obs.dtype, env.action_space
    ((9,), dtype('float32'), Discrete(3))
    >>> obs, reward, terminated, truncated, info = env.step(2)  # one more station
    >>> float(obs[2]) == 0.25, reward <= 0.0, terminated, truncated  # 1 of 4 booting
    (True, True, False, False)
    >>> env.close()

    ```

    ## Version History
    - v0: first version (issue 13).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, max_stations: int = 10, stations: int | None = None, min_stations: int = 0,
                 action_mode: str = "delta", step_k: int = 1, dt_s: float = 60.0,
                 arrivals: str = "poisson", arrival_rate_per_h: float = 12.0,
                 sine_amplitude: float = 0.8, sine_peak_s: float = 14 * 3600.0,
                 start_time_of_day_s: float | None = None, trace: Trace | str | None = None,
                 durations: str = "exponential", mean_duration_s: float = 600.0,
                 duration_cv: float = 1.0, boot_s: float = 120.0, reset_s: float = 30.0,
                 selftest_s: float = 20.0, repair_s: float = 1800.0,
                 failure_rate_per_h: float = 0.0, slo_wait_s: float = 300.0,
                 wait_weight: float = 1.0, station_cost_per_h: float = 1.0,
                 standby_cost_per_h: float = 0.1, max_queue: int = 1000,
                 render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}")
        self._action_spec = ActionSpec(action_mode,  # type: ignore[arg-type]
                                       step_k, max_stations, min_stations)
        initial = max_stations // 2 if stations is None else stations
        if int(initial) != initial or not min_stations <= initial <= max_stations:
            raise ValueError(f"stations must be an integer in [min_stations, max_stations], "
                             f"got {initial!r}")
        for name, value in (("dt_s", dt_s), ("slo_wait_s", slo_wait_s),
                            ("station_cost_per_h", station_cost_per_h)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be > 0, got {value}")
        if not (wait_weight >= 0 and standby_cost_per_h >= 0 and max_queue >= 1):
            raise ValueError("wait_weight and standby_cost_per_h must be ≥ 0, max_queue ≥ 1")
        if isinstance(trace, (str, os.PathLike)):
            trace = read_trace(trace)
        self.trace = trace
        self.durations = Durations(durations, mean_duration_s, duration_cv,
                                   None if trace is None else trace.durations_s)
        if start_time_of_day_s is None:
            start_time_of_day_s = 0.0 if trace is None else (
                trace.since.timestamp() % DAY_S)
        source = self._arrivals(arrivals, arrival_rate_per_h, sine_amplitude, sine_peak_s,
                                start_time_of_day_s)
        self.sim = FleetSim(max_stations, source, Latencies(boot_s, reset_s, selftest_s, repair_s),
                            failure_rate_per_h, slo_wait_s)
        self.initial_stations, self.dt_s, self.max_queue = initial, float(dt_s), int(max_queue)
        self.start_time_of_day_s, self.slo_wait_s = float(start_time_of_day_s), float(slo_wait_s)
        self.wait_weight = float(wait_weight)
        self.standby_weight = standby_cost_per_h / station_cost_per_h
        self.station_cost_per_h, self.standby_cost_per_h = station_cost_per_h, standby_cost_per_h
        self.action_space = spaces.Discrete(self._action_spec.n_actions)
        self.observation_space = spaces.Box(OBSERVATION_LOW, OBSERVATION_HIGH, dtype=np.float32)
        self.render_mode = render_mode
        self._window = max(1, round(WINDOW_S / self.dt_s))
        self.history = History()

    @property
    def action_spec(self) -> ActionSpec:
        """What this env's actions mean (give it to a policy)."""
        return self._action_spec

    def _arrivals(self, kind: str, rate: float, amplitude: float, peak_s: float,
                  start_s: float) -> Any:
        if kind == "poisson":
            return PoissonArrivals(rate, self.durations)
        if kind == "sine":
            return SineArrivals(rate, self.durations, amplitude, peak_s, start_s)
        if kind == "trace":
            if self.trace is None:
                raise ValueError("arrivals='trace' needs trace=<Trace or CSV path>")
            return TraceArrivals(self.trace, self.durations)
        raise ValueError(f"arrivals must be one of {ARRIVAL_KINDS}, got {kind!r}")

    def snapshot(self) -> FleetSnapshot:
        """The fleet as the dispatcher would see it now."""
        sim = self.sim
        filled = min(self._steps, self._window)
        rate = self._window_arrived / (filled * self.dt_s) * 3600.0 if filled else 0.0
        n_waits = self._window_started
        return FleetSnapshot(
            queued=len(sim.queue), idle=len(sim.idle), busy=sim.n_busy,
            booting=len(sim.booting), standby=sim.max_stations - sim.powered,
            max_stations=sim.max_stations, arrivals_last_hour=rate,
            mean_wait_s=self._window_wait_s / n_waits if n_waits else 0.0,
            time_of_day_s=(self.start_time_of_day_s + sim.t) % DAY_S,
            slo_wait_s=self.slo_wait_s, mean_duration_s=self.durations.mean_s)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode (see *Starting State*).

        Returns:
            observation float32 (9,); info with ``mean_wait_s`` (0) and ``waits_s`` ([]).
        """
        super().reset(seed=seed)
        self.sim.reset(self.np_random, self.initial_stations)
        self._steps = 0
        self._arrived = [0] * self._window
        self._wait_sum = [0.0] * self._window
        self._wait_count = [0] * self._window
        self._total_wait_s, self._started = 0.0, 0
        self._window_arrived, self._window_wait_s, self._window_started = 0, 0.0, 0
        self.history.clear()
        return observe(self.snapshot()), {"mean_wait_s": 0.0, "waits_s": []}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Scale (``action``), then run the fleet for ``dt_s`` seconds.

        Returns:
            (observation float32 (9,), reward (see *Rewards*), terminated (queue overflow),
            truncated (the replayed trace ended), info): info has ``waits_s`` (waits of the jobs
            started in the step [s]), ``mean_wait_s`` (running mean since reset [s]),
            ``queued``, ``online`` (idle + busy), ``cost`` (this step, in cost units:
            ``station_cost_per_h`` per powered station-hour), ``arrivals``, ``failures`` (total).

        Raises:
            ValueError: an action outside the action space.
        """
        sim = self.sim
        sim.scale_to(target_online(action, sim.committed, self._action_spec))
        powered, standby, overdue = sim.powered_s, sim.standby_s, sim.overdue_s
        waits, arrived = sim.advance(sim.t + self.dt_s)
        powered, standby = sim.powered_s - powered, sim.standby_s - standby
        scale = 1.0 / (sim.max_stations * self.dt_s)
        reward = -(powered + self.standby_weight * standby) * scale \
            - self.wait_weight * (sim.overdue_s - overdue) * scale
        self._record_window(arrived, waits)
        terminated = len(sim.queue) > self.max_queue
        truncated = self.trace is not None and sim.next_arrival[0] == math.inf and \
            sim.t >= self.trace.span_s
        snapshot = self.snapshot()
        if self.render_mode is not None:
            self.history.record(arrived, snapshot, reward)
        info = {"waits_s": waits,
                "mean_wait_s": self._total_wait_s / self._started if self._started else 0.0,
                "queued": snapshot.queued, "online": snapshot.online,
                "cost": (powered * self.station_cost_per_h + standby * self.standby_cost_per_h)
                / 3600.0, "arrivals": arrived, "failures": sim.n_failures}
        return observe(snapshot), float(reward), terminated, truncated, info

    def _record_window(self, arrived: int, waits: list[float]) -> None:
        # running sums over a ring of the last hour's steps: O(1) per step
        slot = self._steps % self._window
        self._steps += 1
        wait_sum, started = sum(waits), len(waits)
        self._window_arrived += arrived - self._arrived[slot]
        self._window_wait_s += wait_sum - self._wait_sum[slot]
        self._window_started += started - self._wait_count[slot]
        self._arrived[slot], self._wait_sum[slot], self._wait_count[slot] = \
            arrived, wait_sum, started
        self._total_wait_s += wait_sum
        self._started += started

    def render(self) -> np.ndarray | None:
        """An RGB frame uint8 (H, W, 3): gym-scaling's panel (arrivals, queue, online) and stats."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode to gym.make")
            return None
        return draw_panel(self.history, self.sim.max_stations, self.sim.t)
