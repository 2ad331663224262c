"""``RaasPendulum-v0``: the RaaS inverted pendulum, simulated in-process or real through a motor node."""

from __future__ import annotations

import math
from importlib.util import find_spec
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from gym_raas_mqtt import physics
from gym_raas_mqtt.backends import Backend, make_backend
from gym_raas_mqtt.calibration import load_calibration
from gym_raas_mqtt.envs.rendering import PendulumRenderer
from gym_raas_mqtt.physics import PendulumParams

DOWN_NOISE_RAD = 0.05
"""Half-width [rad, rad/s] of the uniform noise on the default hanging-down start; about what a
real pendulum shows after its closed-loop reset (|θ − π| < 2°, |θ̇| < 0.05 rad/s)."""
UNIFORM_MAX_SPEED = 1.0
"""|θ̇| bound [rad/s] of the ``"uniform"`` start, as in Gymnasium's Pendulum."""


class RaasPendulumEnv(gym.Env[np.ndarray, np.ndarray]):
    """Swing up and balance the RaaS pendulum: a rod on a geared DC motor with an encoder.

    ## Description
    The same class runs in two places. On a laptop it simulates the pendulum in-process with the
    model identified on the original RaaS hardware (:mod:`gym_raas_mqtt.physics`). Inside a job on a
    RaaS node (where ``RAAS_MQTT_URL`` is set) it drives the real pendulum through the node's motor
    node over MQTT; the motor node's clock sets the control period and enforces every safety limit.
    Spaces, reward and episode end are identical in both.

    θ = 0 is upright; θ = ±π hangs down. Dynamics (semi-implicit Euler, dt = 0.05 s):
    θ̈ = 27.0·sin θ + 8.0·u − 2.0·θ̇, then |θ̇| is clipped to 20 rad/s.

    ## Action Space
    ``Box(-2.0, 2.0, (1,), float32)``

    | Num | Action | Min  | Max |
    |-----|--------|------|-----|
    | 0   | torque u (N·m-equivalent; motor duty = 250·u / 1000) | -2.0 | 2.0 |

    Actions outside the bounds are clipped (by the env and again by the motor node).

    ## Observation Space
    ``Box([-1, -1, -20], [1, 1, 20], (3,), float32)``

    | Num | Observation       | Min  | Max |
    |-----|-------------------|------|-----|
    | 0   | cos θ             | -1.0 | 1.0 |
    | 1   | sin θ             | -1.0 | 1.0 |
    | 2   | θ̇ [rad/s]         | -20  | 20  |

    ## Rewards
    r = −(θ_n² + 0.1·θ̇² + 0.001·u²), θ_n = θ wrapped to [−π, π), computed from the state *before*
    the step and the clipped action. Range [−49.87, 0]; 0 means upright, still, with no torque.

    ## Starting State
    ``reset()`` starts hanging down at rest, θ ~ π + U(−0.05, 0.05), θ̇ ~ U(−0.05, 0.05), which is
    what a real pendulum gives after its closed-loop reset. ``options={"initial_state": "uniform"}``
    gives θ ~ U(−π, π), θ̇ ~ U(−1, 1) (simulation only: a real pendulum always starts down);
    ``options={"initial_state": (θ, θ̇)}`` sets it exactly (simulation only).

    ## Episode End
    Never terminated. Truncated by the time limit (200 steps = 10 s by default, set
    ``max_episode_steps`` in ``gym.make``), or when the motor node faults (``info["fault"]`` says
    why).

    ## Info
    The same keys in simulation and on a node. ``reset()``: ``backend``, ``calibration_id``,
    ``episode_id`` (1, 2, ... per job on a node, per env in simulation). ``step()``: ``t`` [s since
    the episode started], ``u_applied`` (the action the motor got), ``deadline_miss`` (always
    False in simulation) and ``fault`` (None unless the motor node went safe).

    ## Arguments
    - ``backend``: ``"sim"``, ``"bus"``, a :class:`~gym_raas_mqtt.backends.Backend`, or None
      (``"bus"`` if ``RAAS_MQTT_URL`` is set, else ``"sim"``).
    - ``params``: :class:`~gym_raas_mqtt.physics.PendulumParams`; default: the original model.
    - ``calibration``: path to a calibration TOML file (overrides ``params``).
    - ``render_mode``: ``"rgb_array"`` (numpy only) or ``"human"`` (needs the ``render`` extra).

    ```python
    >>> import gymnasium as gym
    >>> import gym_raas_mqtt
    >>> env = gym.make("RaasPendulum-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, obs.dtype, info["backend"]
    ((3,), dtype('float32'), 'sim')
    >>> bool(obs[0] < -0.99)  # hanging down: cos θ ≈ −1
    True
    >>> obs, reward, terminated, truncated, info = env.step(np.array([2.0], dtype=np.float32))
    >>> bool(-49.9 < reward <= 0.0), terminated, truncated
    (True, False, False)
    >>> env.close()

    ```

    ## Version History
    - v0: the original RaaS ids (``RaasPendulum-v0``, ``raaspendulum-v0``), now on Gymnasium 1.x;
      adds a default 200-step limit and the hanging-down start of the real robot.
    """

    # "human" is offered only when its optional dependency (the ``render`` extra) is installed.
    metadata = {"render_modes": ["rgb_array"] + (["human"] if find_spec("pygame") else []),
                "render_fps": 20}

    def __init__(self, backend: str | Backend | None = None, params: PendulumParams | None = None,
                 calibration: str | None = None, render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}")
        if calibration is not None:
            params = load_calibration(calibration)
        self._backend = make_backend(backend, params or physics.DEFAULT_PARAMS)
        self.params = self._backend.params
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.params.dt)}
        self.render_mode = render_mode
        max_speed = np.float32(self.params.max_speed)
        high = np.array([1.0, 1.0, max_speed], dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        a = self.params.max_action
        self.action_space = spaces.Box(-a, a, shape=(1,), dtype=np.float32)
        self._max_action = a
        self._theta = math.pi
        self._theta_dot = 0.0
        self._last_u: float | None = None
        self._renderer: Any = None

    @property
    def backend(self) -> Backend:
        """The backend moving the pendulum."""
        return self._backend

    @property
    def state(self) -> tuple[float, float]:
        """(θ [rad], θ̇ [rad/s]) as last observed (θ unwrapped)."""
        return self._theta, self._theta_dot

    def _obs(self) -> np.ndarray:
        th = self._theta
        return np.array((math.cos(th), math.sin(th), self._theta_dot), dtype=np.float32)

    def _sample_start(self, options: dict[str, Any] | None) -> tuple[float, float]:
        mode = (options or {}).get("initial_state", "down")
        rng = self.np_random
        if mode == "down":
            th = math.pi + float(rng.uniform(-DOWN_NOISE_RAD, DOWN_NOISE_RAD))
            return th, float(rng.uniform(-DOWN_NOISE_RAD, DOWN_NOISE_RAD))
        if mode == "uniform":
            return (float(rng.uniform(-math.pi, math.pi)),
                    float(rng.uniform(-UNIFORM_MAX_SPEED, UNIFORM_MAX_SPEED)))
        if isinstance(mode, (tuple, list, np.ndarray)) and len(mode) == 2:
            th, thd = float(mode[0]), float(mode[1])
            if not (math.isfinite(th) and math.isfinite(thd)):
                raise ValueError("initial_state must be finite")
            return th, physics.clip(thd, -self.params.max_speed, self.params.max_speed)
        raise ValueError(
            f"options['initial_state'] must be 'down', 'uniform' or (theta, theta_dot), got {mode!r}"
        )

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode (see the class docstring's *Starting state*).

        Returns:
            observation float32 (3,) = cos θ, sin θ, θ̇ [rad/s]; info with the keys
            :data:`~gym_raas_mqtt.backends.base.RESET_INFO_KEYS` (``backend``, ``calibration_id``,
            ``episode_id`` counted from 1).

        Raises:
            ValueError: a malformed ``options["initial_state"]``.
            BackendError: the motor node could not reset (bus backend).
        """
        super().reset(seed=seed)
        start = self._sample_start(options)
        self._theta, self._theta_dot, extra = self._backend.reset(start)
        self._last_u = None
        info = {"backend": self._backend.name, "calibration_id": self.params.calibration_id,
                **extra}
        if self.render_mode == "human":
            self.render()
        return self._obs(), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply ``action`` (float32 (1,), N·m-equivalent, clipped to ±max_action) for one
        control period.

        Returns:
            (observation (3,), reward, terminated (always False), truncated (the motor node went
            safe), info). info has the same keys in simulation and on a node
            (:data:`~gym_raas_mqtt.backends.base.STEP_INFO_KEYS`: ``t`` [s], ``u_applied``,
            ``deadline_miss``, ``fault``).

        Raises:
            ValueError: a non-finite action.
            BackendError: the motor node stopped answering (bus backend).
        """
        u = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        if not math.isfinite(u):
            raise ValueError(f"action must be finite, got {u}")
        a = self._max_action
        u = -a if u < -a else a if u > a else u
        r = physics.reward(self._theta, self._theta_dot, u)
        self._theta, self._theta_dot, _, extra = self._backend.step(u)
        self._last_u = u
        info: dict[str, Any] = {} if extra is None else extra
        truncated = bool(info.get("fault"))
        if self.render_mode == "human":
            self.render()
        return self._obs(), r, False, truncated, info

    def render(self) -> np.ndarray | None:
        """An RGB frame uint8 (H, W, 3) in ``rgb_array`` mode; draws a window in ``human`` mode."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode to gym.make")
            return None
        if self._renderer is None:
            self._renderer = PendulumRenderer(human=self.render_mode == "human",
                                              fps=self.metadata["render_fps"])
        return self._renderer.draw(self._theta, self._last_u, self._max_action)

    def close(self) -> None:
        """Close the window (if any) and the backend (the bus backend's connection)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._backend.close()
