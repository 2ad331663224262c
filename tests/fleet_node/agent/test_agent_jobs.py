"""Agent job handling against the real dispatcher, a real motor node (sim, lockstep) and real
brokers; user code runs as a plain subprocess here (the Docker runner has its own tests)."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from broker_config.dynsec import DynSec
from dispatcher import nodes
from dispatcher import queue as Q
from dispatcher.config import DispatcherConfig
from dispatcher.limits import QueueLimits
from dispatcher.service import Dispatcher
import raas_platform
from gym_raas_mqtt import protocol, results
from gym_raas_mqtt.bundle_signature import decode_public_key, verify_bundle
from gym_raas_mqtt.calibration import DEFAULT_FILE
from gym_raas_mqtt.config import load
from gym_raas_mqtt.protocol import JobSource, JobState, NodeStatus, SourceKind, TopicKind
from tests.fleet_node.agent.agent_harness import Recorder, git_repo, make_node, wait_for

pytestmark = pytest.mark.broker

RUN_ENV = """\
import gymnasium as gym
import gym_raas_mqtt  # registers RaasPendulum-v0; RAAS_MQTT_URL selects the bus backend

env = gym.make("RaasPendulum-v0")
obs, info = env.reset(seed=1)
total = 0.0
for k in range(60):
    obs, reward, terminated, truncated, info = env.step([0.5])
    total += reward
