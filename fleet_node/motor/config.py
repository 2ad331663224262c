"""The motor node's settings: one frozen dataclass read from ``RAAS_*`` environment variables."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from gym_raas_mqtt.config import NODE_ID, setting
from gym_raas_mqtt.errors import ConfigError
from gym_raas_mqtt.protocol import ID_PATTERN
from raas_platform.settings import CALIBRATION_FILE, DATA_DIR, LOCAL_MQTT_URL

BACKENDS = ("sim", "pigpio", "lgpio")
"""Values of ``RAAS_MOTOR_BACKEND``: the simulated motor, pigpio (Raspberry Pi 4 on Bookworm),
lgpio (Raspberry Pi 5; any Pi on Trixie)."""


@dataclass(frozen=True)
class MotorConfig:
    """Everything the motor node needs; defaults suit a Raspberry Pi node at 20 Hz.

    Safety numbers: the watchdog, over-speed and reset thresholds are the node's, never the
    user's; the reset tolerances (2°, 0.05 rad/s held for 0.5 s) are what a hanging pendulum
    reaches within seconds on the original hardware.
    """

    node_id: str = NODE_ID.field()
    local_mqtt_url: str = LOCAL_MQTT_URL.field()
    mqtt_username: str | None = setting("RAAS_MOTOR_MQTT_USERNAME", "motor",
                                        "the motor node's user on the local broker")
    mqtt_password_file: Path | None = setting(
        "RAAS_MOTOR_MQTT_PASSWORD_FILE", None,
        "file holding the motor node's local broker password")
    mqtt_client_id: str | None = setting("RAAS_MOTOR_MQTT_CLIENT_ID", None,
                                         "MQTT client id (default motor-<node id>)")
    calibration_file: Path | None = CALIBRATION_FILE.field()
    backend: str = setting("RAAS_MOTOR_BACKEND", "sim",
                           "motor driver: sim, pigpio (Pi 4, Bookworm) or lgpio (Pi 5; Trixie)")
    rate_hz: float = setting("RAAS_MOTOR_RATE_HZ", 20.0, "control rate (1/dt)", unit="Hz")
    lockstep: bool = setting("RAAS_MOTOR_LOCKSTEP", False,
                             "simulation only: each action advances one period at once, no clock")
    watchdog_periods: int = setting("RAAS_MOTOR_WATCHDOG_PERIODS", 3,
                                    "zero torque after this many ticks without a fresh action",
                                    unit="periods")
    overspeed_rad_s: float = setting("RAAS_MOTOR_OVERSPEED_RAD_S", 15.0,
                                     "|θ̇| above this cuts the motor (fault)", unit="rad/s")
    reset_angle_tol_rad: float = setting("RAAS_MOTOR_RESET_ANGLE_TOL_RAD", math.radians(2.0),
                                         "reset done when |θ − π| stays below this", unit="rad")
    reset_speed_tol_rad_s: float = setting("RAAS_MOTOR_RESET_SPEED_TOL_RAD_S", 0.05,
                                           "... and |θ̇| stays below this", unit="rad/s")
    reset_still_s: float = setting("RAAS_MOTOR_RESET_STILL_S", 0.5,
                                   "... continuously for this long", unit="s")
    reset_timeout_s: float = setting("RAAS_MOTOR_RESET_TIMEOUT_S", 30.0,
                                     "longest closed-loop reset before a fault", unit="s")
    selftest_tol_rad: float = setting("RAAS_MOTOR_SELFTEST_TOL_RAD", 0.25,
                                      "self-test passes when |θ − model| stays below this",
                                      unit="rad")
    miss_tolerance_s: float = setting("RAAS_MOTOR_MISS_TOLERANCE_S", 0.001,
                                      "a tick starting later than this is a deadline miss",
                                      unit="s")
    spin_s: float = setting("RAAS_MOTOR_SPIN_S", 0.0008,
                            "busy-wait this long before each deadline for precision", unit="s")
    rt_priority: int = setting("RAAS_MOTOR_RT_PRIORITY", 0,
                               "SCHED_FIFO priority of the control loop thread (1-99; 0 = normal "
                               "scheduling; needs CAP_SYS_NICE)")
    data_dir: Path = DATA_DIR.field()
    telemetry_batch: int = setting("RAAS_MOTOR_TELEMETRY_BATCH", 10,
                                   "samples per telemetry message and file flush", unit="samples")
    keepalive_s: int = setting("RAAS_MOTOR_KEEPALIVE_S", 5, "MQTT keepalive", unit="s")
    sim_quantize: bool = setting("RAAS_SIM_QUANTIZE", False,
                                 "sim: quantise θ to the encoder's counts_per_rev")
    sim_deadband: bool = setting("RAAS_SIM_DEADBAND", False,
                                 "sim: apply the calibration's action dead-band")

    def __post_init__(self) -> None:
        if not ID_PATTERN.match(self.node_id):
            raise ConfigError(f"RAAS_NODE_ID={self.node_id!r} must match {ID_PATTERN.pattern}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"RAAS_MOTOR_BACKEND={self.backend!r}: expected one of {BACKENDS}")
        if not (0.1 <= self.rate_hz <= 5000):
            raise ConfigError(f"RAAS_MOTOR_RATE_HZ={self.rate_hz}: expected 0.1 .. 5000")
        if self.watchdog_periods < 1 or self.telemetry_batch < 1:
            raise ConfigError("RAAS_MOTOR_WATCHDOG_PERIODS and RAAS_MOTOR_TELEMETRY_BATCH must be ≥ 1")
        if self.lockstep and self.backend != "sim":
            raise ConfigError("lockstep mode needs the sim backend (a real pendulum has a clock)")

    @property
    def period_s(self) -> float:
        """The control period [s]."""
        return 1.0 / self.rate_hz
