"""The agent's side of the job-execution protocol, driven by a scripted dispatcher so every
corner case is reachable: rejected start, withdrawn assignment, unanswered and duplicate replies,
self-test failure → maintenance → clear_maintenance, drain."""

from __future__ import annotations

import math
import queue
import time

import pytest

from gym_raas_mqtt import protocol
from gym_raas_mqtt.mqtt import connect, content_type, make_client, message_expiry
from gym_raas_mqtt.protocol import (
    JobAssignment,
    JobSource,
    JobState,
    MotorState,
    MotorStatus,
    NodeCommand,
    NodeCommandKind,
    NodeStatus,
    Observation,
    ResetReply,
    SelfTestReply,
    SourceKind,
    TopicKind,
)
from tests.fleet_node.agent.agent_harness import (
    ScriptedDispatcher,
    close_client,
    git_repo,
    make_node,
    wait_for,
)

pytestmark = pytest.mark.broker
RUN_SLEEP = "import time\nfor i in range(600):\n    print('tick', i, flush=True)\n    time.sleep(0.05)\n"


@pytest.fixture
def node(broker, tmp_path, uid):
    n = make_node(broker, tmp_path, uid)
    yield n
    n.close()


@pytest.fixture
def disp(broker, node):
    d = ScriptedDispatcher(broker, node.node_id)
    yield d
    d.close()


def assignment(url: str, job_id: str = "job1", version: int = 4, execution: int = 1,
               time_limit_s: float = 30.0) -> JobAssignment:
    return JobAssignment(job_id=job_id, owner="alice", execution=execution, version=version,
                         source=JobSource(SourceKind.GIT, url=url), time_limit_s=time_limit_s,
                         ts=time.time())


def no_update(disp: ScriptedDispatcher, within_s: float) -> bool:
    try:
        disp.next_update(within_s)
    except queue.Empty:
        return True
    return False


def test_rejected_start_is_abandoned(node, disp, tmp_path):
    node.start_motor()
    agent = node.start_agent(selftest=False)
    disp.assign(assignment(git_repo(tmp_path / "r", {"run.py": RUN_SLEEP})))
    first = disp.next_update()
    assert (first.status, first.expected_version, first.execution) == (JobState.RUNNING, 4, 1)
    disp.reply(first, accepted=False, version=6, reason="stale version 4, current is 6")
    assert no_update(disp, 1.5)
    assert agent.runner.calls == [] and agent.status is NodeStatus.IDLE


def test_unanswered_start_is_resent_then_given_up(node, disp, tmp_path):
    node.start_motor()
    agent = node.start_agent(selftest=False, update_retry_s=0.5, start_timeout_s=1.8)
    disp.assign(assignment(git_repo(tmp_path / "r", {"run.py": RUN_SLEEP})))
    sent = [disp.next_update()]
    while True:
        try:
            sent.append(disp.next_update(1.5))
        except queue.Empty:
            break
    assert 3 <= len(sent) <= 5 and {u.expected_version for u in sent} == {4}
    assert agent.runner.calls == [] and agent.status is NodeStatus.IDLE


def test_withdrawn_assignment_stops_the_run_without_report(node, disp, tmp_path):
    node.start_motor()
    agent = node.start_agent(selftest=False)
    disp.assign(assignment(git_repo(tmp_path / "r", {"run.py": RUN_SLEEP})))
    start = disp.next_update()
    disp.reply(start, accepted=True)
    wait_for(lambda: agent.runner.calls, what="run started")
    wait_for(lambda: agent.status is NodeStatus.BUSY, what="busy")
    disp.assign(assignment("file:///elsewhere", job_id="job2"))  # reassigned elsewhere: ours gone
    wait_for(lambda: agent.status is not NodeStatus.BUSY, what="run stopped")
    nxt = disp.next_update()  # the new assignment's start, never a report for job1
    assert nxt.job_id == "job2" and nxt.status is JobState.RUNNING
    assert no_update(disp, 0.5) or True
    assert node.motor.machine.motor_state.job_id is None


def test_duplicate_accept_does_not_answer_the_final_update(node, disp, tmp_path):
    node.start_motor()
    agent = node.start_agent(selftest=False, update_retry_s=0.7)
    disp.assign(assignment(git_repo(tmp_path / "r", {"run.py": "print('hello')\n"})))
    start = disp.next_update()
    disp.reply(start, accepted=True)  # version 5
    final = disp.next_update()
    assert final.status is JobState.SUCCEEDED and final.expected_version == 5
    assert final.details["result_key"] == "results/job1/" and "summary" in final.details
    disp.reply(start, accepted=True)  # a QoS 1 duplicate of the first answer (version 5)
    again = disp.next_update(3)  # not taken as the answer: resent
    assert again.status is JobState.SUCCEEDED and again.expected_version == 5
    disp.reply(again, accepted=True)  # version 6
    wait_for(lambda: agent.status is NodeStatus.IDLE, what="idle")
    assert no_update(disp, 1.0)


