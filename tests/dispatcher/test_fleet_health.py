"""Fleet health through the real dispatcher on a real Mosquitto with scripted nodes: run hours
(exactly once, across restarts), self-test history, heartbeats, drain / resume (the operator's
``raas node send`` and the dashboard's row), maintenance after consecutive platform errors, and
where a requeued job waits."""

from __future__ import annotations

import time

import pytest

from dispatcher import nodes
from dispatcher import queue as Q
from dispatcher.models import Node, SelfTest
from dispatcher.service import Dispatcher
from dispatcher.waits import wait_note
from dispatcher_fakes import LIMITS, Clock, FakeNode, Watcher, settings, wait_until
from gym_raas_mqtt import protocol
from gym_raas_mqtt.cli import main
from gym_raas_mqtt.protocol import JobState, NodeCommandKind, NodeStatus, TopicKind

pytestmark = pytest.mark.broker


def row(node: FakeNode) -> Node:
    return Node.get_by_id(node.node_id)


def send_cli(env, tmp_path, node_id: str, command: str) -> None:
    """``raas node send NODE COMMAND`` as the operator (the broker's admin), unchanged CLI."""
    pw = tmp_path / "admin.pw"
    pw.write_text(env.broker.admin.password)
    assert main(["node", "send", node_id, command, "--url", f"mqtt://127.0.0.1:{env.broker.port}",
                 "--username", "admin", "--password-file", str(pw)]) == 0


def commands(node: FakeNode, within_s: float = 0.3) -> list[protocol.NodeCommand]:
    """Every command the node received until none came for ``within_s``."""
    out = []
    while True:
        try:
            out.append(node.commands.get(timeout=within_s))
        except Exception:  # queue.Empty
            return out


def publish(node: FakeNode, kind: TopicKind, msg: protocol.Message) -> None:
    node.client.publish(protocol.topic(kind, node=node.node_id), msg.to_bytes(),
                        qos=protocol.TOPICS[kind].qos).wait_for_publish(2)


def run_for(env, node: FakeNode, seconds: float, status: JobState = JobState.SUCCEEDED,
            **details) -> str:
    """The node takes its next assignment and ends it ``status`` after ``seconds`` of the
    dispatcher's clock; returns the job id."""
    a = node.assignment()
    ok, r = node.update(a.job_id, a.execution, JobState.RUNNING, a.version)
    assert ok, r
    env.clock.advance(seconds)
    ok, r = node.update(a.job_id, a.execution, status, r.version, **details)
    assert ok, r
    return a.job_id


# ------------------------------------------------------------------------------------ run hours
def test_run_seconds_accumulate_exactly_once_per_execution(env):
    a = env.node("a")
    env.submit("alice")
    jid = run_for(env, a, 12.0)
    assert row(a).run_seconds == pytest.approx(12.0)
    ok, _ = a.update(jid, 1, JobState.SUCCEEDED, 2)  # a duplicate final update
    assert ok and row(a).run_seconds == pytest.approx(12.0)
    env.submit("bob")
    run_for(env, a, 5.0, JobState.ERROR, reason="docker died")  # platform errors count too
    assert row(a).run_seconds == pytest.approx(17.0)
    env.submit("carol")
    a.update(a.assignment().job_id, 1, JobState.FAILED, 1, reason="bad ref")  # never ran
    assert row(a).run_seconds == pytest.approx(17.0)


@pytest.mark.parametrize("env", ["postgresql"], indirect=True)
def test_run_seconds_on_postgresql(env):
    a = env.node("a")
    env.submit("alice")
    run_for(env, a, 7.5)
    assert row(a).run_seconds == pytest.approx(7.5)


def test_run_seconds_exactly_once_across_dispatcher_restarts(mini_broker, tmp_path, uid):
    """The final update arrives while the dispatcher is down (its session keeps it): counted once
    by the next dispatcher; resends and further restarts add nothing."""
    clock = Clock()
    cfg = settings(mini_broker, f"sqlite:///{tmp_path / 'raas.db'}", uid)
    d = Dispatcher(cfg, LIMITS, clock=clock)
    d.start()
    assert d.ready.wait(5)
    a = FakeNode(mini_broker.admin, f"{uid}-a").start()
    try:
        wait_until(lambda: a.node_id in d.nodes)
        Q.ensure_owner("alice")
        Q.enqueue("alice", protocol.JobSource(protocol.SourceKind.GIT, url="https://h/r.git"), 10,
                  limits=LIMITS, now=clock())
        got = a.assignment()
        ok, r = a.update(got.job_id, 1, JobState.RUNNING, got.version)
        assert ok
        d.stop()
        clock.advance(9.0)
        a.send(got.job_id, 1, JobState.SUCCEEDED, r.version, result_key="res/x")
        for _ in range(2):  # the update waiting in its session, then a plain restart
            d = Dispatcher(cfg, LIMITS, clock=clock)
            d.start()
            assert d.ready.wait(5)
            wait_until(lambda: Q.get_job(got.job_id).state == "succeeded")
            a.send(got.job_id, 1, JobState.SUCCEEDED, r.version, result_key="res/x")  # resend
            assert a.reply()[0]
            d.wait_idle()
            assert Node.get_by_id(a.node_id).run_seconds == pytest.approx(9.0)
            d.stop()
    finally:
        a.close()


