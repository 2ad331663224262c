"""Telemetry file writer/reader and live batches."""

import numpy as np
import pytest

from fleet_node.motor.telemetry import (FILE_COLUMNS, TelemetryRecorder, read_telemetry,
                                        telemetry_path)
from gym_raas_mqtt.errors import ProtocolError
from gym_raas_mqtt.protocol import TELEMETRY_COLUMNS, TelemetryBatch


def test_rows_round_trip_exactly_and_batches_are_published(tmp_path):
    batches = []
    path = telemetry_path(tmp_path, "job-1")
    rec = TelemetryRecorder(path, "job-1", "alice", "node-1", batches.append, batch=3)
    rows = [(i + 1, 0.05 * (i + 1) + 1e-17, 0.1 / 3 * i, -2.0 / 7, 2.5, 2.0, -1.0 / 3, i == 2)
            for i in range(7)]
    for r in rows[:5]:
        rec.record(4, r)
    rec.record(5, rows[5])  # a new episode flushes the old one's rows first
    rec.record(5, rows[6])
    rec.close()
    rec.close()  # idempotent
    data = read_telemetry(path)
    assert tuple(data) == FILE_COLUMNS and FILE_COLUMNS[:-1] == TELEMETRY_COLUMNS
    assert data["seq"].dtype == np.int64 and data["deadline_miss"].dtype == bool
    for j, name in enumerate(TELEMETRY_COLUMNS):
        assert list(data[name]) == [r[j] for r in rows], name  # exact float64
    assert list(data["episode_id"]) == [4] * 5 + [5] * 2
    assert [len(b.seq) for b in batches] == [3, 2, 2]
    assert all(isinstance(b, TelemetryBatch) and b.job_id == "job-1" for b in batches)
    assert TelemetryBatch.from_bytes(batches[0].to_bytes()) == batches[0]


def test_append_after_restart_keeps_one_header(tmp_path):
    path = telemetry_path(tmp_path, "job-2")
    for start in (1, 2):
        rec = TelemetryRecorder(path, "job-2", "alice", "n", lambda b: None)
        rec.record(1, (start, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, False))
        rec.close()
    assert list(read_telemetry(path)["seq"]) == [1, 2]


def test_bad_job_id_and_bad_file_are_rejected(tmp_path):
    with pytest.raises(ProtocolError):
        telemetry_path(tmp_path, "../etc/passwd")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError):
        read_telemetry(bad)


def test_a_failing_publisher_does_not_lose_rows(tmp_path):
    def boom(batch):
        raise RuntimeError("broker gone")

    path = telemetry_path(tmp_path, "job-3")
    rec = TelemetryRecorder(path, "job-3", "o", "n", boom, batch=1)
    rec.record(1, (1, 0.0, 1.0, 2.0, 0.5, 0.5, -1.0, False))
    rec.close()
    assert list(read_telemetry(path)["theta"]) == [1.0]
