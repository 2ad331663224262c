"""The queue's policy: time-limit bounds, attempts and execution deadlines, built once at start-up.

The dispatcher and the dashboard both ``load(QueueLimits)`` when they start and hand the object to
every queue call that needs it; nothing re-reads the environment per call.
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.errors import InvalidSubmission
from gym_raas_mqtt.config import setting
from gym_raas_mqtt.errors import ConfigError


@dataclass(frozen=True)
class QueueLimits:
    """Bounds the queue applies (``RAAS_*`` settings; see ``raas config``).

    Attributes:
        default_time_limit_s: time limit of a job submitted without one [s].
        min_time_limit_s: smallest accepted time limit [s].
        max_time_limit_s: largest accepted time limit [s].
        max_attempts: executions per job before a platform fault ends it ``error``.
        accept_timeout_s: an assigned execution must be accepted (running) within this [s].
        time_limit_grace_s: a running execution expires at time limit + this [s].
        cancel_grace_s: a cancel the node does not confirm ends the job this much later [s].

    Raises:
        ConfigError: the bounds are out of order or not positive.
    """

    default_time_limit_s: float = setting("RAAS_DEFAULT_TIME_LIMIT_S", 120.0,
                                          "time limit of a job submitted without one", unit="s")
    min_time_limit_s: float = setting("RAAS_MIN_TIME_LIMIT_S", 1.0,
                                      "smallest time limit a user may ask for", unit="s")
    max_time_limit_s: float = setting("RAAS_MAX_TIME_LIMIT_S", 600.0,
                                      "largest time limit a user may ask for", unit="s")
    max_attempts: int = setting("RAAS_MAX_ATTEMPTS", 3,
                                "executions per job before a platform fault ends it `error`")
    accept_timeout_s: float = setting(
        "RAAS_ACCEPT_TIMEOUT_S", 30.0,
        "an assigned execution not accepted (running) within this ends `error` and is requeued",
        unit="s")
    time_limit_grace_s: float = setting(
        "RAAS_TIME_LIMIT_GRACE_S", 20.0,
        "a running execution is ended `timed_out` this long after its time limit (the node's own "
        "limit, kill-after and upload come first)", unit="s")
    cancel_grace_s: float = setting(
        "RAAS_CANCEL_GRACE_S", 30.0,
        "a running job whose cancel the node does not confirm within this ends `canceled`",
        unit="s")

    def __post_init__(self) -> None:
        if not 0 < self.min_time_limit_s <= self.default_time_limit_s <= self.max_time_limit_s:
            raise ConfigError(
                "time limits must satisfy 0 < RAAS_MIN_TIME_LIMIT_S <= RAAS_DEFAULT_TIME_LIMIT_S "
                f"<= RAAS_MAX_TIME_LIMIT_S, got {self.min_time_limit_s}, "
                f"{self.default_time_limit_s}, {self.max_time_limit_s}")
        if self.max_attempts < 1:
            raise ConfigError(f"RAAS_MAX_ATTEMPTS must be >= 1, got {self.max_attempts}")
        for name in ("accept_timeout_s", "time_limit_grace_s", "cancel_grace_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")

    def time_limit(self, time_limit_s: float | None) -> float:
        """The time limit to use [s]: the default for None, else the value if in bounds.

        Raises:
            InvalidSubmission: not a number or outside [min_time_limit_s, max_time_limit_s].
        """
        if time_limit_s is None:
            return float(self.default_time_limit_s)
        if isinstance(time_limit_s, bool) or not isinstance(time_limit_s, (int, float)):
            raise InvalidSubmission(f"time limit must be a number of seconds, got {time_limit_s!r}")
        value = float(time_limit_s)
        if not self.min_time_limit_s <= value <= self.max_time_limit_s:  # also rejects NaN
            raise InvalidSubmission(
                f"time limit {value:g} s is outside the allowed range "
                f"{self.min_time_limit_s:g}–{self.max_time_limit_s:g} s")
        return value
