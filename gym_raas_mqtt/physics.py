"""The pendulum's model: frozen parameters with units and sources, and pure step/reward functions.

θ = 0 is upright, θ = ±π hangs down. The defaults are the original RaaS hardware's identified model
(``shared/reference/raas-original.md``): θ̈ = 27.0·sin θ + 8.0·u − 2.0·θ̇, integrated by
semi-implicit Euler at dt = 0.05 s, |θ̇| ≤ 20 rad/s, |u| ≤ 2. An optional Coulomb friction and an
action dead-band (both off by default) model what bench data showed at small |u|.

Everything here works on Python floats: it is the inner loop of both the in-process simulation and
the simulated motor node, so the two agree bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class PendulumParams:
    """Model and limits of one pendulum.

    Attributes:
        gravity_coeff: a in θ̈ = a·sin θ + b·u − c·θ̇ [1/s²]; identified on the original hardware.
        action_gain: b [rad/s² per unit u]; identified.
        damping: c [1/s]; identified.
        coulomb_friction: f, adds −f·sign(θ̇) to θ̈ [rad/s²]; 0 = off (the original declared but
            never used it).
        deadband_low: actions in (deadband_low, deadband_high) produce no torque [u]; the original
            bench showed about (−0.26, +0.96); (0, 0) = off.
        deadband_high: see ``deadband_low``.
        dt: control period [s] (20 Hz on the original).
        max_speed: |θ̇| limit [rad/s]; the model clips, the motor node cuts power beyond it.
        max_action: |u| limit [N·m-equivalent]; the motor command is ``pwm_per_unit``·u.
        pwm_per_unit: PWM duty counts per unit u on a range of ``pwm_range`` (|u| = 2 → 50 %).
        pwm_range: full-scale PWM value.
        counts_per_rev: encoder counts per output revolution with 4× decoding; the datasheet says
            408 but deployed robots measured 445 or 480: calibrate each robot.
        calibration_id: which calibration these numbers come from; appears in every result.
        calibration_sha256: SHA-256 of the calibration file they were read from (empty when
            made in code), recorded next to the id so a changed file under the same id shows.
    """

    gravity_coeff: float = 27.0
    action_gain: float = 8.0
    damping: float = 2.0
    coulomb_friction: float = 0.0
    deadband_low: float = 0.0
    deadband_high: float = 0.0
    dt: float = 0.05
    max_speed: float = 20.0
    max_action: float = 2.0
    pwm_per_unit: float = 250.0
    pwm_range: int = 1000
    counts_per_rev: int = 445
    calibration_id: str = "raas-original-2020"
    calibration_sha256: str = dataclasses.field(default="", compare=False)  # provenance only

    def __post_init__(self) -> None:
        if not (self.dt > 0 and self.max_speed > 0 and self.max_action > 0):
            raise ValueError("dt, max_speed and max_action must be positive")
        if self.deadband_low > self.deadband_high:
            raise ValueError("deadband_low must not exceed deadband_high")
        if self.counts_per_rev <= 0:
            raise ValueError("counts_per_rev must be positive")

    def replace(self, **changes: object) -> "PendulumParams":
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def has_nonlinear_terms(self) -> bool:
        """True when friction or a dead-band is enabled."""
        return self.coulomb_friction != 0.0 or self.deadband_low != self.deadband_high


DEFAULT_PARAMS = PendulumParams()


def angle_normalize(theta: float) -> float:
    """Wrap an angle [rad] into [−π, π)."""
    return ((theta + math.pi) % TWO_PI) - math.pi


def clip(x: float, lo: float, hi: float) -> float:
    """Clamp ``x`` to [lo, hi]."""
    return lo if x < lo else hi if x > hi else x


def step(p: PendulumParams, theta: float, theta_dot: float, u: float) -> tuple[float, float]:
    """Advance one control period.

    Args:
        p: model parameters.
        theta: angle [rad], 0 = upright.
        theta_dot: angular velocity [rad/s].
        u: action, already clamped to ±max_action.

    Returns:
        (theta, theta_dot) after ``p.dt`` s: θ̇ += θ̈·dt, then θ += θ̇·dt, then θ̇ is clipped to
        ±max_speed (the order of the original RaaS simulator).
    """
    if p.has_nonlinear_terms:
        if p.deadband_low < u < p.deadband_high:
            u = 0.0
        acc = p.gravity_coeff * math.sin(theta) + p.action_gain * u - p.damping * theta_dot
        if theta_dot > 0.0:
            acc -= p.coulomb_friction
        elif theta_dot < 0.0:
            acc += p.coulomb_friction
    else:
        acc = p.gravity_coeff * math.sin(theta) + p.action_gain * u - p.damping * theta_dot
    theta_dot = theta_dot + acc * p.dt
    theta = theta + theta_dot * p.dt
    ms = p.max_speed
    if theta_dot > ms:
        theta_dot = ms
    elif theta_dot < -ms:
        theta_dot = -ms
    return theta, theta_dot


def reward(theta: float, theta_dot: float, u: float) -> float:
    """Reward of taking action ``u`` in state (θ, θ̇): −(θ_n² + 0.1·θ̇² + 0.001·u²).

    θ_n is θ wrapped to [−π, π). Bounds: [−(π² + 0.1·20² + 0.001·2²), 0] = [−49.874, 0].
    """
    th = ((theta + math.pi) % TWO_PI) - math.pi
    return -(th * th + 0.1 * theta_dot * theta_dot + 0.001 * u * u)


MIN_REWARD = -(math.pi**2 + 0.1 * DEFAULT_PARAMS.max_speed**2 + 0.001 * DEFAULT_PARAMS.max_action**2)
"""Lowest possible reward with the default limits."""
