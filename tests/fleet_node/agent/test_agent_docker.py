"""The agent with the real Docker runner: a controller in the hardened runner image drives the
(simulated, lockstep) motor node through the node-local broker's socket; results come back as a
bundle recorded by the motor node."""

from __future__ import annotations

import pytest

from dispatcher import queue as Q
from dispatcher.models import Job, database
from fleet_node.runner import DockerRunner, RunnerConfig
from gym_raas_mqtt import results
from gym_raas_mqtt.protocol import JobSource, JobState, SourceKind
from raas_platform.submission import RunMetadata
from tests.fleet_node.agent.agent_harness import git_repo, make_node
from tests.fleet_node.agent.test_agent_jobs import RUN_ENV, dispatcher, finished  # noqa: F401

pytestmark = [pytest.mark.docker, pytest.mark.broker]


@pytest.fixture
def node(broker, tmp_path, uid):
    n = make_node(broker, tmp_path, uid)
    n.start_motor()
    yield n
    n.close()


def test_job_in_docker_end_to_end(dispatcher, node, docker, runner_image, tmp_path):  # noqa: F811
    runner = DockerRunner(RunnerConfig(image=runner_image))
    agent = node.start_agent(runner=runner)
    assert agent.presence.meta().image_digest == runner.image_id()
    url = git_repo(tmp_path / "repo", {"run.py": RUN_ENV})
    job_id = Q.enqueue("alice", JobSource(SourceKind.GIT, url=url), 60.0,
                       limits=dispatcher.limits).id
    job = finished(job_id, timeout_s=120)
    stdout = node.store.get_bytes(f"results/{job_id}/stdout.log").decode()
    assert job.job_state is JobState.SUCCEEDED, f"{job.reason}\n{stdout[-2000:]}"
    summary = results.load_summary(node.store, job_id=job_id)
    assert summary["steps"] == 60 and summary["image_digest"] == runner.image_id()
    assert f"return {summary['return']:.4f}" in stdout
    assert not docker.containers.list(all=True, filters={"label": f"raas.job={job_id}"})


ARGV_ENV = """\
import json, os, sys
print("ARGV " + json.dumps(sys.argv))
print("ENV " + json.dumps({k: os.environ.get(k) for k in ("GAIN", "MODE", "RAAS_JOB_ID")}))
"""


def test_run_py_receives_the_arguments_and_environment(dispatcher, node, docker,  # noqa: F811
                                                       runner_image, tmp_path):
    """Arguments and variables are runtime: the same runner image, no rebuild."""
    agent = node.start_agent(runner=DockerRunner(RunnerConfig(image=runner_image)))
    assert agent is not None
    url = git_repo(tmp_path / "repo", {"run.py": ARGV_ENV})
    meta = RunMetadata(name="argv-check", tags=("e2e",), args=("600", "--label=a b", "$HOME"),
                       env={"GAIN": "1.5", "MODE": "swing up"})
    job_id = Q.enqueue("alice", JobSource(SourceKind.GIT, url=url), 60.0,
                       limits=dispatcher.limits, meta=meta).id
    job = finished(job_id, timeout_s=120)
    stdout = node.store.get_bytes(f"results/{job_id}/stdout.log").decode()
    assert job.job_state is JobState.SUCCEEDED, f"{job.reason}\n{stdout[-2000:]}"
    assert 'ARGV ["run.py", "600", "--label=a b", "$HOME"]' in stdout
    assert f'ENV {{"GAIN": "1.5", "MODE": "swing up", "RAAS_JOB_ID": "{job_id}"}}' in stdout
    summary = results.load_summary(node.store, job_id=job_id)
    assert (summary["name"], summary["tags"], summary["args"]) == (
        "argv-check", ["e2e"], ["600", "--label=a b", "$HOME"])


def test_node_checks_arguments_and_environment_again(dispatcher, node, docker,  # noqa: F811
                                                     runner_image, tmp_path):
    """An assignment whose variables break the rules (a database or message tampered with
    after submission) fails on the node with the submission's reason; nothing runs."""
    url = git_repo(tmp_path / "repo", {"run.py": ARGV_ENV})
    job_id = Q.enqueue("alice", JobSource(SourceKind.GIT, url=url), 60.0,
                       limits=dispatcher.limits).id
    with database.connection_context():
        Job.update(env={"RAAS_MQTT_URL": "mqtt://elsewhere"}).where(Job.id == job_id).execute()
    node.start_agent(runner=DockerRunner(RunnerConfig(image=runner_image)))
    job = finished(job_id, timeout_s=120)
    assert job.job_state is JobState.FAILED
    assert "RAAS_MQTT_URL is reserved by the platform" in job.reason
    stdout = node.store.get_bytes(f"results/{job_id}/stdout.log").decode()
    assert "ARGV" not in stdout
