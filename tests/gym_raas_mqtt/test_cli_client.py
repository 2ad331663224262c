"""The researcher's CLI (`raas login/submit/jobs/logs/results/nodes/cancel`) against a real
dashboard served by waitress in a thread, on a temporary database and object store."""

from __future__ import annotations

import io
import os
import stat
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dashboard"))
from dashboard_helpers import QUEUE_LIMITS, make_config, make_user, run_job_to_end  # noqa: E402

from dashboard.app import create_app  # noqa: E402
from dashboard.server import BackgroundServer  # noqa: E402
from dispatcher import queue  # noqa: E402
from dispatcher.models import Job, database  # noqa: E402
from gym_raas_mqtt import protocol  # noqa: E402
from gym_raas_mqtt.cli import main  # noqa: E402
from gym_raas_mqtt.cli.api import ClientError, pack_directory  # noqa: E402
from gym_raas_mqtt.protocol import JobState, JobStatus, LogChunk, TopicKind  # noqa: E402
from raas_platform.storage import open_store  # noqa: E402


@pytest.fixture
def dash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # file:// allowed as on a dev stack: test_wait_shows_progress... submits file:///srv/ctrl
    cfg = make_config(tmp_path, git_schemes=("https", "ssh", "file"))
    app = create_app({"TESTING": True, "RAAS_CONFIG": cfg})
    for var in ("RAAS_API_URL", "RAAS_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RAAS_CLIENT_CONFIG", str(tmp_path / "home" / "raas" / "config.toml"))
    with BackgroundServer(app, threads=8) as server:
        server.cfg, server.tmp, server.app = cfg, tmp_path, app
        server.user = make_user(app, "alice")
        yield server


