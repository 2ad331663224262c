"""Fleet health end to end: a real agent, motor node (sim, lockstep), dispatcher and brokers.
Self-test results and run hours reach the dispatcher's record, heartbeats keep "last seen"
moving, ``raas node send`` drains and resumes, and repeated platform errors put the node in
maintenance until an operator clears it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dispatcher import queue as Q
from dispatcher.models import Execution, Node, SelfTest
from gym_raas_mqtt import protocol
from gym_raas_mqtt.cli import main
from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.protocol import (JobAssignment, JobSource, JobState, NodeCommand,
                                    NodeCommandKind, NodeStatus, SourceKind, TopicKind)
from tests.fleet_node.agent.agent_harness import (ScriptedDispatcher, SubprocessRunner, git_repo,
                                                  wait_for)
from tests.fleet_node.agent.test_agent_jobs import (RUN_ENV, dispatcher, finished,  # noqa: F401
                                                    node, submit)

pytestmark = pytest.mark.broker


def send(broker, tmp_path: Path, node_id: str, command: str) -> None:
    """``raas node send NODE COMMAND`` as the operator (the broker's admin), unchanged CLI."""
    pw = tmp_path / "admin.pw"
    pw.write_text(broker.admin.password)
    assert main(["node", "send", node_id, command, "--url",
                 f"mqtt://{broker.host}:{broker.port}", "--username", broker.admin.username,
                 "--password-file", str(pw)]) == 0


def node_row(node_id: str) -> Node | None:
    return Node.get_or_none(Node.id == node_id)


def selftests(node_id: str) -> list[SelfTest]:
    return list(SelfTest.select().where(SelfTest.node == node_id)
                .order_by(SelfTest.at.desc(), SelfTest.id.desc()))


class FlakyRunner(SubprocessRunner):
    """Fails every run as the platform's fault (as a dead Docker engine would) until told."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = True

    def run_job(self, job_id, code_dir, env, socket_path, time_limit_s=None, on_output=None,
                cancel=None, args=()):
        if self.fail:
            self.calls.append(job_id)
            raise RaasError("the Docker engine went away")
        return super().run_job(job_id, code_dir, env, socket_path, time_limit_s, on_output,
                               cancel, args)


def test_selftests_and_run_hours_reach_the_fleet_record(dispatcher, node,  # noqa: F811
                                                        tmp_path):
    agent = node.start_agent()  # the self-test runs at start and after every job
    wait_for(lambda: agent.status is NodeStatus.IDLE, 30, "idle after the first self-test")
    first = wait_for(lambda: selftests(node.node_id), 10, "the first self-test recorded")[0]
    assert first.ok and first.reason is None and first.duration_s > 0
    assert 0 <= first.max_error_rad < 0.25 and 0 <= first.rms_error_rad <= first.max_error_rad
    assert first.details["samples"] > 0 and first.details["calibration_id"]
    assert node_row(node.node_id).run_seconds == 0
    job = finished(submit(dispatcher, git_repo(tmp_path / "repo", {"run.py": RUN_ENV})), 60)
    assert job.job_state is JobState.SUCCEEDED, job.reason
    tests = wait_for(lambda: (lambda t: t if len(t) == 2 else None)(selftests(node.node_id)),
                     30, "the self-test after the job")
    assert tests[0].at > tests[1].at == first.at  # newest first
    ex = Execution.get((Execution.job == job.id) & (Execution.number == 1))
    assert node_row(node.node_id).run_seconds == pytest.approx(ex.finished_at - ex.started_at)
    assert node_row(node.node_id).run_seconds > 0


def test_heartbeats_move_last_seen(dispatcher, node):  # noqa: F811
    agent = node.start_agent(selftest=False, heartbeat_s=0.2)
    wait_for(lambda: agent.status is NodeStatus.IDLE and node_row(node.node_id), what="idle")
    dispatcher.wait_idle()
    before = node_row(node.node_id).last_seen
    time.sleep(1.5)
    dispatcher.wait_idle()
    after = node_row(node.node_id).last_seen
    assert after - before >= 0.5 and node_row(node.node_id).state == "idle"


def test_drain_and_resume_with_raas_node_send(dispatcher, node, broker,  # noqa: F811
                                              tmp_path):
    agent = node.start_agent(selftest=False)
    wait_for(lambda: node_row(node.node_id) and agent.status is NodeStatus.IDLE, what="idle")
    send(broker, tmp_path, node.node_id, "drain")
    wait_for(lambda: node_row(node.node_id).draining, what="drain recorded by the dispatcher")
    job_id = submit(dispatcher, git_repo(tmp_path / "repo", {"run.py": "print('hi')\n"}))
    time.sleep(1.5)
    job = Q.get_job(job_id)
    assert (job.state, job.attempts, agent.runner.calls) == ("queued", 0, [])
    send(broker, tmp_path, node.node_id, "resume")
    assert finished(job_id).job_state is JobState.SUCCEEDED
    assert not node_row(node.node_id).draining


def test_platform_errors_mean_maintenance_until_cleared(dispatcher, node,  # noqa: F811
                                                         broker, tmp_path):
    runner = FlakyRunner()
    agent = node.start_agent(runner=runner, selftest=False)
    url = git_repo(tmp_path / "repo", {"run.py": "print('hi')\n"})
    job = finished(submit(dispatcher, url), 60)  # three attempts, all on this one node
    assert job.job_state is JobState.ERROR and "gave up after 3" in job.reason
    wait_for(lambda: agent.status is NodeStatus.MAINTENANCE, what="maintenance")
    want = ("3 consecutive job executions ended with a platform error (last: runner: the Docker "
            "engine went away)")
    assert agent.reason == want and node_row(node.node_id).maintenance_reason == want
    wait_for(lambda: node_row(node.node_id).state == "maintenance", what="the state recorded")
    waiting = submit(dispatcher, url)
    time.sleep(1.0)
    assert Q.get_job(waiting).state == "queued" and len(runner.calls) == 3
    runner.fail = False  # the engine is back; the operator clears the node
    send(broker, tmp_path, node.node_id, "clear_maintenance")
    assert finished(waiting, 30).job_state is JobState.SUCCEEDED
    assert node_row(node.node_id).maintenance_reason is None
    assert node_row(node.node_id).error_streak == 0


def test_a_maintenance_command_lets_the_running_job_finish(broker, node, tmp_path):  # noqa: F811
    """Sent while a job runs (or the node resets after it), ``maintenance`` holds the node once
    that is over; ``clear_maintenance`` releases it."""
    disp = ScriptedDispatcher(broker, node.node_id)
    try:
        agent = node.start_agent(selftest=False)
        url = git_repo(tmp_path / "repo", {"run.py": "import time\ntime.sleep(1.0)\n"})
        disp.assign(JobAssignment(job_id="job1", owner="alice", execution=1, version=1,
                                  source=JobSource(SourceKind.GIT, url=url), time_limit_s=30,
                                  ts=time.time()))
        disp.reply(disp.next_update(), accepted=True)
        wait_for(lambda: agent.runner.calls, what="running")
        cmd = protocol.topic(TopicKind.NODE_CMD, node=node.node_id)
        disp.rec.publish(cmd, NodeCommand(NodeCommandKind.MAINTENANCE, time.time(),
                                          reason="bench work").to_bytes())
        time.sleep(0.3)
        assert agent.status is NodeStatus.BUSY  # the job runs to its end
        final = disp.next_update()
        assert final.status is JobState.SUCCEEDED
        disp.reply(final, accepted=True)
        wait_for(lambda: agent.status is NodeStatus.MAINTENANCE, what="maintenance after it")
        assert agent.reason == "bench work"
        disp.assign(None)
        disp.rec.publish(cmd, NodeCommand(NodeCommandKind.CLEAR_MAINTENANCE,
                                          time.time()).to_bytes())
        wait_for(lambda: agent.status is NodeStatus.IDLE, what="idle once cleared")
    finally:
        disp.close()