print(f"return {total:.4f}")
env.close()
"""
RUN_SLEEP = "import time\nfor i in range(600):\n    print('tick', i, flush=True)\n    time.sleep(0.05)\n"


@pytest.fixture
def dispatcher(broker, tmp_path, request):
    """The real dispatcher as its own login (its client id, a fresh session per test); a test
    module may set ``LOST_GRACE_S`` (default 3 s)."""
    grace = getattr(request.module, "LOST_GRACE_S", 3.0)
    cfg = load(DispatcherConfig, environ={}, database_url=f"sqlite:///{tmp_path / 'raas.db'}",
               mqtt_url=broker.address().url(), mqtt_username="dispatcher",
               mqtt_password_file=broker.secrets / "dispatcher", lost_grace_s=grace, tick_s=0.1,
               session_expiry_s=0)
    d = Dispatcher(cfg, QueueLimits(accept_timeout_s=10.0, time_limit_grace_s=10.0,
                                    cancel_grace_s=10.0))
    d.start()
    assert d.ready.wait(10)
    Q.ensure_owner("alice", max_running=5)
    yield d
    d.stop()


@pytest.fixture
def node(broker, tmp_path, uid):
    n = make_node(broker, tmp_path, uid)
    n.start_motor()
    yield n
    n.close()


@pytest.fixture
def watch(broker, node):
    rec = Recorder(broker.admin, protocol.node_filter(node.node_id), protocol.root_filter())
    yield rec
    rec.close()


def submit(dispatcher, url: str, time_limit_s: float = 30.0) -> str:
    return Q.enqueue("alice", JobSource(SourceKind.GIT, url=url), time_limit_s,
                     limits=dispatcher.limits).id


def finished(job_id: str, timeout_s: float = 30.0):
    return wait_for(lambda: (lambda j: j if j.job_state.terminal else None)(Q.get_job(job_id)),
                    timeout_s, f"job {job_id} to finish")


def test_job_end_to_end(dispatcher, node, watch, tmp_path):
    url = git_repo(tmp_path / "repo", {"run.py": RUN_ENV})
    agent = node.start_agent()
    job_id = submit(dispatcher, url)
    job = finished(job_id)
    assert job.job_state is JobState.SUCCEEDED, job.reason
    assert job.result_key == f"results/{job_id}/" and len(job.commit_sha) == 40
    assert agent.runner.calls == [job_id]
    # The bundle: motor-recorded telemetry, the output, a plot and the summary; the sim-vs-real
    # report with the calibration it replayed; the node's signed manifest.
    assert node.store.list(job.result_key) == [f"results/{job_id}/{f}" for f in (
        "calibration.toml", "manifest.json", "manifest.sig", "plot.png", "sim_vs_real.json",
        "sim_vs_real.png", "stdout.log", "summary.json", "telemetry.csv")]
    # a simulated node whose model is its calibration: the replay is exact (tolerance 1e-9 rad)
    report = json.loads(node.store.get_bytes(f"results/{job_id}/sim_vs_real.json"))
    assert report["max_abs_theta_error_rad"] < 1e-9 and report["time_to_diverge_s"] == {
        "median": None, "min": None, "episodes_diverged": 0, "episodes": 1}
    assert job.summary["sim_vs_real"]["rms_theta_error_rad"]["1"] < 1e-9
    # the dispatcher enrolled the node's key from its meta: the downloaded bundle verifies
    bundle = tmp_path / "downloaded"
    bundle.mkdir()
    for key in node.store.list(job.result_key):
        (bundle / key.rsplit("/", 1)[1]).write_bytes(node.store.get_bytes(key))
    keys = {n: decode_public_key(k) for n, (k, _) in nodes.fleet_keys().items()}
    assert verify_bundle(bundle, keys)[1] == []
    summary = results.load_summary(node.store, job_id=job_id)
    assert summary["state"] == "succeeded" and summary["steps"] == 60
    assert summary["episodes"] == 1 and summary["commit_sha"] == job.commit_sha
    assert summary["node_id"] == node.node_id and summary["owner"] == "alice"
    assert summary["calibration_id"] and summary["image_digest"].startswith("sha256:")
    # what ran it, for a later comparison: the platform's version, the calibration file's hash
    assert summary["platform_version"] == raas_platform.__version__ != "unknown"
    assert summary["calibration_sha256"] == hashlib.sha256(DEFAULT_FILE.read_bytes()).hexdigest()
    assert job.summary["return"] == pytest.approx(summary["return"])
    stdout = node.store.get_bytes(f"results/{job_id}/stdout.log").decode()
    assert f"return {summary['return']:.4f}" in stdout
    # The live log reached the central broker as chunks on the job's log topic.
    lines = [ln for m, _, _ in watch.decoded(TopicKind.JOB_LOG) for ln in m.lines]
    assert any(ln.startswith("return ") for ln in lines)
    assert any("commit" in ln for ln in lines)
    # Node states: busy with the job, then resetting (self-test), then idle again.
    wait_for(lambda: agent.status is NodeStatus.IDLE, what="idle after the job")
    # the agent's status changes just before it publishes it: wait for the message too
    wait_for(lambda: watch.states()[-1].state is NodeStatus.IDLE, what="idle published")
    seq = [(s.state, s.job_id) for s in watch.states()]
    busy = seq.index((NodeStatus.BUSY, job_id))
    assert (NodeStatus.RESETTING, None) in seq[busy:] and seq[-1] == (NodeStatus.IDLE, None)
    # Cleaned up: motor unbound, job account deleted, work folder and telemetry file gone.
    assert node.motor.machine.motor_state.job_id is None
    with DynSec(node.local.admin_address) as ds:
        assert not [c for c in ds.list_clients() if c.startswith("job-")]
    assert not list((node.data_dir / "jobs").iterdir())
    assert not (node.data_dir / "telemetry" / f"{job_id}.csv").exists()


def test_missing_run_py_fails_with_reason(dispatcher, node, tmp_path):
    url = git_repo(tmp_path / "repo", {"main.py": "print('hi')\n"})
    agent = node.start_agent(selftest=False)
    job = finished(submit(dispatcher, url))
    assert job.job_state is JobState.FAILED and "run.py not found" in job.reason
    assert agent.runner.calls == []
    log_text = node.store.get_bytes(f"{job.result_key}stdout.log").decode()
    assert "run.py not found" in log_text


def test_refused_url_scheme_fails(dispatcher, node, tmp_path):
    url = git_repo(tmp_path / "repo", {"run.py": "print(1)\n"})
    node.start_agent(selftest=False, clone_schemes=("https",))
    job = finished(submit(dispatcher, url))
    assert job.job_state is JobState.FAILED and "not allowed" in job.reason


def test_user_code_exception_is_failed(dispatcher, node, tmp_path):
    url = git_repo(tmp_path / "repo", {"run.py": "raise SystemExit(3)\n"})
    node.start_agent(selftest=False)
    job = finished(submit(dispatcher, url))
    assert job.job_state is JobState.FAILED and job.reason == "exit code 3"


def test_time_limit_is_timed_out(dispatcher, node, tmp_path):
    url = git_repo(tmp_path / "repo", {"run.py": RUN_SLEEP})
    node.start_agent(selftest=False)
    job = finished(submit(dispatcher, url, time_limit_s=1.0))
    assert job.job_state is JobState.TIMED_OUT


def test_cancel_running_job(dispatcher, node, tmp_path):
    url = git_repo(tmp_path / "repo", {"run.py": RUN_SLEEP})
    agent = node.start_agent(selftest=False)
    job_id = submit(dispatcher, url)
    wait_for(lambda: Q.get_job(job_id).job_state is JobState.RUNNING and agent.runner.calls,
             what="running")
    time.sleep(0.3)
    t0 = time.monotonic()
    Q.cancel(job_id, "alice", reason="changed my mind", limits=dispatcher.limits)
    job = finished(job_id)
    assert job.job_state is JobState.CANCELED
    assert time.monotonic() - t0 < 5.0
    summary = results.load_summary(node.store, job_id=job_id)
    assert summary["state"] == "canceled"
    wait_for(lambda: agent.status is NodeStatus.IDLE, what="idle after cancel")


def test_motor_lost_mid_job_is_error_and_requeued(dispatcher, node, tmp_path):
    url = git_repo(tmp_path / "repo", {"run.py": RUN_SLEEP})
    agent = node.start_agent(selftest=False, maintenance_retry_s=0.5)
    job_id = submit(dispatcher, url)
    wait_for(lambda: agent.runner.calls, what="running")
    node.motor.close()  # publishes motor state `lost`
    node.motor = None
    wait_for(lambda: Q.get_job(job_id).job_state is JobState.QUEUED, what="requeue")
    events = [(e.from_state, e.to_state, e.reason) for e in Q.events(job_id)]
    assert ("running", "error", "the motor node was lost during the job") in events
    # No motor: the node sits in maintenance and takes nothing; the motor's return heals it.
    wait_for(lambda: agent.status is NodeStatus.MAINTENANCE, what="maintenance")
    time.sleep(0.5)
    assert Q.get_job(job_id).job_state is JobState.QUEUED and Q.get_job(job_id).attempts == 1
    node.start_motor()
    wait_for(lambda: Q.get_job(job_id).job_state is JobState.RUNNING, what="second attempt")
    assert Q.get_job(job_id).attempts == 2
    wait_for(lambda: agent.runner.calls == [job_id, job_id], what="second run")