# ------------------------------------------------------------------------- self-tests, last seen
def test_selftests_are_recorded_with_their_residual(env):
    a = env.node("a")
    for i, ok in enumerate((True, False)):
        publish(a, TopicKind.NODE_SELFTEST, protocol.NodeSelfTest(
            ok=ok, ts=100.0 + i, duration_s=3.5 + i, max_error_rad=0.02 * (i + 1),
            rms_error_rad=0.01, reason=None if ok else "pendulum stuck",
            details={"samples": 40}))
    wait_until(lambda: SelfTest.select().where(SelfTest.node == a.node_id).count() == 2)
    tests = list(SelfTest.select().where(SelfTest.node == a.node_id).order_by(SelfTest.at.desc()))
    assert [(t.ok, t.at, t.duration_s, t.max_error_rad, t.reason) for t in tests] == [
        (False, 101.0, 4.5, 0.04, "pendulum stuck"), (True, 100.0, 3.5, 0.02, None)]
    assert tests[0].rms_error_rad == 0.01 and tests[0].details == {"samples": 40}
    # a node the dispatcher has never seen: nothing recorded, nothing broken
    a.client.publish(protocol.topic(TopicKind.NODE_SELFTEST, node="never-announced"),
                     protocol.NodeSelfTest(ok=True, ts=1, duration_s=1).to_bytes(),
                     qos=1).wait_for_publish(2)
    env.dispatcher.wait_idle()
    assert SelfTest.select().where(SelfTest.node == "never-announced").count() == 0
    assert env.dispatcher.connected.is_set()


def test_heartbeats_keep_last_seen_fresh(env):
    a = env.node("a")
    env.dispatcher.wait_idle()
    first = row(a).last_seen
    env.clock.advance(10)
    publish(a, TopicKind.NODE_HEARTBEAT, protocol.NodeHeartbeat(session=1, ts=time.time()))
    wait_until(lambda: row(a).last_seen == first + 10)
    env.clock.advance(10)
    publish(a, TopicKind.NODE_HEARTBEAT, protocol.NodeHeartbeat(session=0, ts=time.time()))
    env.dispatcher.wait_idle()  # another session's (a late one): not this connection's
    assert row(a).last_seen == first + 10
    publish(a, TopicKind.NODE_HEARTBEAT, protocol.NodeHeartbeat(session=1, ts=time.time()))
    wait_until(lambda: row(a).last_seen == first + 20)


# ------------------------------------------------------------------------------- drain / resume
def test_drain_by_command_finishes_the_job_and_assigns_nothing_while_others_get_jobs(env,
                                                                                      tmp_path):
    a = env.node("a")
    first = env.submit("alice")
    got = a.assignment()
    ok, r = a.update(got.job_id, 1, JobState.RUNNING, got.version)
    a.set_state(NodeStatus.BUSY, first)
    send_cli(env, tmp_path, a.node_id, "drain")
    wait_until(lambda: row(a).draining)
    assert a.update(first, 1, JobState.SUCCEEDED, r.version)[0]  # its job runs to its end
    a.set_state(NodeStatus.IDLE)
    b = env.node("b")
    jobs = [env.submit(owner) for owner in ("bob", "carol")]
    assert b.assignment().job_id == jobs[0]  # another node gets jobs...
    time.sleep(0.5)
    assert a.next.empty() or a.next.get() is None  # ...the draining one none (only its clear)
    assert a.next.empty() and Q.get_job(jobs[1]).state == "queued"
    # the operator's command reached the node itself; the dispatcher sent no second one
    assert [c.command for c in commands(a)] == [NodeCommandKind.DRAIN]
    send_cli(env, tmp_path, a.node_id, "resume")
    assert a.assignment().job_id == jobs[1]
    assert not row(a).draining


def test_drain_from_the_dashboards_row_reaches_the_node(env):
    a, b = env.node("a"), env.node("b")
    env.dispatcher.wait_idle()
    assert nodes.set_draining(a.node_id, True)  # what the dashboard's button does
    cmd = a.commands.get(timeout=5)  # the dispatcher tells the node within a tick
    assert cmd.command is NodeCommandKind.DRAIN and env.dispatcher.health.draining == {a.node_id}
    jobs = [env.submit(owner) for owner in ("alice", "bob")]
    assert b.assignment().job_id == jobs[0]
    time.sleep(0.3)
    assert a.next.empty()
    assert nodes.set_draining(a.node_id, False)
    assert a.commands.get(timeout=5).command is NodeCommandKind.RESUME
    assert a.assignment().job_id == jobs[1]
    assert commands(a) == []  # exactly one each; its own commands came back and were ignored


