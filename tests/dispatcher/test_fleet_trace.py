"""``raas fleet trace``: the trace exported from the dispatcher's database (SQLite and PostgreSQL)
has one arrival per job submitted in the period with the run time of the execution that ran it,
one failure per execution a platform fault ended, self-test and reset latencies from the self-test
history, and boots (birth or wake → the next passing self-test); the env's reader accepts it."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from dispatcher import nodes
from dispatcher import queue as Q
from gym_raas_mqtt.cli import main
from gym_raas_mqtt.protocol import JobSource, JobState, SourceKind
from gym_raas_mqtt.scaling.trace import TraceRow, meta_row, read_trace, write_trace

LIM = Q.QueueLimits(max_attempts=3)
SRC = JobSource(SourceKind.GIT, url="https://example.org/u/ctrl.git")
T0 = 1_800_000_000.0  # the period starts here [s since the epoch]


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def job_at(t: float) -> str:
    return Q.enqueue("alice", SRC, 60, limits=LIM, now=t).id


def test_trace_rows_match_the_jobs_run(db, db_url, tmp_path, capsys):
    Q.ensure_owner("alice", max_running=5)
    for node_id in ("n1", "n2"):
        reg = nodes.NodeRegistry()
        reg.note(node_id, state="idle", session=1, last_seen=T0)
        reg.flush()
    before = job_at(T0 - 50)  # submitted before the period: not an arrival
    ok, failed, requeued, waiting = (job_at(T0 + t) for t in (10, 20, 30, 40))
    Q.assign(ok, "n1", limits=LIM, now=T0 + 11)
    Q.start(ok, 1, limits=LIM, now=T0 + 12)
    Q.finish(ok, 1, JobState.SUCCEEDED, now=T0 + 19.5)
    Q.assign(failed, "n2", limits=LIM, now=T0 + 21)
    Q.start(failed, 1, limits=LIM, now=T0 + 22)
    Q.finish(failed, 1, JobState.FAILED, {"reason": "exit code 1"}, now=T0 + 25)
    Q.assign(requeued, "n2", limits=LIM, now=T0 + 31)
    Q.start(requeued, 1, limits=LIM, now=T0 + 32)
    Q.error_and_requeue(requeued, 1, "docker\ndied", now=T0 + 33)  # a platform fault
    Q.assign(requeued, "n1", limits=LIM, now=T0 + 34)
    Q.start(requeued, 2, limits=LIM, now=T0 + 35)
    Q.finish(requeued, 2, JobState.SUCCEEDED, now=T0 + 45)
    Q.assign(before, "n1", limits=LIM, now=T0 + 46)
    nodes.record_boot("n1", T0 + 1, "birth")
    nodes.record_selftest("n1", True, {"reset_s": 1.25}, at=T0 + 5, duration_s=3.0)
    nodes.record_selftest("n2", False, {}, at=T0 + 26, duration_s=2.0, reason="stuck")
    nodes.set_standby(["n2"], True, T0 + 50)
    nodes.set_standby(["n2"], False, T0 + 60)  # woken: a boot until its next passing self-test
    nodes.record_selftest("n2", True, {"reset_s": 0.5}, at=T0 + 64, duration_s=2.5)
    nodes.record_boot("n1", T0 + 70, "birth")  # no passing self-test after it (yet): left out
    out = tmp_path / "trace.csv"
    assert main(["fleet", "trace", "--since", iso(T0), "--until", iso(T0 + 100), "-o", str(out),
                 "--database-url", db_url]) == 0
    assert "4 arrivals" in capsys.readouterr().err
    rows = [line.split(",") for line in out.read_text().splitlines()[2:]]
    got = sorted((r[0], float(r[1]), r[2] and float(r[2]), r[3], r[4], r[5]) for r in rows)
    assert got == sorted([
        ("arrival", 10.0, 7.5, ok, "n1", "succeeded"),
        ("arrival", 20.0, 3.0, failed, "n2", "failed"),
        ("arrival", 30.0, 10.0, requeued, "n1", "succeeded"),
        ("arrival", 40.0, "", waiting, "", "queued"),
        ("failure", 33.0, "", requeued, "n2", "docker died"),
        ("selftest", 2.0, 3.0, "", "n1", ""), ("reset", 2.0, 1.25, "", "n1", ""),
        ("selftest", 24.0, 2.0, "", "n2", ""),
        ("selftest", 61.5, 2.5, "", "n2", ""), ("reset", 61.5, 0.5, "", "n2", ""),
        ("boot", 1.0, 4.0, "", "n1", "birth"), ("boot", 60.0, 4.0, "", "n2", "wake")])
    trace = read_trace(out)  # the env's reader accepts it
    assert list(trace.arrival_t_s) == [10.0, 20.0, 30.0, 40.0]
    assert list(trace.boot_s) == [4.0, 4.0] and list(trace.failure_node_ids) == ["n2"]


@pytest.mark.parametrize("args, message", [
    (["--since", "yesterday"], "not an ISO 8601"),
    (["--since", "2026-01-02", "--until", "2026-01-01"], "must be after --since"),
])
def test_trace_refuses_bad_dates_in_one_line(args, message, tmp_path, capsys):
    try:
        code = main(["fleet", "trace", *args, "-o", str(tmp_path / "t.csv")])
    except SystemExit as e:  # argparse's own refusal (a bad value)
        code = e.code
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists()


def test_trace_reports_an_unusable_database_in_one_line(tmp_path, capsys):
    for url in ("nonsense://x", "postgresql://u:p@127.0.0.1:1/db"):
        assert main(["fleet", "trace", "--since", "2026-01-01", "-o", str(tmp_path / "t.csv"),
                     "--database-url", url]) == 1
        err = capsys.readouterr().err
        assert err.startswith("raas fleet trace: cannot read the database") and \
            err.count("\n") == 1 and ":p@" not in err, err


def test_plan_answers_on_an_exported_trace(tmp_path, capsys):
    since = datetime.fromtimestamp(T0, timezone.utc)
    rows = [meta_row(since, datetime.fromtimestamp(T0 + 3600, timezone.utc))]
    rows += [TraceRow("arrival", 60.0 * k, 90.0, f"j{k}", "n1", "succeeded") for k in range(50)]
    write_trace(tmp_path / "trace.csv", rows)
    plot = tmp_path / "plan.png"
    assert main(["fleet", "plan", "--trace", str(tmp_path / "trace.csv"), "--slo-wait", "60",
                 "--quantile", "0.95", "--sizes", "1-3", "-o", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "50 arrivals over 1.00 h" in out and "answer: 2 station(s)" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["fleet", "plan", "--trace", str(tmp_path / "missing.csv")]) == 1
    assert capsys.readouterr().err.startswith("raas fleet plan: cannot read trace")
