"""Scaling policies: the ``decide(observation) -> action`` protocol, the built-in baselines, loading."""

from __future__ import annotations

import importlib
import math
from typing import Any, Protocol, runtime_checkable

import numpy as np

from gym_raas_mqtt.scaling.actions import ActionSpec
from gym_raas_mqtt.scaling.observation import decode


@runtime_checkable
class Policy(Protocol):
    """A scaling policy: the same object runs in the env and in the dispatcher's autoscaler.

    ``decide`` maps an observation (float32 (9,), from
    :func:`~gym_raas_mqtt.scaling.observation.observe`) to an action index of the :class:`~gym_raas_mqtt.scaling.actions.ActionSpec` the policy was
    built with; ``reset`` forgets any history (called at the start of an episode).
    """

    def decide(self, observation: np.ndarray) -> int:
        """The action for this observation (an index of the action space)."""
        ...

    def reset(self) -> None:
        """Forget history (integrators, previous errors)."""
        ...


class _Baseline:
    """Common part of the built-ins: an action spec, and turning a desired count into an action."""

    def __init__(self, action_spec: ActionSpec | None = None) -> None:
        self.action_spec = action_spec or ActionSpec()

    def reset(self) -> None:
        """Forget history (the stateless baselines have none)."""

    def _act(self, desired: float, committed: float) -> int:
        return self.action_spec.action_for(round(desired), round(committed))


class KeepConstant(_Baseline):
    """Never scale: keep the stations online as they are (or at ``stations`` if given).

    Args:
        action_spec: what actions mean (default ``ActionSpec()``).
        stations: the count to hold [stations]; None keeps the current count.
    """

    def __init__(self, action_spec: ActionSpec | None = None, stations: int | None = None) -> None:
        super().__init__(action_spec)
        self.stations = stations

    def decide(self, observation: np.ndarray) -> int:
        """The no-op action (or the action toward ``stations``)."""
        d = decode(observation, self.action_spec.max_stations)
        return self._act(d.committed if self.stations is None else self.stations, d.committed)


class Threshold(_Baseline):
    """Scale up on a queue, a wait over the SLO or a high utilization; down on a low one.

    Args:
        action_spec: what actions mean (default ``ActionSpec()``).
        high: utilization (busy / online) above which one step up is taken.
        low: utilization below which (with an empty queue) one step down is taken.
        queue_per_station: queued jobs per online station that trigger a step up.
    """

    def __init__(self, action_spec: ActionSpec | None = None, high: float = 0.9, low: float = 0.5,
                 queue_per_station: float = 1.0) -> None:
        super().__init__(action_spec)
        if not 0.0 <= low < high:
            raise ValueError(f"need 0 ≤ low < high, got low={low}, high={high}")
        self.high, self.low, self.queue_per_station = high, low, queue_per_station

    def decide(self, observation: np.ndarray) -> int:
        """Step up, hold or step down by ``action_spec.step_k`` stations."""
        d = decode(observation, self.action_spec.max_stations)
        k = self.action_spec.step_k
        if (d.queued > self.queue_per_station * max(d.online, 1.0) or d.wait_over_slo > 1.0
                or d.utilization > self.high):
            return self._act(d.committed + k, d.committed)
        if d.utilization < self.low and d.queued < 0.5 and d.booting < 0.5:
            return self._act(d.committed - k, d.committed)
        return self._act(d.committed, d.committed)


class TargetCapacity(_Baseline):
    """Keep ⌈offered load / utilization⌉ stations, plus ``extra`` while the wait exceeds the SLO.

    Args:
        action_spec: what actions mean (default ``ActionSpec()``).
        utilization: the utilization to aim at, in (0, 1].
        extra: stations added while the mean wait is over the SLO or jobs queue [stations].
    """

    def __init__(self, action_spec: ActionSpec | None = None, utilization: float = 0.9,
                 extra: int = 1) -> None:
        super().__init__(action_spec)
        if not 0.0 < utilization <= 1.0:
            raise ValueError(f"utilization must be in (0, 1], got {utilization}")
        self.utilization, self.extra = utilization, extra

    def decide(self, observation: np.ndarray) -> int:
        """The action toward the target count."""
        d = decode(observation, self.action_spec.max_stations)
        desired = math.ceil(d.offered_load / self.utilization - 1e-6)
        if d.wait_over_slo > 1.0 or d.queued > max(d.online, 1.0):
            desired += self.extra
        return self._act(desired, d.committed)


