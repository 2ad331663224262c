"""The one interface between the motor node's control loop and a pendulum (simulated, pigpio or lgpio).

Vocabulary from robot_interfaces: the loop asks for a *desired* action and the driver reports the
*applied* one (after clamping and any safety override); both are recorded.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from gym_raas_mqtt.physics import PendulumParams


@runtime_checkable
class Motor(Protocol):
    """A pendulum the motor node can drive.

    The control loop calls, once per control period: :meth:`read` (the state now), then
    :meth:`apply` (the command for the coming period). A simulated motor advances its model by one
    period per :meth:`read` call under the last applied command, so the real-time loop and the
    lockstep mode share one code path; a real motor just samples its encoder.

    Attributes:
        name: ``"sim"``, ``"pigpio"`` or ``"lgpio"`` (published in the node's meta).
        params: calibration in force (limits, counts per revolution, calibration_id).
        placeable: :meth:`set_state` can place the pendulum (a simulation); a reset asking for
            another start than hanging at rest is refused on a motor that cannot.
    """

    name: str
    params: PendulumParams
    placeable: bool

    def apply(self, desired: float) -> float:
        """Command action ``desired`` (N·m-equivalent) until the next call.

        Returns:
            The applied action: ``desired`` clamped to ±params.max_action (0.0 when disabled).
        """
        ...

    def read(self) -> tuple[float, float]:
        """The pendulum's state (θ [rad, 0 = upright, unwrapped], θ̇ [rad/s])."""
        ...

    def set_state(self, theta: float, theta_dot: float) -> bool:
        """Place a simulated pendulum at a state; returns False on real hardware (no-op)."""
        ...

    def stop(self) -> None:
        """Zero torque at once (safe state); idempotent; callable from any thread."""
        ...

    def close(self) -> None:
        """Stop and release the hardware."""
        ...
