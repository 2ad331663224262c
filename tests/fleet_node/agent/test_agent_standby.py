"""Standby and wake on a real agent (simulated motor, real brokers, a scripted dispatcher): the
motor stops and the node reports ``standby``; an assignment reaching it anyway is refused with an
``error`` update (the dispatcher requeues the job); ``wake`` goes through a reset and the
self-test before ``idle``; a ``standby`` sent during a job applies once the node is idle."""

from __future__ import annotations

import time

import pytest

from gym_raas_mqtt import protocol
from gym_raas_mqtt.protocol import (JobAssignment, JobSource, JobState, MotorStatus, NodeCommand,
                                    NodeCommandKind, NodeStatus, SourceKind, TopicKind)
from tests.fleet_node.agent.agent_harness import Recorder, ScriptedDispatcher, git_repo, wait_for
from tests.fleet_node.agent.test_agent_jobs import node  # noqa: F401

pytestmark = pytest.mark.broker


def command(disp: ScriptedDispatcher, kind: NodeCommandKind) -> None:
    disp.rec.publish(protocol.topic(TopicKind.NODE_CMD, node=disp.node_id),
                     NodeCommand(kind, time.time(), reason="test").to_bytes())


def assignment(job_id: str, url: str) -> JobAssignment:
    return JobAssignment(job_id=job_id, owner="alice", execution=1, version=1,
                         source=JobSource(SourceKind.GIT, url=url), time_limit_s=30,
                         ts=time.time())


def test_standby_refuses_jobs_and_wake_passes_the_selftest(broker, node, tmp_path):  # noqa: F811
    states = Recorder(broker.admin, protocol.topic(TopicKind.NODE_STATE, node=node.node_id))
    selftests = Recorder(broker.admin, protocol.topic(TopicKind.NODE_SELFTEST, node=node.node_id))
    disp = ScriptedDispatcher(broker, node.node_id)
    try:
        agent = node.start_agent()
        wait_for(lambda: agent.status is NodeStatus.IDLE, 30, "idle after the first self-test")
        command(disp, NodeCommandKind.STANDBY)
        wait_for(lambda: agent.status is NodeStatus.STANDBY, what="standby")
        wait_for(lambda: node.motor.status is MotorStatus.ESTOP, what="the motor stopped")
        url = git_repo(tmp_path / "repo", {"run.py": "print('hi')\n"})
        disp.assign(assignment("job1", url))
        refusal = disp.next_update()
        assert (refusal.job_id, refusal.status) == ("job1", JobState.ERROR)
        assert refusal.details["reason"] == f"refused: node {node.node_id} is in standby"
        disp.reply(refusal, accepted=True)
        disp.assign(None)
        assert agent.runner.calls == [] and agent.status is NodeStatus.STANDBY
        tests_before = len(selftests.messages)
        command(disp, NodeCommandKind.WAKE)
        wait_for(lambda: agent.status is NodeStatus.IDLE, 30, "idle after the wake's self-test")
        seen = [m.state for m in states.states()]
        assert seen[-3:] == [NodeStatus.STANDBY, NodeStatus.RESETTING, NodeStatus.IDLE]
        assert len(selftests.messages) == tests_before + 1  # idle only after a self-test
        # Sent during a job, standby waits for the job (and its reset) to end.
        disp.assign(assignment("job2", git_repo(tmp_path / "r2", {
            "run.py": "import time\ntime.sleep(1.0)\n"})))
        disp.reply(disp.next_update(), accepted=True)
        wait_for(lambda: agent.runner.calls == ["job2"], what="running")
        command(disp, NodeCommandKind.STANDBY)
        time.sleep(0.3)
        assert agent.status is NodeStatus.BUSY
        final = disp.next_update()
        assert final.status is JobState.SUCCEEDED
        disp.reply(final, accepted=True)
        disp.assign(None)
        wait_for(lambda: agent.status is NodeStatus.STANDBY, 30, "standby after the job")
    finally:
        disp.close()
        states.close()
        selftests.close()