class PID(_Baseline):
    """A PID controller on the capacity shortfall e = offered load / setpoint − committed stations.

    The wait adds ``wait_gain`` stations of error per SLO of excess wait, so a queue the offered
    load does not explain still scales up; a surplus of less than one station counts as no error
    (the fleet is whole stations, so the integral does not wind down forever). Output: desired =
    committed + kp·e + ki·Σe + kd·Δe, rounded up when positive.

    Args:
        action_spec: what actions mean (default ``ActionSpec()``).
        setpoint: the utilization to hold, in (0, 1].
        kp: proportional gain [stations per station of error].
        ki: integral gain [per step]; the integral is clamped to ± max_stations.
        kd: derivative gain [steps].
        wait_gain: error added per SLO of excess mean wait [stations].
    """

    def __init__(self, action_spec: ActionSpec | None = None, setpoint: float = 0.85,
                 kp: float = 0.6, ki: float = 0.05, kd: float = 0.1,
                 wait_gain: float = 2.0) -> None:
        super().__init__(action_spec)
        if not 0.0 < setpoint <= 1.0:
            raise ValueError(f"setpoint must be in (0, 1], got {setpoint}")
        self.setpoint, self.kp, self.ki, self.kd, self.wait_gain = setpoint, kp, ki, kd, wait_gain
        self._integral = 0.0
        self._previous: float | None = None

    def reset(self) -> None:
        """Zero the integral and forget the previous error."""
        self._integral = 0.0
        self._previous = None

    def decide(self, observation: np.ndarray) -> int:
        """The action toward committed + PID output."""
        m = self.action_spec.max_stations
        d = decode(observation, m)
        error = (d.offered_load / self.setpoint - d.committed
                 + self.wait_gain * max(d.wait_over_slo - 1.0, 0.0))
        if -1.0 < error <= 0.0:  # a surplus under one station is the integer fleet, not an error
            error = 0.0
        self._integral = min(max(self._integral + error, -m), m)
        derivative = 0.0 if self._previous is None else error - self._previous
        self._previous = error
        out = self.kp * error + self.ki * self._integral + self.kd * derivative
        # up eagerly (a boot takes minutes), down only by whole stations
        step = math.ceil(out - 1e-9) if out > 0 else round(out)
        return self._act(d.committed + step, d.committed)


BUILTIN_POLICIES: dict[str, type] = {"keep": KeepConstant, "threshold": Threshold,
                                     "target": TargetCapacity, "pid": PID}
"""The built-in baselines by name (what ``raas fleet`` options and ``load_policy`` accept)."""


def load_policy(spec: str, **kwargs: Any) -> Policy:
    """Build a policy from a built-in name or an import path.

    Args:
        spec: a key of :data:`BUILTIN_POLICIES` (``"keep"``, ``"threshold"``, ``"target"``,
            ``"pid"``) or ``"package.module:Name"`` naming a class or factory.
        **kwargs: passed to the constructor (e.g. ``action_spec=ActionSpec(...)``).

    Returns:
        The policy (anything with ``decide`` and ``reset``).

    Raises:
        ValueError: an unknown name, a malformed path, a missing module or attribute, or an
            object without ``decide``/``reset``.
    """
    if spec in BUILTIN_POLICIES:
        return BUILTIN_POLICIES[spec](**kwargs)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr.isidentifier():
        raise ValueError(f"policy must be a built-in ({', '.join(sorted(BUILTIN_POLICIES))}) or "
                         f"'package.module:Name', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import policy module {module_name!r}: {e}") from e
    factory = getattr(module, attr, None)
    if factory is None:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
    policy = factory(**kwargs)
    if not isinstance(policy, Policy):
        raise ValueError(f"{spec} did not build a policy (needs decide(observation) and reset())")
    return policy
