"""The simulated motor: the identified pendulum model behind the :class:`Motor` interface."""

from __future__ import annotations

import math
import threading

from gym_raas_mqtt import physics
from gym_raas_mqtt.physics import PendulumParams


class SimMotor:
    """A pendulum simulated with :func:`gym_raas_mqtt.physics.step`, one period per :meth:`read`.

    With both sensor effects off (the default) a sequence ``set_state(θ0, θ̇0)``, ``apply(u)``,
    ``read()`` gives exactly ``physics.step(params, θ0, θ̇0, clamp(u))``: the in-process env and a
    motor node running this class agree bit for bit.

    Args:
        params: the model (its ``dt`` is the period each :meth:`read` advances).
        quantize: report θ rounded to the encoder resolution 2π/``params.counts_per_rev`` (the model
            keeps the exact state) and θ̇ as the finite difference of reported angles.
        deadband: keep the calibration's action dead-band (``deadband_low``/``deadband_high``);
            when False the dead-band is removed from the model.
        model: the simulated robot's true dynamics when they should differ from its calibration
            ``params`` (a sim-to-real gap, e.g. to check that a self-test catches a wrong
            calibration); default ``params``.
    """

    name = "sim"
    placeable = True

    def __init__(self, params: PendulumParams = physics.DEFAULT_PARAMS, *,
                 quantize: bool = False, deadband: bool = False,
                 model: PendulumParams | None = None) -> None:
        model = model or params
        if not deadband and model.deadband_low != model.deadband_high:
            model = model.replace(deadband_low=0.0, deadband_high=0.0)
        if model.dt != params.dt:
            raise ValueError("the model and the calibration must share dt")
        self.params = params
        self._model = model
        self._quantize = quantize
        self._count_rad = 2.0 * math.pi / params.counts_per_rev
        self._lock = threading.Lock()  # stop() may come from another thread
        self._theta = math.pi
        self._theta_dot = 0.0
        self._reported_theta = self._measure(self._theta)
        self._u = 0.0

    def _measure(self, theta: float) -> float:
        if not self._quantize:
            return theta
        return round(theta / self._count_rad) * self._count_rad

    def apply(self, desired: float) -> float:
        """Hold ``desired`` clamped to ±max_action until the next call; returns the applied value."""
        a = self.params.max_action
        u = -a if desired < -a else a if desired > a else float(desired)
        if u != u:  # NaN never reaches the model
            u = 0.0
        with self._lock:
            self._u = u
        return u

    def read(self) -> tuple[float, float]:
        """Advance the model by one period under the held command; return (θ [rad], θ̇ [rad/s])."""
        with self._lock:
            self._theta, self._theta_dot = physics.step(self._model, self._theta,
                                                        self._theta_dot, self._u)
            if not self._quantize:
                return self._theta, self._theta_dot
            previous = self._reported_theta
            self._reported_theta = self._measure(self._theta)
            return self._reported_theta, (self._reported_theta - previous) / self.params.dt

    def peek(self) -> tuple[float, float]:
        """The model's exact state without advancing it (tests and diagnostics)."""
        with self._lock:
            return self._theta, self._theta_dot

    @property
    def command(self) -> float:
        """The command currently held [u]."""
        return self._u

    def set_state(self, theta: float, theta_dot: float) -> bool:
        """Place the pendulum at (θ [rad], θ̇ [rad/s]); always succeeds for a simulation."""
        with self._lock:
            self._theta, self._theta_dot = float(theta), float(theta_dot)
            self._reported_theta = self._measure(self._theta)
        return True

    def stop(self) -> None:
        """Zero torque (idempotent, any thread)."""
        with self._lock:
            self._u = 0.0

    def close(self) -> None:
        """Stop (a simulation holds nothing to release)."""
        self.stop()