# --------------------------------------------------------------------------------- maintenance
def test_three_platform_errors_in_a_row_mean_maintenance_until_cleared(env, tmp_path):
    a = env.node("a")
    jid = env.submit("alice")
    for attempt in (1, 2, 3):  # the only node: the requeued job comes back to it
        run_for(env, a, 1.0, JobState.ERROR, reason=f"docker died #{attempt}")
    assert Q.get_job(jid).state == "error"
    cmd = a.commands.get(timeout=5)
    assert cmd.command is NodeCommandKind.MAINTENANCE
    assert cmd.reason == ("3 consecutive job executions ended with a platform error "
                          "(last: docker died #3)")
    assert row(a).maintenance_reason == cmd.reason and row(a).error_streak == 3
    a.cleared()
    later = env.submit("bob")
    time.sleep(0.5)
    assert a.next.empty()  # reports idle (a scripted node does not obey), gets nothing
    b = env.node("b")
    assert b.assignment().job_id == later
    send_cli(env, tmp_path, a.node_id, "clear_maintenance")
    wait_until(lambda: row(a).maintenance_reason is None)
    assert row(a).error_streak == 0
    again = env.submit("carol")
    assert a.assignment().job_id == again


def test_a_success_resets_the_error_count(env):
    a = env.node("a")
    env.submit("u1")  # the only node: each requeued attempt comes back to it
    for status in (JobState.ERROR, JobState.ERROR, JobState.SUCCEEDED):
        run_for(env, a, 1.0, status, reason="boom")
    env.submit("u2")
    for status in (JobState.ERROR, JobState.ERROR):
        run_for(env, a, 1.0, status, reason="boom")
    env.dispatcher.wait_idle()
    assert row(a).error_streak == 2 and row(a).maintenance_reason is None
    assert commands(a) == []


# ---------------------------------------------------------------------- where a requeued job waits
def test_requeued_job_waits_for_another_node_and_says_where(env):
    a, b = env.node("a"), env.node("b")
    watch = Watcher(env.broker.admin, protocol.topic_filter(TopicKind.JOB_STATE))
    jobs = [env.submit(owner) for owner in ("alice", "bob")]
    got = {n.node_id: n.assignment() for n in (a, b)}
    ga, gb = got[a.node_id], got[b.node_id]
    assert b.update(gb.job_id, 1, JobState.RUNNING, gb.version)[0]
    b.set_state(NodeStatus.BUSY, gb.job_id)
    ok, r = a.update(ga.job_id, 1, JobState.RUNNING, ga.version)
    a.set_state(NodeStatus.RESETTING)  # resets after the job, as an agent does
    a.update(ga.job_id, 1, JobState.ERROR, r.version, reason="docker died")
    a.cleared()
    base = f"requeued after an error on {a.node_id} (docker died)"
    want = f"{base}; waiting for another node ({b.node_id})"
    wait_until(lambda: Q.get_job(ga.job_id).reason == want)
    watch.wait_for(lambda t, p, r: protocol.JobStatus.from_bytes(p).reason == want)
    a.set_state(NodeStatus.IDLE)  # free, but the job failed there: it waits for b
    want = f"{base}; waiting for another node: only {a.node_id} is free"
    wait_until(lambda: Q.get_job(ga.job_id).reason == want)
    time.sleep(0.3)
    assert a.next.empty() and Q.get_job(ga.job_id).state == "queued"
    assert b.update(gb.job_id, 1, JobState.SUCCEEDED, 2)[0]
    b.set_state(NodeStatus.IDLE)
    again = b.assignment()
    assert (again.job_id, again.execution) == (ga.job_id, 2)
    assert Q.get_job(ga.job_id).reason == f"attempt 2 on {b.node_id} after an error on {a.node_id}"
    assert set(jobs) == {ga.job_id, gb.job_id}
    watch.close()


def test_requeued_job_returns_to_its_node_when_no_other_can_take_it(env):
    a = env.node("a")
    jid = env.submit()
    got = a.assignment()
    ok, r = a.update(jid, 1, JobState.RUNNING, got.version)
    a.set_state(NodeStatus.RESETTING)
    a.update(jid, 1, JobState.ERROR, r.version, reason="motor lost")
    want = (f"requeued after an error on {a.node_id} (motor lost); waiting for {a.node_id} "
            "(no other node can take it)")
    wait_until(lambda: Q.get_job(jid).reason == want)
    a.set_state(NodeStatus.IDLE)
    assert a.assignment().execution == 2  # never starved


def test_wait_notes():
    assert wait_note({"p3"}, [], []) == "waiting for a node (none is available)"
    assert wait_note({"p3"}, ["p3", "p1", "p2"], ["p3"]) == (
        "waiting for another node: only p3 is free")
    assert wait_note({"p3"}, ["p3", "p1"], ["p3", "p1"]) == "waiting for another node (p1)"
    assert wait_note(set(), ["a", "b", "c", "d"], []) == "waiting for another node (a, b, c, …)"