def raas(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def login(dash: Any, capsys: pytest.CaptureFixture) -> None:
    pw = dash.tmp / "pw"
    pw.write_text(dash.user.password + "\n")
    code, out, _ = raas(capsys, "login", "--url", dash.url, "--user", "alice",
                        "--password-file", str(pw))
    assert code == 0 and "logged in as alice" in out


def test_login_stores_a_private_token(dash: Any, capsys: pytest.CaptureFixture) -> None:
    login(dash, capsys)
    path = Path(os.environ["RAAS_CLIENT_CONFIG"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert 'token = "raas_' in path.read_text() and dash.url in path.read_text()
    code, out, _ = raas(capsys, "jobs")
    assert code == 0 and out.strip() == "no jobs"


def test_wrong_password_and_missing_login(dash: Any, capsys: pytest.CaptureFixture) -> None:
    code, _, err = raas(capsys, "jobs")
    assert code == 1 and "RAAS_API_URL" in err
    pw = dash.tmp / "bad"
    pw.write_text("wrong-password")
    code, _, err = raas(capsys, "login", "--url", dash.url, "--user", "alice",
                        "--password-file", str(pw))
    assert code == 1 and "HTTP 401" in err


def test_environment_overrides_the_config_file(dash: Any, capsys: pytest.CaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAAS_API_URL", dash.url)
    monkeypatch.setenv("RAAS_API_TOKEN", dash.user.token)
    assert raas(capsys, "jobs")[0] == 0
    monkeypatch.setenv("RAAS_API_TOKEN", "raas_revoked")
    code, _, err = raas(capsys, "jobs")
    assert code == 1 and "HTTP 401" in err


def test_submit_folder_git_url_and_list(dash: Any, capsys: pytest.CaptureFixture) -> None:
    login(dash, capsys)
    ctrl = dash.tmp / "ctrl"
    (ctrl / ".git").mkdir(parents=True)
    (ctrl / ".git" / "HEAD").write_text("ref")
    (ctrl / "__pycache__").mkdir()
    (ctrl / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (ctrl / "run.py").write_text("print('swing up')\n")
    (ctrl / "policy").mkdir()
    (ctrl / "policy" / "pd.py").write_text("K = 15\n")
    code, out, _ = raas(capsys, "submit", str(ctrl), "--time-limit", "30")
    assert code == 0
    job_id = out.strip()
    with database.connection_context():
        job = Job.get_by_id(job_id)
    assert job.source_kind == "archive" and job.time_limit_s == 30.0
    data = open_store(dash.cfg.store_url).get_bytes(job.archive_key)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert sorted(tf.getnames()) == ["policy/pd.py", "run.py"]

    code, out, _ = raas(capsys, "submit", "https://example.org/me/ctrl.git", "--ref", "v2")
    git_id = out.strip()
    code, out, _ = raas(capsys, "jobs")
    assert job_id in out and git_id in out and "https://example.org/me/ctrl.git @ v2" in out
    assert "queued" in out

    code, _, err = raas(capsys, "submit", "--ref=-x", "https://example.org/r.git")
    assert code == 1 and "ref must not start with '-'" in err


def test_folder_without_run_py_is_refused_locally(tmp_path: Path) -> None:
    with pytest.raises(ClientError, match="run.py"):
        pack_directory(tmp_path)


def test_wait_shows_progress_then_summary(dash: Any, capsys: pytest.CaptureFixture) -> None:
    login(dash, capsys)

    def finish_when_queued() -> None:  # plays dispatcher + node for the job being submitted
        for _ in range(200):
            with database.connection_context():
                job = Job.select().where(Job.state == "queued").first()
            if job is not None:
                time.sleep(1.3)  # let the CLI show the queued state first
                run_job_to_end(job.id, dash.cfg.store_url, dash.tmp)
                return
            time.sleep(0.02)

    threading.Thread(target=finish_when_queued, daemon=True).start()
    code, out, _ = raas(capsys, "submit", "file:///srv/ctrl", "--wait")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("submitted job ")
    assert "queued (position 1)" in lines and "succeeded" in lines
    assert any(line.startswith("job ") and line.endswith(": succeeded") for line in lines)
    for fact in ("commit", "c0ffee", "calibration", "cal-2026-01", "steps", "60", "raas results"):
        assert fact in out


def test_logs_follow_streams_live_output(dash: Any, capsys: pytest.CaptureFixture) -> None:
    login(dash, capsys)
    job_id = raas(capsys, "submit", "https://example.org/a.git")[1].strip()
    code, _, err = raas(capsys, "logs", job_id)
    assert code == 1 and "--follow" in err
    hub = dash.app.extensions["raas_hub"]

    def node_output() -> None:  # what the dashboard's subscriber would hand over from MQTT
        while hub.open_streams == 0:
            time.sleep(0.02)
        for i, line in enumerate(("reset ok", "episode 1 return -80.2")):
            hub.publish_message(protocol.topic(TopicKind.JOB_LOG, owner="alice", job=job_id),
                                LogChunk(job_id=job_id, seq=i, lines=(line,)).to_bytes())
        hub.publish_message(protocol.topic(TopicKind.JOB_STATE, owner="alice", job=job_id),
                            JobStatus(job_id=job_id, owner="alice", state=JobState.SUCCEEDED,
                                      ts=time.time()).to_bytes())

    threading.Thread(target=node_output, daemon=True).start()
    code, out, err = raas(capsys, "logs", "--follow", job_id)
    assert code == 0
    assert out.splitlines() == ["reset ok", "episode 1 return -80.2"]
    assert "[job succeeded]" in err


def test_results_logs_cancel_nodes(dash: Any, capsys: pytest.CaptureFixture) -> None:
    login(dash, capsys)
    job_id = raas(capsys, "submit", "https://example.org/a.git")[1].strip()
    run_job_to_end(job_id, dash.cfg.store_url, dash.tmp)
    out_dir = dash.tmp / "res"
    code, out, _ = raas(capsys, "results", job_id, "-o", str(out_dir))
    assert code == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["plot.png", "stdout.log", "summary.json",
                                                       "telemetry.csv"]
    code, out, _ = raas(capsys, "logs", job_id)
    assert code == 0 and "episode 1 return -12.3" in out
    code, _, err = raas(capsys, "cancel", job_id)
    assert code == 1 and "HTTP 409" in err and "already ended" in err
    other = raas(capsys, "submit", "https://example.org/b.git")[1].strip()
    code, out, _ = raas(capsys, "cancel", other)
    assert code == 0 and "canceled" in out
    code, out, _ = raas(capsys, "nodes")
    assert code == 0 and out.strip() == "no nodes"


def parse_submit(*argv: str) -> Any:
    from gym_raas_mqtt.cli import build_parser
    from gym_raas_mqtt.cli.runmeta import finish_parsing

    return finish_parsing(build_parser().parse_args(["submit", *argv]))


def test_submit_parses_metadata_and_run_py_arguments_after_double_dash() -> None:
    a = parse_submit("DIR", "--name", "swingup-v3", "--tag", "lqr", "--tag", "x", "--note",
                     "first", "--env", "GAIN=1.5", "--env", "EQ=a=b", "--", "600", "--gain",
                     "1", "--")
    assert (a.source, a.name, a.tags, a.notes, a.env, a.run_args) == (
        "DIR", "swingup-v3", ["lqr", "x"], "first", [("GAIN", "1.5"), ("EQ", "a=b")],
        ["600", "--gain", "1", "--"])
    a = parse_submit("--wait", "--tag", "a", "DIR", "--tag", "b", "--time-limit", "30")
    assert (a.wait, a.tags, a.time_limit, a.run_args) == (True, ["a", "b"], 30.0, [])
    assert parse_submit("DIR", "--", "--", "x").run_args == ["--", "x"]
    assert parse_submit("DIR").name is None
    with pytest.raises(SystemExit):
        parse_submit("DIR", "600")  # run.py's arguments come after --
    with pytest.raises(SystemExit):
        parse_submit("DIR", "--env", "NOEQUALS")
    with pytest.raises(ClientError, match="give a folder"):
        parse_submit("--wait")


def test_named_runs_with_arguments_sorted_by_return(dash: Any,
                                                   capsys: pytest.CaptureFixture) -> None:
    """Three named runs with different arguments, through `raas submit`, listed by `raas jobs
    --sort=-return`, one shown by `raas status`; an invalid variable is refused with the reason."""
    login(dash, capsys)
    ctrl = dash.tmp / "ctrl"
    ctrl.mkdir()
    (ctrl / "run.py").write_text("print('swing up')\n")
    ids = []
    for gain in ("1", "2", "3"):
        code, out, err = raas(capsys, "submit", str(ctrl), "--name", f"swingup-g{gain}",
                              "--tag", "lqr", "--env", f"GAIN={gain}", "--", "600",
                              f"--gain={gain}", "two words")
        assert code == 0, err
        ids.append(out.strip())
    with database.connection_context():
        jobs = [Job.get_by_id(i) for i in ids]
    assert [(j.name, j.tags, j.args, j.env) for j in jobs] == [
        (f"swingup-g{g}", ["lqr"], ["600", f"--gain={g}", "two words"], {"GAIN": g})
        for g in "123"]
    for i, job_id in enumerate(ids):  # returns -30, -20, -10: the third run is the best
        with database.connection_context():
            queue.assign(job_id, f"node-{i}", limits=QUEUE_LIMITS)
            queue.start(job_id, 1, limits=QUEUE_LIMITS)
            queue.finish(job_id, 1, JobState.SUCCEEDED, {"summary": {
                "return": -30.0 + 10 * i, "steps": 100, "episodes": 1}})
    code, out, _ = raas(capsys, "jobs", "--sort=-return", "--tag", "lqr")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:4] == ["RUN", "JOB", "STATE", "RETURN"]
    assert [line.split()[0] for line in lines[1:]] == ["swingup-g3", "swingup-g2", "swingup-g1"]
    assert "-10.00" in lines[1] and "lqr" in lines[1]
    code, out, _ = raas(capsys, "jobs", "-q", "g2")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["swingup-g2"]
    code, out, _ = raas(capsys, "status", ids[0][:8])
    assert code == 0 and "swingup-g1" in out and "python run.py 600 --gain=1 'two words'" in out
    assert "environment      GAIN" in out
    code, _, err = raas(capsys, "submit", str(ctrl), "--env", "RAAS_JOB_ID=x")
    assert code == 1 and "RAAS_JOB_ID is reserved by the platform" in err
    with pytest.raises(SystemExit):
        raas(capsys, "jobs", "--sort", "colour")
    assert "choose from submitted" in capsys.readouterr().err
