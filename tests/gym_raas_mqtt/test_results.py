"""Result bundles: summary numbers, bundle layout, round trip through an object store."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from gym_raas_mqtt import physics
from gym_raas_mqtt.protocol import TELEMETRY_COLUMNS
from gym_raas_mqtt.results import (
    PLOT_FILE,
    STDOUT_FILE,
    SUMMARY_FILE,
    TELEMETRY_FILE,
    ResultError,
    load_summary,
    load_telemetry,
    longest_upright_s,
    read_telemetry_csv,
    result_prefix,
    summarize_telemetry,
)
from fleet_node.bundle import build_bundle, upload_bundle
from raas_platform.storage import LocalStore, ObjectNotFound

DT = 0.05


def write_csv(path, rows, with_episode=True):
    cols = (("episode_id",) if with_episode else ()) + TELEMETRY_COLUMNS
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([r[c] for c in cols])
    return path


def rows_for(thetas, episode_id=1, reward=-1.0, miss_every=0):
    return [{"episode_id": episode_id, "seq": i + 1, "t": round((i + 1) * DT, 6), "theta": th,
             "theta_dot": 0.0, "u_desired": 3.0, "u_applied": 2.0, "reward": reward,
             "deadline_miss": int(bool(miss_every) and i % miss_every == 0)}
            for i, th in enumerate(thetas)]


def test_longest_upright_counts_the_longest_run():
    t = np.arange(1, 11) * DT
    theta = np.array([3.0, 0.1, 0.2, -0.1, 1.0, 0.0, 0.0, 0.0, 0.0, 3.0])
    assert longest_upright_s(t, theta, DT) == pytest.approx(4 * DT)
    assert longest_upright_s(t, np.full(10, 3.0), DT) == 0.0
    assert longest_upright_s(t, np.zeros(10), DT) == pytest.approx(10 * DT)


def test_upright_uses_wrapped_angle():
    # Unwrapped θ = 2π is upright again after a full turn; |θ| = 0.31 is not.
    t = np.arange(1, 4) * DT
    assert longest_upright_s(t, np.array([2 * math.pi] * 3), DT) == pytest.approx(3 * DT)
    assert longest_upright_s(t, np.array([0.31, -0.31, 0.31]), DT) == 0.0


def test_summary_numbers_from_csv(tmp_path):
    rows = rows_for([0.0] * 20, episode_id=1, reward=-0.5, miss_every=10) \
        + rows_for([3.0] * 5 + [0.1] * 30, episode_id=2, reward=-1.0)
    tel = read_telemetry_csv(write_csv(tmp_path / "t.csv", rows))
    s = summarize_telemetry(tel)
    assert s["steps"] == 55 and s["episodes"] == 2
    assert s["return"] == pytest.approx(20 * -0.5 + 35 * -1.0)
    assert s["deadline_misses"] == 2
    assert s["seconds_upright"] == pytest.approx(30 * DT)
    assert s["control_period_s"] == pytest.approx(DT)
    assert [e["steps"] for e in s["per_episode"]] == [20, 35]


def test_episodes_inferred_from_seq_restart(tmp_path):
    rows = rows_for([0.0] * 3) + rows_for([0.0] * 4)
    tel = read_telemetry_csv(write_csv(tmp_path / "t.csv", rows, with_episode=False))
    assert summarize_telemetry(tel)["episodes"] == 2
    assert list(tel.episode_id) == [1, 1, 1, 2, 2, 2, 2]


def test_summary_matches_physics_rollout(tmp_path):
    """Rewards of a simulated rollout (physics.py) sum to the summary's return."""
    params = physics.PendulumParams()
    rng = np.random.default_rng(0)
    theta, theta_dot, rows = 0.05, 0.0, []
    for i in range(200):
        u = float(rng.uniform(-2, 2))
        r = physics.reward(theta, theta_dot, u)
        theta, theta_dot = physics.step(params, theta, theta_dot, u)
        rows.append({"episode_id": 1, "seq": i + 1, "t": (i + 1) * DT, "theta": theta,
                     "theta_dot": theta_dot, "u_desired": u, "u_applied": u, "reward": r,
                     "deadline_miss": 0})
    tel = read_telemetry_csv(write_csv(tmp_path / "t.csv", rows))
    assert summarize_telemetry(tel)["return"] == pytest.approx(sum(r["reward"] for r in rows))


