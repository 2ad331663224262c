"""The autoscaler's settings (``RAAS_AUTOSCALE*``, ``RAAS_FLEET_SAMPLES_KEEP_S``), read once at start."""

from __future__ import annotations

from dataclasses import dataclass

from gym_raas_mqtt.config import setting
from gym_raas_mqtt.errors import ConfigError
from gym_raas_mqtt.scaling.actions import MODES

SWITCH = ("off", "on")


@dataclass(frozen=True)
class AutoscaleConfig:
    """What the dispatcher's autoscaler does (every field has a default; see ``raas config``).

    Fleet samples (the fleet page's panel) are recorded every ``interval_s`` whether the
    autoscaler is on or off; decisions only when it is on.

    Raises:
        ConfigError: a value out of range.
    """

    mode: str = setting("RAAS_AUTOSCALE", "off",
                        "the dispatcher's autoscaler: off | on (puts idle nodes in standby and "
                        "wakes them)")
    policy: str = setting("RAAS_AUTOSCALE_POLICY", "threshold",
                          "scaling policy: keep | threshold | target | pid, or package.module:Name "
                          "(built with action_spec=ActionSpec(...))")
    action_mode: str = setting("RAAS_AUTOSCALE_ACTION", "delta",
                               "what the policy's action means: delta (±step) | target (a count)")
    step_k: int = setting("RAAS_AUTOSCALE_STEP", 1,
                          "the largest change of one delta action", unit="stations")
    interval_s: float = setting("RAAS_AUTOSCALE_INTERVAL_S", 10.0,
                                "period of fleet samples and scaling decisions", unit="s")
    holdoff_s: float = setting(
        "RAAS_AUTOSCALE_HOLDOFF_S", 300.0,
        "a node goes to standby only after it has been idle this long, and this long after the "
        "last wake", unit="s")
    min_online: int = setting("RAAS_AUTOSCALE_MIN_ONLINE", 1,
                              "stations the autoscaler always keeps online", unit="stations")
    slo_wait_s: float = setting("RAAS_AUTOSCALE_SLO_WAIT_S", 60.0,
                                "the waiting-time objective the policy sees", unit="s")
    error_window_s: float = setting(
        "RAAS_AUTOSCALE_ERROR_WINDOW_S", 86400.0,
        "errors this recent order the nodes to wake (fewest first) and to put in standby "
        "(most first)", unit="s")
    samples_keep_s: float = setting("RAAS_FLEET_SAMPLES_KEEP_S", 7 * 86400.0,
                                    "fleet samples and scaling decisions are kept this long",
                                    unit="s")

    def __post_init__(self) -> None:
        if self.mode not in SWITCH:
            raise ConfigError(f"RAAS_AUTOSCALE must be one of {SWITCH}, got {self.mode!r}")
        if self.action_mode not in MODES:
            raise ConfigError(f"RAAS_AUTOSCALE_ACTION must be one of {MODES}, "
                              f"got {self.action_mode!r}")
        for name in ("interval_s", "slo_wait_s", "samples_keep_s", "step_k", "error_window_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("holdoff_s", "min_online"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be ≥ 0, got {getattr(self, name)}")

    @property
    def enabled(self) -> bool:
        """Whether decisions are made (``RAAS_AUTOSCALE=on``)."""
        return self.mode == "on"
