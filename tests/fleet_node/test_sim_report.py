"""Sim-vs-real report on a simulated node: a motor node on the real node-local broker records a
job driven through the env, then the bundle's report replays the applied actions.

Tolerance: a simulated node whose model is its calibration replays bit for bit (the telemetry
stores floats with ``repr``), so every RMS error must be below 1e-9 rad and the refit within
1e-6 % of the calibration; a node whose motor differs (20 % more damping, or 20 % less torque
gain) must differ by more than 0.01 rad RMS over 2 s (10⁷ times the tolerance) and the refit must
move that coefficient by 20 ± 2 % in the right direction.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from fleet_node.bundle import build_bundle
from fleet_node.motor.sim_motor import SimMotor
from fleet_node.motor.telemetry import telemetry_path
from fleet_node.sim_report import sim_vs_real_extra
from gym_raas_mqtt import protocol
from gym_raas_mqtt.calibration import load_calibration
from gym_raas_mqtt.calibration.sim_vs_real import compare, main as report_main
from gym_raas_mqtt.physics import DEFAULT_PARAMS
from gym_raas_mqtt.protocol import JobBinding, TopicKind
from gym_raas_mqtt.results import read_telemetry_csv

from gym_raas_mqtt.backends.bus import BusBackend, BusConfig
from tests.fleet_node.motor import motor_fixtures

pytestmark = pytest.mark.broker
local_admin, start_node = motor_fixtures.local_admin, motor_fixtures.start_node
CAL = DEFAULT_PARAMS.replace(calibration_id="cal-test-1")


def record_job(start_node, local_admin, uid: str, tmp_path: Path, model) -> Path:
    """Run a 2-episode job of random excitation on a lockstep sim node; its telemetry file."""
    import gymnasium as gym

    start_node(motor=SimMotor(CAL, model=model), node_id=uid, lockstep=True, data_dir=tmp_path)
    probe = motor_fixtures.Probe(local_admin, uid)
    job = f"job-{uid}"
    try:
        probe.subscribe(TopicKind.ENV_MOTOR_STATE)
        probe.publish(TopicKind.ENV_JOB, JobBinding(time.time(), job, "alice"), retain=True)
        probe.get(TopicKind.ENV_MOTOR_STATE, where=lambda m: m.job_id == job)
        env = gym.make("RaasPendulum-v0", backend=BusBackend(BusConfig(
            mqtt_url=local_admin.url(), node_id=uid, username=local_admin.username,
            password=local_admin.password)))
        rng = np.random.default_rng(7)
        for episode in range(2):
            env.reset(seed=episode)
            u = 0.0
            for k in range(120):  # 6 s per episode at 20 Hz, actions held 1..6 periods
                if rng.random() < 0.3:
                    u = float(rng.uniform(-2.0, 2.0))
                env.step(np.array([u], np.float32))
        env.close()
        probe.publish(TopicKind.ENV_JOB, JobBinding(time.time(), None), retain=True)
        probe.get(TopicKind.ENV_MOTOR_STATE, where=lambda m: m.job_id is None)
        probe.client.publish(protocol.topic(TopicKind.ENV_JOB, node=uid), b"", qos=1,
                             retain=True).wait_for_publish(5)
    finally:
        probe.close()
    return telemetry_path(tmp_path, job)


def test_sim_equal_to_its_calibration_replays_exactly(start_node, local_admin, uid, tmp_path):
    tel_path = record_job(start_node, local_admin, uid, tmp_path, model=None)
    out = tmp_path / "bundle"
    summary = build_bundle(out, telemetry_path=tel_path, stdout_path=None, plot=False,
                           extras=[sim_vs_real_extra(CAL)], job_id="j1", owner="alice",
                           node_id=uid, state="succeeded", reason=None)
    report = json.loads((out / "sim_vs_real.json").read_text())
    assert report["time_to_diverge_s"]["episodes"] == 2
    assert [h["horizon_s"] for h in report["horizons"]] == [0.25, 0.5, 1.0, 2.0, 5.0]
    assert all(h["episodes"] == 2 and h["rms_theta_error_rad"] < 1e-9 for h in report["horizons"])
    assert report["max_abs_theta_error_rad"] < 1e-9
    assert report["time_to_diverge_s"]["episodes_diverged"] == 0
    assert report["refit"]["ok"], report["refit"]
    assert all(abs(p["delta_pct"]) < 1e-6 for p in report["refit"]["parameters"])
    assert (out / "sim_vs_real.png").stat().st_size > 10_000
    assert summary["sim_vs_real"]["rms_theta_error_rad"]["1"] < 1e-9
    # the researcher's way: the same report from the downloaded bundle and its calibration.toml
    assert load_calibration(out / "calibration.toml") == CAL
    assert report_main([str(out)]) == 0


@pytest.mark.parametrize("name,factor", [("damping", 1.2), ("action_gain", 0.8)])
def test_sim_with_another_motor_diverges_and_the_refit_finds_it(start_node, local_admin, uid,
                                                                tmp_path, name, factor):
    truth = CAL.replace(**{name: getattr(CAL, name) * factor})
    tel = read_telemetry_csv(record_job(start_node, local_admin, uid, tmp_path, model=truth))
    t0 = time.perf_counter()
    report = compare(tel, CAL)
    elapsed = time.perf_counter() - t0
    rms = {h["horizon_s"]: h["rms_theta_error_rad"] for h in report["horizons"]}
    assert rms[2.0] > 0.01 and rms[0.25] < rms[2.0]
    assert report["max_abs_theta_error_rad"] > 0.05
    refit = {p["name"]: p for p in report["refit"]["parameters"]}
    assert refit[name]["delta_pct"] == pytest.approx(100 * (factor - 1), abs=2.0)
    assert (refit[name]["fitted"] > refit[name]["calibration"]) == (factor > 1)
    assert elapsed < 5.0  # 240 steps; the report's cost is measured by the bench note