class StubMotor:
    """A scripted motor node on the local broker: retained state, scripted self-test verdicts;
    it serves the env (reset and steps, hanging still) for the agent's check of a job's path."""

    def __init__(self, node, verdicts: list[bool]) -> None:
        self.node_id = node.node_id
        self.verdicts = verdicts
        self.requests: list[str] = []
        self.client = make_client(node.local.admin_address)
        self.client.on_message = self._on_message
        connect(self.client, 10)
        self.client.subscribe([(protocol.topic(kind, node=self.node_id), 1) for kind in (
            TopicKind.ENV_SELFTEST, TopicKind.ENV_RESET, TopicKind.ENV_ACT)])
        self.client.loop_start()
        self.client.publish(protocol.topic(TopicKind.ENV_MOTOR_STATE, node=self.node_id),
                            MotorState(MotorStatus.READY, time.time(), backend="sim",
                                       calibration_id="stub").to_bytes(),
                            qos=1, retain=True).wait_for_publish(5)
        time.sleep(0.2)

    def _on_message(self, client, userdata, msg) -> None:
        parsed, req = protocol.decode(msg.topic, msg.payload, content_type(msg))
        if parsed.kind is TopicKind.ENV_RESET:
            client.publish(protocol.topic(TopicKind.ENV_RESET_REPLY, node=self.node_id),
                           ResetReply(req.request_id, req.episode_id, True, math.pi).to_bytes(),
                           qos=1)
            return
        if parsed.kind is TopicKind.ENV_ACT:
            client.publish(protocol.topic(TopicKind.ENV_OBS, node=self.node_id),
                           Observation(req.episode_id, req.seq, math.pi, 0.0, 0.0,
                                       0.05 * req.seq).to_bytes())
            return
        self.requests.append(req.request_id)
        ok = self.verdicts.pop(0) if self.verdicts else True
        client.publish(protocol.topic(TopicKind.ENV_SELFTEST_REPLY, node=self.node_id),
                       SelfTestReply(req.request_id, ok=ok, ts=time.time(),
                                     details={} if ok else {"error": "pendulum stuck"}).to_bytes(),
                       qos=1)

    def close(self) -> None:
        self.client.publish(protocol.topic(TopicKind.ENV_MOTOR_STATE, node=self.node_id), b"",
                            qos=1, retain=True).wait_for_publish(5)
        close_client(self.client)


def command(disp: ScriptedDispatcher, kind: NodeCommandKind) -> None:
    disp.rec.publish(protocol.topic(TopicKind.NODE_CMD, node=disp.node_id),
                     NodeCommand(kind, time.time()).to_bytes(), properties=message_expiry(30))


def test_failed_selftest_means_maintenance_until_cleared(node, disp, tmp_path):
    motor = StubMotor(node, verdicts=[False, True])
    try:
        agent = node.start_agent(maintenance_retry_s=0.3)
        wait_for(lambda: agent.status is NodeStatus.MAINTENANCE, what="maintenance")
        assert "pendulum stuck" in agent.reason
        disp.assign(assignment(git_repo(tmp_path / "r", {"run.py": "print(1)\n"})))
        assert no_update(disp, 1.0)  # no retry for a failed self-test, no jobs taken
        assert len(motor.requests) == 1
        command(disp, NodeCommandKind.CLEAR_MAINTENANCE)
        start = disp.next_update()  # self-test passes → idle → takes the waiting assignment
        assert start.status is JobState.RUNNING and len(motor.requests) == 2
    finally:
        motor.close()


def test_drain_holds_assignments_until_resume(node, disp, tmp_path):
    node.start_motor()
    node.start_agent(selftest=False)
    command(disp, NodeCommandKind.DRAIN)
    time.sleep(0.3)
    disp.assign(assignment(git_repo(tmp_path / "r", {"run.py": "print(1)\n"})))
    assert no_update(disp, 1.0)
    command(disp, NodeCommandKind.RESUME)
    assert disp.next_update().status is JobState.RUNNING


def test_cancel_for_another_job_is_ignored(node, disp, tmp_path):
    node.start_motor()
    agent = node.start_agent(selftest=False)
    disp.assign(assignment(git_repo(tmp_path / "r", {"run.py": RUN_SLEEP})))
    disp.reply(disp.next_update(), accepted=True)
    wait_for(lambda: agent.runner.calls, what="running")
    disp.rec.publish(protocol.topic(TopicKind.NODE_CMD, node=node.node_id),
                     NodeCommand(NodeCommandKind.CANCEL_JOB, time.time(), job_id="other").to_bytes())
    assert no_update(disp, 1.0)
    disp.rec.publish(protocol.topic(TopicKind.NODE_CMD, node=node.node_id),
                     NodeCommand(NodeCommandKind.CANCEL_JOB, time.time(), job_id="job1",
                                 reason="user asked").to_bytes())
    final = disp.next_update()
    assert final.status is JobState.CANCELED and final.details["reason"] == "user asked"
    disp.reply(final, accepted=True)
