"""Failover end to end: an agent SIGKILLed mid-job → its will → the dispatcher requeues the job →
it completes exactly once on the other node; the killed node comes back clean.

Real parts throughout: central + two node-local Mosquittos, the dispatcher, two motor nodes (sim,
lockstep), the agents (the first as a ``raas node agent`` process) and Docker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from broker_config.dynsec import DynSec
from dispatcher import queue as Q
from fleet_node.runner import DockerRunner, RunnerConfig
from gym_raas_mqtt import results
from gym_raas_mqtt.protocol import JobSource, JobState, SourceKind
from tests.fleet_node.agent.agent_harness import git_repo, make_node, wait_for
from tests.fleet_node.agent.test_agent_jobs import dispatcher, finished  # noqa: F401

pytestmark = [pytest.mark.docker, pytest.mark.broker, pytest.mark.e2e]

# Slow enough (≈ 3 s of wall time) to be killed mid-run; says where it ran.
RUN_SLOW_ENV = """\
import os, time
import gymnasium as gym
import gym_raas_mqtt

env = gym.make("RaasPendulum-v0")
env.reset(seed=2)
for k in range(40):
    env.step([0.2])
    time.sleep(0.075)
print("finished on", os.environ["RAAS_NODE_ID"])
env.close()
"""


@pytest.fixture
def nodes(broker, tmp_path, uid):
    made = [make_node(broker, tmp_path, f"{uid}a"), make_node(broker, tmp_path, f"{uid}b")]
    for n in made:
        n.start_motor()
    yield made
    for n in made:
        n.close()


def test_sigkill_mid_job_requeues_and_completes_once(dispatcher, nodes, docker,  # noqa: F811
                                                      runner_image, tmp_path):
    a, b = nodes
    env = a.agent_env(RAAS_AGENT_SELFTEST="1", RAAS_RUNNER_IMAGE=runner_image)
    env.pop("DOCKER_HOST")
    if "DOCKER_HOST" in os.environ:
        env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    logfile = open(tmp_path / "agent-a.log", "ab")
    cmd = [sys.executable, "-m", "gym_raas_mqtt.cli", "-v", "node", "agent"]
    proc = subprocess.Popen(cmd, env=env, stdout=logfile, stderr=logfile)
    try:
        wait_for(lambda: dispatcher.nodes.get(a.node_id) and
                 dispatcher.nodes[a.node_id].state and
                 dispatcher.nodes[a.node_id].state.value == "idle", timeout_s=30,
                 what="node a idle")
        url = git_repo(tmp_path / "repo", {"run.py": RUN_SLOW_ENV})
        job_id = Q.enqueue("alice", JobSource(SourceKind.GIT, url=url), 60.0,
                           limits=dispatcher.limits).id
        wait_for(lambda: Q.get_job(job_id).job_state is JobState.RUNNING, timeout_s=30,
                 what="running on a")
        assert Q.get_job(job_id).node_id == a.node_id
        wait_for(lambda: docker.containers.list(filters={"label": f"raas.job={job_id}"}),
                 timeout_s=30, what="a's container")
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        killed_at = time.monotonic()

        # The other node takes over once a's will (2 s delay) and the dispatcher's grace passed.
        b.start_agent(runner=DockerRunner(RunnerConfig(image=runner_image)))
        job = finished(job_id, timeout_s=90)
        assert job.job_state is JobState.SUCCEEDED, job.reason
        assert job.attempts == 2 and job.node_id == b.node_id
        assert time.monotonic() - killed_at >= 2.0  # not before the will delay
        events = [(e.execution, e.from_state, e.to_state) for e in Q.events(job_id)]
        assert (1, "running", "error") in events and (2, "running", "succeeded") in events
        assert [e for e in events if e[2] == "succeeded"] == [(2, "running", "succeeded")]
        summary = results.load_summary(a.store, job_id=job_id)
        assert summary["node_id"] == b.node_id and summary["execution"] == 2
        assert f"finished on {b.node_id}" in a.store.get_bytes(
            f"results/{job_id}/stdout.log").decode()

        # a comes back: it cleans up what the crash left (container, job account), takes
        # nothing old, and the job's record stays as it is.
        proc = subprocess.Popen(cmd, env=env, stdout=logfile, stderr=logfile)
        wait_for(lambda: dispatcher.nodes[a.node_id].state.value == "idle"
                 and dispatcher.nodes[a.node_id].session >= 2, timeout_s=30, what="a back idle")
        assert not docker.containers.list(all=True, filters={"label": f"raas.node={a.node_id}"})
        with DynSec(a.local.admin_address) as ds:
            assert not [c for c in ds.list_clients() if c.startswith("job-")]
        time.sleep(1.0)
        job = Q.get_job(job_id)
        assert (job.job_state, job.attempts, job.node_id) == (JobState.SUCCEEDED, 2, b.node_id)
    except AssertionError as e:
        raise AssertionError(f"{e}\nagent a log:\n{(tmp_path / 'agent-a.log').read_text()[-4000:]}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        logfile.close()
