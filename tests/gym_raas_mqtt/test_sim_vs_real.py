"""The sim-vs-real report's arithmetic (gym_raas_mqtt.calibration.sim_vs_real) on telemetry made
with the model itself: horizons, divergence time, refit, the digest and the researcher's CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gym_raas_mqtt import physics
from gym_raas_mqtt.calibration import dump_calibration
from gym_raas_mqtt.calibration.sim_vs_real import (compare, digest, main, replay_episode)
from gym_raas_mqtt.physics import DEFAULT_PARAMS
from gym_raas_mqtt.results import Telemetry


def telemetry(model, steps: int, episodes: int = 1) -> Telemetry:
    """Energy pumping (u = ±2 with θ̇) from near hanging, as the motor node records it."""
    cols: dict[str, list] = {k: [] for k in ("episode_id", "seq", "t", "theta", "theta_dot",
                                            "u_desired", "u_applied", "reward", "deadline_miss")}
    for e in range(1, episodes + 1):
        th, thd = math.pi - 0.1 * e, 0.0
        for k in range(steps):
            u = 2.0 if thd >= 0 else -2.0
            for name, v in zip(cols, (e, k + 1, k * model.dt, th, thd, u, u,
                                      physics.reward(th, thd, u), False)):
                cols[name].append(v)
            th, thd = physics.step(model, th, thd, u)
    return Telemetry(**{k: np.asarray(v) for k, v in cols.items()})


def test_the_model_itself_replays_exactly() -> None:
    report = compare(telemetry(DEFAULT_PARAMS, 120, episodes=2), DEFAULT_PARAMS)
    assert [h["rms_theta_error_rad"] for h in report["horizons"]] == [0.0, 0.0, 0.0, 0.0, 0.0]
    assert [h["episodes"] for h in report["horizons"]] == [2, 2, 2, 2, 2]  # 6 s ≥ 5 s
    assert report["time_to_diverge_s"] == {"median": None, "min": None, "episodes_diverged": 0,
                                           "episodes": 2}
    assert [p["delta_pct"] for p in report["refit"]["parameters"]] == pytest.approx([0, 0, 0],
                                                                                    abs=1e-9)
    json.dumps(report, allow_nan=False)  # strict JSON


def test_a_weaker_motor_diverges_and_short_episodes_skip_long_horizons() -> None:
    truth = DEFAULT_PARAMS.replace(action_gain=6.0)
    report = compare(telemetry(truth, 30), DEFAULT_PARAMS)  # 1.5 s
    rms = [h["rms_theta_error_rad"] for h in report["horizons"]]
    assert rms[0] < rms[1] < rms[2] and rms[3] is None and rms[4] is None
    t = report["time_to_diverge_s"]
    assert t["episodes_diverged"] == 1 and 0 < t["median"] == t["min"] < 1.5
    ep = report["per_episode"][0]
    assert ep["time_to_diverge_s"] == t["min"] and ep["rms_theta_error_rad"][3] is None
    assert abs(ep["time_to_diverge_s"] / DEFAULT_PARAMS.dt % 1) < 1e-9  # on a sample
    gain = report["refit"]["parameters"][1]
    assert gain["name"] == "action_gain" and gain["fitted"] == pytest.approx(6.0)
    d = digest(report)
    assert d["refit"]["action_gain"]["delta_pct"] == pytest.approx(-25.0)
    assert list(d["rms_theta_error_rad"]) == ["0.25", "0.5", "1", "2", "5"]


def test_replay_starts_from_the_first_recorded_state() -> None:
    r = replay_episode(DEFAULT_PARAMS, np.array([1.0, 9.9, 9.9]), 0.5, np.zeros(3))
    th1, _ = physics.step(DEFAULT_PARAMS, 1.0, 0.5, 0.0)
    assert r.theta_sim[0] == 1.0 and r.theta_sim[1] == th1 and r.error[0] == 0.0


def test_too_little_telemetry_reports_why_the_refit_failed() -> None:
    report = compare(telemetry(DEFAULT_PARAMS, 5), DEFAULT_PARAMS)
    assert report["refit"]["ok"] is False and "clean transitions" in report["refit"]["error"]
    assert digest(report)["refit"] == {"error": report["refit"]["error"]}


def test_the_researchers_command(tmp_path, capsys) -> None:
    tel = telemetry(DEFAULT_PARAMS, 40)
    lines = ["episode_id,seq,t,theta,theta_dot,u_desired,u_applied,reward,deadline_miss"]
    lines += [",".join(repr(getattr(tel, c)[i].item()) for c in (
        "episode_id", "seq", "t", "theta", "theta_dot", "u_desired", "u_applied", "reward"))
        + ",0" for i in range(len(tel))]
    (tmp_path / "telemetry.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "calibration.toml").write_text(dump_calibration(DEFAULT_PARAMS))
    assert main([str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["max_abs_theta_error_rad"] == 0.0
    assert main([]) == 2
    assert main([str(tmp_path / "nope")]) == 1
    assert "cannot read calibration file" in capsys.readouterr().err