@pytest.mark.parametrize("content, msg", [
    ("seq,t\n1,0.05\n", "lacks column"),
    (",".join(TELEMETRY_COLUMNS) + "\n1,x,0,0,0,0,0,0\n", "malformed"),
])
def test_malformed_telemetry_rejected(tmp_path, content, msg):
    (tmp_path / "t.csv").write_text(content)
    with pytest.raises(ResultError, match=msg):
        read_telemetry_csv(tmp_path / "t.csv")


def test_build_bundle_layout_and_load(tmp_path):
    tel_path = write_csv(tmp_path / "motor.csv", rows_for([0.0] * 40))
    (tmp_path / "out.log").write_text("hello\n")
    summary = build_bundle(
        tmp_path / "bundle", telemetry_path=tel_path, stdout_path=tmp_path / "out.log",
        job_id="j1", owner="alice", node_id="n1", state="succeeded", reason="exit code 0",
        commit_sha="a" * 40, image_digest="sha256:abc", calibration_id="cal-1", time_limit_s=120.0,
        duration_s=2.5, started_at=1.0, finished_at=3.5, exit_code=0)
    bundle = tmp_path / "bundle"
    assert sorted(p.name for p in bundle.iterdir()) == sorted(
        [SUMMARY_FILE, TELEMETRY_FILE, STDOUT_FILE, PLOT_FILE])
    assert (bundle / PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (bundle / STDOUT_FILE).read_text() == "hello\n"
    loaded = load_summary(bundle)
    assert loaded == json.loads(json.dumps(summary))
    for key in ("state", "reason", "return", "steps", "episodes", "deadline_misses", "duration_s",
                "commit_sha", "image_digest", "node_id", "calibration_id", "job_id", "owner",
                "time_limit_s", "started_at", "finished_at", "seconds_upright"):
        assert key in loaded, key
    assert loaded["seconds_upright"] == pytest.approx(40 * DT)
    assert len(load_telemetry(bundle)) == 40


def test_bundle_without_telemetry_still_written(tmp_path):
    summary = build_bundle(tmp_path / "b", telemetry_path=None, stdout_path=None, job_id="j2",
                           owner="bob", node_id="n1", state="failed", reason="run.py missing")
    assert summary["steps"] == 0 and summary["telemetry_error"] == "no telemetry recorded"
    assert not (tmp_path / "b" / PLOT_FILE).exists()
    assert (tmp_path / "b" / STDOUT_FILE).read_bytes() == b""


def test_bundle_with_corrupt_telemetry_keeps_raw_file(tmp_path):
    (tmp_path / "bad.csv").write_text("garbage\n")
    summary = build_bundle(tmp_path / "b", telemetry_path=tmp_path / "bad.csv", stdout_path=None,
                           job_id="j3", owner="bob", node_id="n1", state="succeeded", reason=None)
    assert "lacks column" in summary["telemetry_error"]
    assert (tmp_path / "b" / TELEMETRY_FILE).read_text() == "garbage\n"


def test_upload_and_load_from_store(tmp_path):
    tel_path = write_csv(tmp_path / "motor.csv", rows_for([0.0] * 10))
    build_bundle(tmp_path / "b", telemetry_path=tel_path, stdout_path=None, job_id="j4",
                 owner="alice", node_id="n1", state="succeeded", reason=None, plot=False)
    store = LocalStore(tmp_path / "store")
    prefix = upload_bundle(store, "j4", tmp_path / "b")
    assert prefix == result_prefix("j4") == "results/j4/"
    assert store.list(prefix) == ["results/j4/stdout.log", "results/j4/summary.json",
                                  "results/j4/telemetry.csv"]
    assert load_summary(store, job_id="j4")["steps"] == 10
    assert len(load_telemetry(store, job_id="j4")) == 10
    with pytest.raises(ObjectNotFound):
        load_summary(store, job_id="nope")
