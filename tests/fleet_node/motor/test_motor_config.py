"""MotorConfig: RAAS_* variables, defaults and validation."""

import pytest

from fleet_node.motor.config import MotorConfig
from gym_raas_mqtt.config import describe, load
from gym_raas_mqtt.errors import ConfigError


def test_loads_from_environment():
    cfg = load(MotorConfig, environ={"RAAS_NODE_ID": "pi-3", "RAAS_MOTOR_RATE_HZ": "50",
                                     "RAAS_MOTOR_LOCKSTEP": "yes", "RAAS_DATA_DIR": "/tmp/x"})
    assert (cfg.node_id, cfg.rate_hz, cfg.lockstep, str(cfg.data_dir)) == ("pi-3", 50.0, True,
                                                                           "/tmp/x")
    assert cfg.period_s == 0.02


@pytest.mark.parametrize("env", [{"RAAS_NODE_ID": "bad/id"}, {"RAAS_MOTOR_BACKEND": "gpio"},
                                 {"RAAS_MOTOR_RATE_HZ": "0"}, {"RAAS_MOTOR_RATE_HZ": "fast"},
                                 {"RAAS_MOTOR_BACKEND": "pigpio", "RAAS_MOTOR_LOCKSTEP": "1"}])
def test_invalid_settings_are_refused(env):
    with pytest.raises(ConfigError):
        load(MotorConfig, environ=env)


def test_every_setting_is_documented():
    rows = describe([MotorConfig])
    assert all(r["env"].startswith("RAAS_") and r["help"] for r in rows)
    assert len(rows) == len(MotorConfig.__dataclass_fields__)


def test_build_motor_uses_the_calibration_file_and_the_loop_period(tmp_path):
    from fleet_node.motor.node import build_motor

    cal = tmp_path / "pi-7.toml"
    cal.write_text('id = "pi-7-2026"\n[model]\naction_gain = 7.5\ncounts_per_rev = 480\n')
    motor = build_motor(MotorConfig(rate_hz=50.0, calibration_file=cal))
    assert motor.name == "sim"
    assert (motor.params.dt, motor.params.action_gain, motor.params.calibration_id) == (
        0.02, 7.5, "pi-7-2026")


def test_build_motor_picks_the_gpio_backend(monkeypatch):
    """RAAS_MOTOR_BACKEND=lgpio reaches LgpioMotor (here without lgpio installed: its clear error);
    a real pendulum has a clock, so lockstep stays the simulation's."""
    import sys

    from fleet_node.motor.lgpio_motor import LgpioUnavailable
    from fleet_node.motor.node import build_motor

    assert load(MotorConfig, environ={"RAAS_MOTOR_BACKEND": "lgpio"}).backend == "lgpio"
    with pytest.raises(ConfigError):
        load(MotorConfig, environ={"RAAS_MOTOR_BACKEND": "lgpio", "RAAS_MOTOR_LOCKSTEP": "1"})
    monkeypatch.setitem(sys.modules, "lgpio", None)  # not installed
    with pytest.raises(LgpioUnavailable, match="not installed"):
        build_motor(MotorConfig(backend="lgpio"))
