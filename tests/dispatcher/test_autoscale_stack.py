"""The autoscaler on a real stack: the real dispatcher (autoscaler on, short interval and
hold-off), real agents with simulated motors and self-tests, real brokers. Idle nodes go to
standby after the hold-off; a queue wakes them (they reset and pass their self-test) and they take
jobs; the queue empties and they go back to standby; no job is ever assigned to a node in standby
or on its way back from it."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from dispatcher import queue as Q
from dispatcher.autoscale.config import AutoscaleConfig
from dispatcher.autoscale.trace import trace_rows
from dispatcher.config import DispatcherConfig
from dispatcher.limits import QueueLimits
from dispatcher.models import Execution, FleetSample, NodeBoot, ScalingDecision, SelfTest
from dispatcher.service import Dispatcher
from gym_raas_mqtt import protocol
from gym_raas_mqtt.config import load
from gym_raas_mqtt.protocol import (JobSource, JobState, MotorStatus, NodeStatus, SourceKind,
                                    TopicKind)
from tests.fleet_node.agent.agent_harness import Recorder, git_repo, make_node, wait_for

pytestmark = pytest.mark.broker

HOLDOFF_S = 2.0
RUN_SHORT = "import time\ntime.sleep(1.0)\nprint('done')\n"


@pytest.fixture
def stack(broker, tmp_path, uid):
    """Three nodes (motor + agent, self-test on) and a dispatcher with the autoscaler on."""
    made = [make_node(broker, tmp_path, f"{uid}n{i}") for i in range(3)]
    ids = [n.node_id for n in made]
    states = Recorder(broker.admin, *(protocol.topic(TopicKind.NODE_STATE, node=i) for i in ids))
    cfg = load(DispatcherConfig, environ={}, database_url=f"sqlite:///{tmp_path / 'raas.db'}",
               mqtt_url=broker.address().url(), mqtt_username="dispatcher",
               mqtt_password_file=broker.secrets / "dispatcher", tick_s=0.1, session_expiry_s=0)
    scale = AutoscaleConfig(mode="on", policy="threshold", interval_s=0.25, holdoff_s=HOLDOFF_S,
                            min_online=1)
    d = Dispatcher(cfg, QueueLimits(accept_timeout_s=10.0), autoscale=scale)
    d.start()
    assert d.ready.wait(10)
    Q.ensure_owner("alice", max_running=5)
    try:
        for n in made:
            n.start_motor()
            n.start_agent()
        yield d, made, states
    finally:
        d.stop()
        for n in made:
            n.close()
        states.close()


def in_standby(made) -> list[str]:
    return [n.node_id for n in made if n.agent.status is NodeStatus.STANDBY]


def state_at(history: list[protocol.NodeState], t: float) -> protocol.NodeState | None:
    """The node's last state published at or before ``t`` (its ``ts``: the node's clock)."""
    before = [m for m in history if m.ts <= t]
    return before[-1] if before else None


def published(states: Recorder, ids: list[str]) -> dict[str, list[protocol.NodeState]]:
    """Each node's published states, in the order of their ``ts``."""
    out: dict[str, list[protocol.NodeState]] = {i: [] for i in ids}
    for name, payload, _, _ in list(states.messages):
        parsed, msg = protocol.decode(name, payload)
        if msg is not None:
            out[parsed.node].append(msg)
    return {i: sorted(h, key=lambda m: m.ts) for i, h in out.items()}


def test_standby_wake_and_never_assign_to_a_sleeping_node(stack, tmp_path):
    d, made, states = stack
    ids = [n.node_id for n in made]
    wait_for(lambda: all(n.agent.status is NodeStatus.IDLE for n in made), 60,
             "three idle nodes after their first self-test")
    # An empty queue: the nodes go to standby (down to RAAS_AUTOSCALE_MIN_ONLINE) after the
    # hold-off, their motors stopped.
    wait_for(lambda: len(in_standby(made)) == 2, 30, "two nodes in standby")
    first_sleep = (ScalingDecision.select().where(ScalingDecision.slept != "[]")
                   .order_by(ScalingDecision.t).first())
    for node_id in first_sleep.slept:  # idle for the hold-off before it was put in standby
        idle = state_at(published(states, ids)[node_id], first_sleep.t)
        assert idle.state is NodeStatus.IDLE and first_sleep.t - idle.ts >= HOLDOFF_S - 0.05
    asleep = in_standby(made)
    wait_for(lambda: all(n.motor.status is MotorStatus.ESTOP for n in made
                         if n.node_id in asleep), 5, "the standby nodes' motors stopped")
    # A queue builds: the standby nodes wake, reset, pass a self-test, and take jobs.
    woken_at = time.time()
    url = git_repo(tmp_path / "repo", {"run.py": RUN_SHORT})
    jobs = [Q.enqueue("alice", JobSource(SourceKind.GIT, url=url), 30,
                      limits=d.limits).id for _ in range(8)]
    wait_for(lambda: all(Q.get_job(j).job_state.terminal for j in jobs), 120, "every job done")
    assert all(Q.get_job(j).job_state is JobState.SUCCEEDED for j in jobs)
    ran_on = {e.node_id for e in Execution.select().where(Execution.job.in_(jobs))}
    assert set(asleep) <= ran_on, "the woken nodes took jobs"
    for node_id in asleep:
        passed = SelfTest.select().where((SelfTest.node == node_id) & (SelfTest.at > woken_at)
                                         & SelfTest.ok)
        assert passed.count() >= 1
        assert NodeBoot.select().where((NodeBoot.node_id == node_id)
                                       & (NodeBoot.cause == "wake")).count() >= 1
    # The queue is empty again: back to standby after the hold-off.
    wait_for(lambda: len(in_standby(made)) == 2, 30, "two nodes back in standby")
    # Never assigned to a node in standby or waking: at every execution's assignment, its node's
    # last published state was idle (a woken node publishes idle only after its self-test).
    per_node = published(states, ids)
    executions = list(Execution.select().where(Execution.job.in_(jobs)))
    assert executions
    for ex in executions:
        st = state_at(per_node[ex.node_id], ex.assigned_at)
        assert st is not None and st.state is NodeStatus.IDLE, (ex.node_id, ex.assigned_at, st)
        assert "standby" not in (ex.reason or "")
    # The panel's samples saw both the standby nodes and the busy ones.
    samples = list(FleetSample.select())
    assert max(s.standby for s in samples) == 2 and max(s.busy for s in samples) >= 2
    assert max(s.arrivals for s in samples) >= 1
    # The trace of the run: the jobs as arrivals with their run times, the wakes as boots.
    rows = trace_rows(datetime.fromtimestamp(woken_at - 1, timezone.utc),
                      datetime.now(timezone.utc))
    arrivals = {r.job_id: r for r in rows if r.event == "arrival"}
    assert set(arrivals) == set(jobs)
    for ex in executions:
        if ex.state == "succeeded":
            assert arrivals[ex.job_id].duration_s == pytest.approx(ex.finished_at - ex.started_at)
    woke = {r.node_id for r in rows if r.event == "boot" and r.detail == "wake"}
    assert set(asleep) <= woke
