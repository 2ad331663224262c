"""Result bundles written on the node: layout, missing or corrupt telemetry, upload to a store."""

from __future__ import annotations

import json

import pytest

from fleet_node.bundle import build_bundle, upload_bundle
from gym_raas_mqtt.results import (
    PLOT_FILE,
    STDOUT_FILE,
    SUMMARY_FILE,
    TELEMETRY_FILE,
    load_summary,
    load_telemetry,
    result_prefix,
)
from raas_platform.storage import LocalStore, ObjectNotFound
from tests.gym_raas_mqtt.test_results import DT, rows_for, write_csv


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
