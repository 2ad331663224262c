"""Multi-period motor procedures: the closed-loop reset and the self-test, clock-independent.

A procedure is a generator driven once per control period: it yields the action for the coming
period and receives the state sampled one period later as ``(θ [rad], θ̇ [rad/s], t [s])``; its
return value is the verdict. An :class:`Operation` drives one on a motor from the state machine's
ticks — real-time ticks or lockstep's virtual ones, so both modes run the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Generator

from gym_raas_mqtt import physics
from gym_raas_mqtt.physics import PendulumParams
from fleet_node.motor.base import Motor

Sample = tuple[float, float, float]
"""(θ [rad], θ̇ [rad/s], t [s] on the motor clock)."""

SELFTEST_U = 1.5
"""Self-test excitation [u]: above the dead-band the original bench showed (about +0.96)."""
SELFTEST_ON_S = 0.5
"""Self-test: how long the excitation is held [s], then as long again at zero."""


@dataclass(frozen=True)
class SettleLimits:
    """When a hanging pendulum counts as still: |θ − π| < angle, |θ̇| < speed for ``still_s``."""

    angle_rad: float = math.radians(2.0)
    speed_rad_s: float = 0.05
    still_s: float = 0.5


@dataclass(frozen=True)
class SettleResult:
    """Outcome of :func:`settle`: the state where it ended and how long it took [s]."""

    ok: bool
    theta: float
    theta_dot: float
    t: float
    duration_s: float
    error: str | None = None


Procedure = Generator[float, Sample, Any]


def settle(limits: SettleLimits, timeout_s: float) -> Generator[float, Sample, SettleResult]:
    """Zero torque until the pendulum hangs still, or ``timeout_s`` passes (closed-loop reset)."""
    sample = yield 0.0
    first_t = sample[2]
    still_since: float | None = None
    while True:
        theta, theta_dot, now = sample
        down = (abs(physics.angle_normalize(theta - math.pi)) < limits.angle_rad
                and abs(theta_dot) < limits.speed_rad_s)
        if down:
            if still_since is None:
                still_since = now
            if now - still_since >= limits.still_s - 1e-9:
                return SettleResult(True, theta, theta_dot, now, now - first_t)
        else:
            still_since = None
        if now - first_t >= timeout_s - 1e-9:
            return SettleResult(False, theta, theta_dot, now, now - first_t,
                                f"reset timed out after {timeout_s:g} s: pendulum not still "
                                f"(θ={theta:.3f} rad, θ̇={theta_dot:.3f} rad/s)")
        sample = yield 0.0


def selftest(params: PendulumParams, limits: SettleLimits, timeout_s: float,
             tolerance_rad: float) -> Generator[float, Sample, dict[str, Any]]:
    """Closed-loop reset, then :data:`SELFTEST_U` for :data:`SELFTEST_ON_S` and zero as long,
    compared step by step with the model's prediction from the settled state.

    Returns:
        ``{"ok", "max_error_rad", "rms_error_rad", "tolerance_rad", "samples", "excitation_u",
        "calibration_id", "reset_s", "error"?}``; ok when the largest |θ − θ_model| < tolerance.
    """
    res = yield from settle(limits, timeout_s)
    details: dict[str, Any] = {"calibration_id": params.calibration_id,
                               "tolerance_rad": tolerance_rad, "reset_s": round(res.duration_s, 3),
                               "excitation_u": SELFTEST_U}
    if not res.ok:
        return {**details, "ok": False, "error": res.error, "stage": "reset"}
    n_on = max(1, round(SELFTEST_ON_S / params.dt))
    theta_p, theta_dot_p = res.theta, res.theta_dot
    errors = []
    for i in range(2 * n_on):
        u = SELFTEST_U if i < n_on else 0.0
        theta, _, _ = yield u
        theta_p, theta_dot_p = physics.step(params, theta_p, theta_dot_p, u)
        errors.append(theta - theta_p)
    worst = max(abs(e) for e in errors)
    rms = math.sqrt(sum(e * e for e in errors) / len(errors))
    details.update(max_error_rad=worst, rms_error_rad=rms, samples=len(errors),
                   ok=worst < tolerance_rad)
    if worst >= tolerance_rad:
        details["error"] = (f"response differs from the model by {worst:.3f} rad "
                            f"(tolerance {tolerance_rad:g} rad)")
    return details


@dataclass
class Operation:
    """A reset or self-test in progress: drives its procedure on ``motor``, one period per feed.

    Attributes:
        kind: ``"reset"`` or ``"selftest"``.
        motor: the driver commanded.
        proc: the procedure; None while ``place`` is pending.
        request_ids: the requests answered when it ends.
        episode_id: the episode a reset starts.
        place: sim reset: the (θ [rad], θ̇ [rad/s]) set at the first feed; a motor that cannot be
            placed (hardware) gets the closed-loop :func:`settle` instead.
        limits, timeout_s: that fallback settle's limits and timeout [s].
    """

    kind: str
    motor: Motor
    proc: Procedure | None
    request_ids: list[str] = field(default_factory=list)
    episode_id: int | None = None
    place: tuple[float, float] | None = None
    limits: SettleLimits = SettleLimits()
    timeout_s: float = 30.0

    def start(self) -> None:
        """Apply the procedure's first action (nothing yet for a pending ``place``)."""
        if self.proc is not None:
            self.motor.apply(next(self.proc))

    def feed(self, theta: float, theta_dot: float, now: float, torque_off: bool) -> Any:
        """One period: the state sampled at ``now`` [s] in, the next action out to the motor.

        Args:
            theta, theta_dot: the sample [rad, rad/s].
            now: its time [s].
            torque_off: a safety latch is set: hold zero torque instead of the procedure's action.

        Returns:
            None while running; then the verdict (a :class:`SettleResult` for a reset, the
            :func:`selftest` details for a self-test), with the motor stopped.
        """
        if self.place is not None:
            theta_p, theta_dot_p = self.place
            self.place = None
            if self.motor.set_state(theta_p, theta_dot_p):
                return SettleResult(True, theta_p, theta_dot_p, now, 0.0)
            self.proc = settle(self.limits, self.timeout_s)  # it takes this sample too
            self.motor.apply(next(self.proc))
        assert self.proc is not None
        try:
            u = self.proc.send((theta, theta_dot, now))
        except StopIteration as e:
            self.motor.stop()
            return e.value
        if torque_off:
            self.motor.stop()
        else:
            self.motor.apply(u)
        return None
