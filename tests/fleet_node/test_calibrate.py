"""System identification from telemetry files, and the encoder procedures on the fake pigpio."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from fleet_node.calibrate import (SysIdError, calibration_toml, check_direction, fit_files,
                                  measure_counts)
from fleet_node.motor.telemetry import TelemetryRecorder
from gym_raas_mqtt import physics
from gym_raas_mqtt.calibration import load_calibration
from gym_raas_mqtt.cli import main as raas_main
from gym_raas_mqtt.physics import DEFAULT_PARAMS

sys.path.insert(0, str(Path(__file__).parent / "motor"))
from fake_pigpio import FakePi  # noqa: E402
from fleet_node.motor.pigpio_motor import PigpioConfig, PigpioMotor  # noqa: E402

TRUE = DEFAULT_PARAMS.replace(gravity_coeff=25.3, action_gain=7.1, damping=1.7,
                              calibration_id="truth")


def excitation(rng: np.random.Generator, n: int) -> list[float]:
    """Piecewise-constant random actions in [-2, 2] held 1..8 periods, some beyond the limit."""
    out: list[float] = []
    while len(out) < n:
        out += [float(rng.uniform(-2.4, 2.4))] * int(rng.integers(1, 9))
    return out[:n]


def recorder(path: Path) -> TelemetryRecorder:
    return TelemetryRecorder(path, "sysid-job", "lab", "pi-01", publish=lambda b: None)


def model_telemetry(path: Path, params, episodes: int, steps: int, seed: int,
                    corrupt: bool = True) -> None:
    """Telemetry of the exact model, with events the fit must exclude: motor cuts (the record
    says 0 but the pendulum got something else), deadline misses (a longer period), clipping."""
    rng = np.random.default_rng(seed)
    rec = recorder(path)
    a = params.max_action
    for ep in range(1, episodes + 1):
        th, thd, t = math.pi + rng.uniform(-1, 1), 0.0, 0.0
        for seq, u_des in enumerate(excitation(rng, steps), start=1):
            u = max(-a, min(a, u_des))
            applied, miss, p = u, False, params
            if corrupt and rng.random() < 0.03:
                applied = 0.0  # cut recorded, but the torque was still there
            elif corrupt and rng.random() < 0.03:
                miss, p = True, params.replace(dt=params.dt * 1.6)  # late tick
            rec.record(ep, (seq, t, th, thd, u_des, applied, physics.reward(th, thd, u), miss))
            th, thd = physics.step(p, th, thd, u)
            t += p.dt
    rec.close()


def test_noise_free_fit_recovers_the_coefficients(tmp_path):
    params = TRUE.replace(max_speed=2.5)  # low limit: clipping happens and must be excluded
    files = [tmp_path / "a.csv", tmp_path / "b.csv"]
    model_telemetry(files[0], params, episodes=3, steps=400, seed=1)
    model_telemetry(files[1], params, episodes=2, steps=300, seed=2)
    r = fit_files(files, params.replace(gravity_coeff=27.0, action_gain=8.0, damping=2.0))
    assert r.gravity_coeff == pytest.approx(25.3, abs=1e-6)
    assert r.action_gain == pytest.approx(7.1, abs=1e-6)
    assert r.damping == pytest.approx(1.7, abs=1e-6)
    assert r.r2 == pytest.approx(1.0, abs=1e-9)
    for reason in ("motor cut", "deadline miss", "speed clipped", "episode/seq gap"):
        assert r.excluded.get(reason, 0) > 0, reason


def test_fit_needs_excitation(tmp_path):
    rec = recorder(tmp_path / "flat.csv")
    for seq in range(1, 60):
        rec.record(1, (seq, seq * 0.05, math.pi, 0.0, 0.0, 0.0, 0.0, False))
    rec.close()
    with pytest.raises(SysIdError, match="excite"):
        fit_files([tmp_path / "flat.csv"], DEFAULT_PARAMS)
    with pytest.raises(SysIdError, match="cannot read"):
        fit_files([tmp_path / "missing.csv"], DEFAULT_PARAMS)


def test_fit_through_the_encoder(tmp_path):
    """The emulated pendulum (exact model, one physics step per period) measured through
    PigpioMotor: θ quantised to 445 counts/rev, θ̇ from edge timing. Within a few %."""
    pi = FakePi(TRUE, physics_dt=TRUE.dt)
    motor = PigpioMotor(TRUE, pi=pi, config=PigpioConfig())
    rng = np.random.default_rng(7)
    path = tmp_path / "enc.csv"
    rec = recorder(path)
    t = 0.0
    for seq, u_des in enumerate(excitation(rng, 3000), start=1):
        th, thd = motor.read()
        applied = motor.apply(u_des)
        rec.record(1, (seq, t, th, thd, u_des, applied, 0.0, False))
        pi.advance(TRUE.dt)
        t += TRUE.dt
    rec.close()
    r = fit_files([path], TRUE)
    for got, want in zip(r.coefficients, (25.3, 7.1, 1.7)):
        assert got == pytest.approx(want, rel=0.03)
    assert r.r2 > 0.95


def test_cli_writes_a_loadable_calibration(tmp_path, capsys):
    model_telemetry(tmp_path / "t.csv", TRUE, episodes=2, steps=300, seed=3)
    base = tmp_path / "base.toml"
    base.write_text(calibration_toml(DEFAULT_PARAMS.replace(counts_per_rev=480), _dummy(),
                                     "pi-07-base"))
    out = tmp_path / "cal.toml"
    rc = raas_main(["node", "calibrate", "fit", str(tmp_path / "t.csv"), "--id", "pi-07-fit",
                    "-o", str(out), "--base", str(base)])
    assert rc == 0
    p = load_calibration(out)
    assert p.calibration_id == "pi-07-fit" and p.counts_per_rev == 480
    assert (p.gravity_coeff, p.action_gain, p.damping) == pytest.approx((25.3, 7.1, 1.7),
                                                                        abs=1e-6)
    assert "R²" in capsys.readouterr().out
    assert raas_main(["node", "calibrate", "fit", str(tmp_path / "t.csv"), "--id", "x",
                      "-o", str(out)]) == 1  # exists, no --force
    assert raas_main(["node", "calibrate", "fit", str(tmp_path / "t.csv"), "--id", "bad id!",
                      "-o", str(tmp_path / "o.toml")]) == 1


def _dummy():
    from fleet_node.calibrate import FitResult

    return FitResult(27.0, 8.0, 2.0, (0.0, 0.0, 0.0), 1.0, 0.0, 100)


def test_measure_counts_by_hand_rotation():
    pi = FakePi(DEFAULT_PARAMS, counts_per_rev=480)  # the robot differs from the file's 445
    motor = PigpioMotor(DEFAULT_PARAMS, pi=pi, config=PigpioConfig())
    steps = iter([lambda: pi.advance(0.2), lambda: pi.rotate_by(-3 * 2 * math.pi, 3.0)])
    r = measure_counts(motor, 3, prompt=lambda text: next(steps)())
    assert r == {"counts": -1440, "counts_per_rev": 480, "exact": 480.0, "errors": 0}


@pytest.mark.parametrize("wired, configured, sign", [(1, 1, 1), (-1, 1, -1), (-1, -1, 1)])
def test_check_direction(wired, configured, sign):
    pi = FakePi(DEFAULT_PARAMS, encoder_direction=wired)
    motor = PigpioMotor(DEFAULT_PARAMS, pi=pi, config=PigpioConfig(encoder_direction=configured))
    d = check_direction(motor, sleep=pi.advance)
    assert d * sign > 0.05
    assert pi.torque_u() == 0.0


def test_the_shipped_excitation_identifies_the_model(tmp_path):
    """hardware/scripts/sysid_excitation.py stays within the limits and excites all three terms."""
    import importlib.util

    script = Path(__file__).parents[2] / "hardware" / "scripts" / "sysid_excitation.py"
    spec = importlib.util.spec_from_file_location("sysid_excitation", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    actions = mod.excitation(np.random.default_rng(mod.SEED), TRUE.dt, mod.EPISODE_S)
    assert len(actions) == 900 and max(abs(u) for u in actions) <= 2.0
    rec = recorder(tmp_path / "x.csv")
    th, thd = math.pi, 0.0
    for seq, u in enumerate(actions, start=1):
        rec.record(1, (seq, seq * TRUE.dt, th, thd, u, u, 0.0, False))
        th, thd = physics.step(TRUE, th, thd, u)
    rec.close()
    r = fit_files([tmp_path / "x.csv"], TRUE)
    assert r.coefficients == pytest.approx((25.3, 7.1, 1.7), abs=1e-6)
    assert r.condition < 50
