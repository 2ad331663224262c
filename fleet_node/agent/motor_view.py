"""The motor node's state as the agent last heard it on the local broker, and waiting on it."""

from __future__ import annotations

import threading
import time

from gym_raas_mqtt.protocol import MotorState, MotorStatus


class MotorView:
    """The latest retained :class:`~gym_raas_mqtt.protocol.MotorState` (None: none seen yet).

    Updated from paho's thread, read by the control and job threads.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._state: MotorState | None = None

    @property
    def state(self) -> MotorState | None:
        """The last state received, or None."""
        return self._state

    @property
    def running(self) -> bool:
        """A state was received and it is not ``lost``."""
        state = self._state
        return state is not None and state.state is not MotorStatus.LOST

    def update(self, state: MotorState | None) -> None:
        """Record a new state (None: the retained state was cleared) and wake the waiters."""
        with self._changed:
            self._state = state
            self._changed.notify_all()

    def wait_unbound(self, job_id: str, timeout_s: float) -> bool:
        """Wait until the motor node no longer reports recording ``job_id``.

        Returns:
            True once it does not, False after ``timeout_s`` [s].
        """
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._state is not None and self._state.job_id == job_id:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True
