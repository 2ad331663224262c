"""``raas submit --wait`` / ``raas wait``: elapsed/limit and an ETA, a reattach hint on Ctrl-C (the
job keeps running), job-id prefixes, and "no such folder" for a mistyped path (issue 14, item 9).
Against a real dashboard in a thread, as tests/gym_raas_mqtt/test_cli_client.py."""

from __future__ import annotations

import types
from typing import Any

import pytest

from dispatcher import queue
from dispatcher.models import Job, database
from gym_raas_mqtt.cli import follow
from gym_raas_mqtt.cli.api import Api
from gym_raas_mqtt.protocol import JobState
from tests.dashboard.dashboard_helpers import QUEUE_LIMITS, run_job_to_end
from tests.gym_raas_mqtt import test_cli_client
from tests.gym_raas_mqtt.test_cli_client import login, raas

dash = test_cli_client.dash


def test_a_missing_folder_is_no_such_folder(dash: Any, capsys: pytest.CaptureFixture,
                                            tmp_path) -> None:
    login(dash, capsys)
    code, _, err = raas(capsys, "submit", str(tmp_path / "swingpu"))
    assert code == 1
    assert err.startswith(f"raas: no such folder: {tmp_path / 'swingpu'}") and "https://" not in err
    with database.connection_context():
        assert Job.select().count() == 0


def test_ctrl_c_leaves_the_job_running_and_says_how_to_reattach(
        dash: Any, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    login(dash, capsys)

    def interrupt(_s: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(follow, "time", types.SimpleNamespace(sleep=interrupt))
    code, out, err = raas(capsys, "submit", "https://example.org/a.git", "--wait")
    job_id = out.splitlines()[0].removeprefix("submitted job ")
    assert code == 130 and out.splitlines()[1] == "queued (position 1)"
    assert f"job {job_id} is still queued" in err and "does not cancel" in err
    assert f"raas wait {job_id}" in err and f"raas cancel {job_id}" in err
    with database.connection_context():
        assert Job.get_by_id(job_id).state == "queued"  # untouched


def test_wait_by_prefix_shows_elapsed_limit_and_the_time_left(
        dash: Any, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    login(dash, capsys)
    job_id = raas(capsys, "submit", "https://example.org/a.git", "--time-limit", "60")[1].strip()
    with database.connection_context():
        queue.assign(job_id, "node-a", limits=QUEUE_LIMITS)
        queue.start(job_id, 1, limits=QUEUE_LIMITS, now=Job.get_by_id(job_id).submitted_at)
    lines: list[str] = []

    def finish(_s: float) -> None:  # the node ends the job while the CLI waits
        lines.append(capsys.readouterr().out)
        with database.connection_context():
            queue.finish(job_id, 1, JobState.SUCCEEDED, {})

    monkeypatch.setattr(follow, "time", types.SimpleNamespace(sleep=finish))
    code, out, _ = raas(capsys, "wait", job_id[:6])
    running = lines[0].strip()
    assert code == 0, out
    assert running.startswith("running on node-a · ") and "/60 s · ends in ≤ " in running
    elapsed = float(running.split(" · ")[1].split("/")[0])
    assert 0 <= elapsed < 60
    assert f"job {job_id}: succeeded" in out


def test_a_queued_job_shows_an_estimated_wait_once_runs_have_finished(
        dash: Any, capsys: pytest.CaptureFixture) -> None:
    login(dash, capsys)
    done = raas(capsys, "submit", "https://example.org/a.git")[1].strip()
    run_job_to_end(done, dash.cfg.store_url, dash.tmp)
    with database.connection_context():  # it ran 120 s
        Job.update(started_at=Job.finished_at - 120).where(Job.id == done).execute()
    waiting = [raas(capsys, "submit", "https://example.org/b.git")[1].strip() for _ in range(2)]
    view = Api.from_env().json("GET", f"/api/v1/jobs/{waiting[1]}")
    assert view["queue_position"] == 2 and view["facts"]["estimated_wait_s"] == 240
    assert follow.progress_line(view) == "queued (position 2, ~4 min wait)"


def test_a_prefix_works_for_results_and_cancel_and_an_ambiguous_one_is_refused(
        dash: Any, capsys: pytest.CaptureFixture) -> None:
    login(dash, capsys)
    job_id = raas(capsys, "submit", "https://example.org/a.git")[1].strip()
    run_job_to_end(job_id, dash.cfg.store_url, dash.tmp)
    out_dir = dash.tmp / "res"
    code, _, _ = raas(capsys, "results", job_id[:5], "-o", str(out_dir))
    assert code == 0 and (out_dir / "summary.json").is_file()
    code, out, _ = raas(capsys, "logs", job_id[:5])
    assert code == 0 and "episode 1 return -12.3" in out
    with database.connection_context():
        for jid in ("feed0001", "feed0002"):
            Job.create(id=jid, owner="alice", source_kind="git", source_url="https://x/y.git")
    code, _, err = raas(capsys, "cancel", "feed0")
    assert code == 1 and "ambiguous" in err and "feed0001" in err and "feed0002" in err
    code, out, _ = raas(capsys, "cancel", "feed0002")
    assert code == 0 and "job feed0002: canceled" in out
