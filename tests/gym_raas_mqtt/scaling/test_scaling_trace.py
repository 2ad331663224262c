"""The trace CSV: write → read round trip, validation with line numbers, and replay in the env."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from gym_raas_mqtt.scaling.env import FleetScalingEnv
from gym_raas_mqtt.scaling.trace import (
    TRACE_COLUMNS,
    TraceError,
    TraceRow,
    meta_row,
    read_trace,
    write_trace,
)

SINCE = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def rows(arrivals):
    out = [meta_row(SINCE, SINCE + timedelta(hours=2))]
    out += [TraceRow("arrival", t, d, f"job-{k}") for k, (t, d) in enumerate(arrivals)]
    out += [TraceRow("boot", 5.0, 110.0, node_id="n1"),
            TraceRow("reset", 400.0, 28.0, "job-0", "n1"),
            TraceRow("selftest", 120.0, 19.5, node_id="n1"),
            TraceRow("failure", 900.0, None, "job-3", "n1", "motor fault")]
    return out


def test_round_trip_and_replay(tmp_path):
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(0, 7000, 40)).round(3)
    arrivals = [(float(t), float(d)) for t, d in zip(times, rng.uniform(30, 300, 40).round(3))]
    arrivals[3] = (arrivals[3][0], None)  # a job that never ran
    path = tmp_path / "trace.csv"
    assert write_trace(path, rows(arrivals)) == 45
    assert path.read_text().splitlines()[0] == ",".join(TRACE_COLUMNS)
    trace = read_trace(path)
    assert trace.since == SINCE and trace.span_s == 7200
    assert np.array_equal(trace.arrival_t_s, times)
    assert np.isnan(trace.arrival_duration_s[3]) and len(trace.durations_s) == 39
    assert trace.boot_s.tolist() == [110.0] and trace.failure_node_ids == ["n1"]

    env = FleetScalingEnv(arrivals="trace", trace=str(path), durations="trace", max_stations=40,
                          stations=40, boot_s=0, reset_s=0, selftest_s=0, dt_s=60)
    assert env.start_time_of_day_s == 9 * 3600  # the trace's since, UTC
    env.reset(seed=0)
    per_step, waits, truncated = [], [], False
    while not truncated:
        _, _, _, truncated, info = env.step(env.action_spec.noop)
        per_step.append(info["arrivals"])
        waits += info["waits_s"]
    assert per_step == np.histogram(times, bins=np.arange(0, 60 * (len(per_step) + 1), 60))[0] \
        .tolist()
    assert len(per_step) == 120 and waits == [0.0] * 40  # 40 stations: nobody waits


def test_replayed_durations_are_the_traces(tmp_path):
    path = tmp_path / "t.csv"
    write_trace(path, rows([(10.0, 1000.0), (20.0, 50.0)]))
    env = FleetScalingEnv(arrivals="trace", trace=str(path), max_stations=1, stations=1,
                          boot_s=0, reset_s=0, selftest_s=0, dt_s=60)
    env.reset(seed=0)
    waits = []
    for _ in range(20):
        waits += env.step(env.action_spec.noop)[4]["waits_s"]
    assert waits == pytest.approx([0.0, 990.0])  # the second job waits for the first's 1000 s


@pytest.mark.parametrize(("text", "line", "message"), [
    ("event,t_s\n", 1, "header"),
    (",".join(TRACE_COLUMNS) + "\narrival,1,2,j,,\n", 2, "meta row"),
    (",".join(TRACE_COLUMNS) + "\nmeta,0,,,,since=2026-01-01\n", 2, "since="),
    (",".join(TRACE_COLUMNS) + "\nmeta,0,,,,since=2026-01-01T00:00:00;until=2026-01-02T00:00:00\n",
     2, "timezone"),
    (",".join(TRACE_COLUMNS) + "\nmeta,0,,,,since=2026-01-01T00:00:00Z;until=2026-01-02T00:00:00Z\n"
     "arrival,1,,j1,,\nboot,x,3,,n,\n", 4, "not a number"),
    (",".join(TRACE_COLUMNS) + "\nmeta,0,,,,since=2026-01-01T00:00:00Z;until=2026-01-02T00:00:00Z\n"
     "reset,1,,,n,\n", 3, "duration_s is required"),
    (",".join(TRACE_COLUMNS) + "\nmeta,0,,,,since=2026-01-01T00:00:00Z;until=2026-01-02T00:00:00Z\n"
     "arrival,-1,5,j,,\n", 3, "≥ 0"),
    (",".join(TRACE_COLUMNS) + "\nmeta,0,,,,since=2026-01-01T00:00:00Z;until=2026-01-02T00:00:00Z\n"
     "arrival,99999,5,j,,\n", 3, "after the trace's until"),
    (",".join(TRACE_COLUMNS) + "\nmeta,0,,,,since=2026-01-01T00:00:00Z;until=2026-01-02T00:00:00Z\n"
     "arrival,1,5,j,,\nexplosion,2,,,,\n", 4, "unknown event"),
    (",".join(TRACE_COLUMNS) + "\nmeta,0,,,,since=2026-01-01T00:00:00Z;until=2026-01-02T00:00:00Z\n"
     "arrival,1,5,j\n", 3, "columns"),
])
def test_bad_files_name_the_line(tmp_path, text, line, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TraceError, match=f"line {line}: .*{message}"):
        read_trace(path)


def test_unreadable_and_invalid_writes(tmp_path):
    with pytest.raises(TraceError, match="cannot read"):
        read_trace(tmp_path / "missing.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TraceError):
        read_trace(tmp_path / "bin.csv")
    with pytest.raises(TraceError, match="line 3: an arrival needs a job_id"):
        write_trace(tmp_path / "w.csv", [meta_row(SINCE, SINCE), TraceRow("arrival", 0.0, 1.0)])
    assert not (tmp_path / "w.csv").exists()
    stream = io.StringIO()
    write_trace(stream, [meta_row(SINCE, SINCE)])
    assert stream.getvalue().startswith("event,t_s")
