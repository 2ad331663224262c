"""The scaling action: how an action index becomes a number of online stations (env and dispatcher)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MODES = ("delta", "target")


@dataclass(frozen=True)
class ActionSpec:
    """What an action means; the env and the dispatcher's autoscaler share one.

    Attributes:
        mode: ``"delta"``: action ``a`` in ``0 .. 2·step_k`` changes the online count by
            ``a − step_k`` stations (``Discrete(2k + 1)``; with ``step_k=1`` that is gym-scaling's
            −1, 0, +1). ``"target"``: action ``a`` in ``0 .. max_stations`` asks for ``a`` online
            stations (``Discrete(max_stations + 1)``).
        step_k: the largest change of one delta action [stations], ≥ 1.
        max_stations: the size of the fleet [stations], ≥ 1.
        min_stations: the fewest stations kept online whatever the action [stations].
    """

    mode: Literal["delta", "target"] = "delta"
    step_k: int = 1
    max_stations: int = 10
    min_stations: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if int(self.step_k) != self.step_k or self.step_k < 1:
            raise ValueError(f"step_k must be an integer ≥ 1, got {self.step_k!r}")
        if int(self.max_stations) != self.max_stations or self.max_stations < 1:
            raise ValueError(f"max_stations must be an integer ≥ 1, got {self.max_stations!r}")
        if not 0 <= self.min_stations <= self.max_stations or \
                int(self.min_stations) != self.min_stations:
            raise ValueError(f"min_stations must be an integer in [0, max_stations], "
                             f"got {self.min_stations!r}")

    @property
    def n_actions(self) -> int:
        """Size of the ``Discrete`` action space: 2·step_k + 1 (delta), max_stations + 1 (target)."""
        return 2 * self.step_k + 1 if self.mode == "delta" else self.max_stations + 1

    @property
    def noop(self) -> int:
        """The action index that keeps the online count (delta mode; in target mode: none, -1)."""
        return self.step_k if self.mode == "delta" else -1

    def action_for(self, desired_online: int, online: int) -> int:
        """The action that moves ``online`` toward ``desired_online`` as far as one action can.

        Args:
            desired_online: stations the caller wants online [stations] (clipped to the spec).
            online: stations online or coming online now [stations].

        Returns:
            An action index in ``0 .. n_actions − 1``.
        """
        desired = min(max(int(desired_online), self.min_stations), self.max_stations)
        if self.mode == "target":
            return desired
        return min(max(desired - int(online), -self.step_k), self.step_k) + self.step_k


def target_online(action: int, online: int, spec: ActionSpec) -> int:
    """The number of stations that should be online after ``action``.

    Args:
        action: an action index of the spec's ``Discrete(spec.n_actions)`` space.
        online: stations online or coming online now (idle + busy + booting, not those draining
            toward standby) [stations].
        spec: what the action means.

    Returns:
        The target count [stations], clipped to ``[spec.min_stations, spec.max_stations]``.

    Raises:
        ValueError: ``action`` is outside the action space.
    """
    a = int(action)
    if not 0 <= a < spec.n_actions:
        raise ValueError(f"action must be in 0..{spec.n_actions - 1}, got {action!r}")
    target = online + a - spec.step_k if spec.mode == "delta" else a
    return min(max(target, spec.min_stations), spec.max_stations)
