"""The dispatcher service on a real Mosquitto with scripted fake nodes (and, once, as a process)."""

from __future__ import annotations

import os
import queue as queue_mod
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dispatcher import queue as Q
from dispatcher.models import JobEvent, Node, init_db
from dispatcher_fakes import LIMITS, SRC, FakeNode, Watcher, wait_until
from gym_raas_mqtt import protocol
from gym_raas_mqtt.protocol import JobState, NodeStatus, TopicKind

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]


def events(job_id: str) -> list[tuple[str | None, str]]:
    return [(e.from_state, e.to_state) for e in Q.events(job_id)]


def retained(broker, topic: str, timeout_s: float = 2.0) -> bytes:
    w = Watcher(broker.admin, topic)
    try:
        return w.wait_for(lambda t, p, r: r, timeout_s)[1]
    finally:
        w.close()


def test_assignment_run_succeed(env):
    watch = Watcher(env.broker.admin, protocol.topic_filter(TopicKind.JOB_STATE))
    jid = env.submit()
    # The retained state is the latest one: a job assigned before the dispatcher read its submission
    # skips "queued". Bring the node only once "queued" went out, so every state is published.
    _, payload, _ = watch.wait_for(lambda t, p, r: jid in t)
    states = [protocol.JobStatus.from_bytes(payload).state.value]
    node = env.node("a")
    a = node.assignment()
    assert (a.job_id, a.owner, a.execution, a.version, a.source, a.time_limit_s) == (
        jid, "alice", 1, 1, SRC, 10)
    ok, r = node.update(jid, 1, JobState.RUNNING, 1)
    assert ok and r.version == 2 and r.accepted
    node.set_state(NodeStatus.BUSY, jid)
    ok, r = node.update(jid, 1, JobState.SUCCEEDED, 2, result_key="res/x", commit_sha="abc")
    assert ok and r.version == 3
    node.cleared()  # jobs/next withdrawn once the execution ended
    while states[-1] != "succeeded":
        _, payload, _ = watch.wait_for(lambda t, p, r: jid in t)
        states.append(protocol.JobStatus.from_bytes(payload).state.value)
    assert states == ["queued", "assigned", "running", "succeeded"]
    final = protocol.JobStatus.from_bytes(retained(env.broker, protocol.topic(
        TopicKind.JOB_STATE, owner="alice", job=jid)))
    assert (final.state, final.node_id, final.result_key, final.execution) == (
        JobState.SUCCEEDED, node.node_id, "res/x", 1)
    birth = protocol.DispatcherState.from_bytes(
        retained(env.broker, protocol.topic(TopicKind.DISPATCHER_STATE)))
    assert birth.online and birth.ts == env.dispatcher._birth_ts
    env.dispatcher.wait_idle()
    row = Node.get_by_id(node.node_id)  # the fleet view the dashboard reads
    assert (row.state, row.session, row.current_job) == ("busy", 1, jid)
    watch.close()


@pytest.mark.parametrize("env", ["postgresql"], indirect=True)
def test_assignment_run_succeed_on_postgresql(env):
    node = env.node("a")
    jid = env.submit()
    node.run(node.assignment(), result_key="res/pg")
    node.cleared()
    job = Q.get_job(jid)
    assert (job.state, job.result_key, job.node_id) == ("succeeded", "res/pg", node.node_id)
    assert [to for _, to in events(jid)] == ["queued", "assigned", "running", "succeeded"]


def test_duplicate_and_stale_updates_change_nothing(env):
    node = env.node("a")
    jid = env.submit()
    node.assignment()
    assert node.update(jid, 1, JobState.RUNNING, 1)[0]
    n_events = len(events(jid))
    ok, r = node.update(jid, 1, JobState.RUNNING, 1)  # duplicate (e.g. paho resend)
    assert ok and r.version == 2
    ok, r = node.update(jid, 1, JobState.SUCCEEDED, 1)  # stale version
    assert not ok and r.version == 2 and "stale" in r.reason
    assert len(events(jid)) == n_events and Q.get_job(jid).state == "running"
    assert node.update(jid, 1, JobState.SUCCEEDED, 2)[0]
    ok, r = node.update(jid, 1, JobState.SUCCEEDED, 2)  # duplicate terminal
    assert ok and r.version == 3
    ok, r = node.update(jid, 1, JobState.FAILED, 3)  # after terminal
    assert not ok and "already succeeded" in r.reason
    assert events(jid).count(("running", "succeeded")) == 1


def test_malformed_payloads_are_dropped(env):
    node = env.node("a")
    c = node.client
    c.publish(protocol.topic(TopicKind.NODE_STATE, node=node.node_id) + "x", b"{", qos=1)
    c.publish(protocol.topic(TopicKind.NODE_JOB_UPDATE, node=node.node_id, job="j1"),
              b'{"job_id": 5}', qos=1).wait_for_publish(2)
    c.publish(protocol.topic(TopicKind.NODE_META, node=node.node_id), b"\xff\xfe",
              qos=1).wait_for_publish(2)
    jid = env.submit()
    assert node.assignment().job_id == jid  # still dispatching
    assert env.dispatcher.stats["dropped"] >= 2


def test_no_acceptance_reassigns_to_another_node(env):
    a = env.node("a")
    jid = env.submit()
    assert a.assignment().job_id == jid
    b = env.node("b")
    env.advance(LIMITS.accept_timeout_s + 0.1)
    a.cleared()
    got = b.assignment()
    assert (got.job_id, got.execution, got.version) == (jid, 2, 1)
    assert a.next.empty()  # a, where it errored, did not get it again
    b.run(got)
    job = Q.get_job(jid)
    assert (job.state, job.attempts, job.node_id) == ("succeeded", 2, b.node_id)
    assert Q.get_execution(jid, 1).state == "error"


def test_node_lost_mid_job_requeued_after_grace_and_completes_once(env):
    a = env.node("a")
    jid = env.submit()
    first = a.assignment()
    assert a.update(jid, 1, JobState.RUNNING, 1)[0]
    a.set_state(NodeStatus.BUSY, jid)
    a.crash()  # will: lost, session 1
    deadline = time.monotonic() + 5
    while Node.get_by_id(a.node_id).state != "lost":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    b = env.node("b")
    env.advance(env.config.lost_grace_s - 1)
    assert b.next.empty() and Q.get_job(jid).state == "running"  # still within grace
    env.advance(2)
    got = b.assignment()
    assert (got.job_id, got.execution) == (jid, 2)
    # the zombie comes back and reports success for the old execution: rejected
    zombie = env.node("a", session=2)
    zombie.set_state(NodeStatus.BUSY, jid)
    ok, r = zombie.update(jid, 1, JobState.SUCCEEDED, 2)
    assert not ok and "already error" in r.reason
    b.run(got, result_key="res/b")
    job = Q.get_job(jid)
    assert (job.state, job.node_id, job.result_key) == ("succeeded", b.node_id, "res/b")
    assert [to for _, to in events(jid)].count("succeeded") == 1
    assert first.execution == 1


def test_late_will_with_old_session_is_ignored(env):
    a = env.node("a", session=7)
    late = protocol.NodeState(state=NodeStatus.LOST, session=6, ts=time.time())
    a.client.publish(protocol.topic(TopicKind.NODE_STATE, node=a.node_id), late.to_bytes(),
                     qos=1, retain=True).wait_for_publish(2)
    wait_until(lambda: env.dispatcher.stats["stale_states"] == 1)  # seen and ignored
    assert env.dispatcher.nodes[a.node_id].suspect_since is None
    jid = env.submit()
    assert a.assignment().job_id == jid  # still trusted as idle
    current = protocol.NodeState(state=NodeStatus.LOST, session=7, ts=time.time())
    a.client.publish(protocol.topic(TopicKind.NODE_STATE, node=a.node_id), current.to_bytes(),
                     qos=1, retain=True).wait_for_publish(2)
    wait_until(lambda: env.dispatcher.nodes[a.node_id].suspect_since is not None)  # counts


def test_time_limit_enforced_with_cancel_command(env):
    a = env.node("a")
    jid = env.submit(time_limit_s=3)
    got = a.assignment()
    assert a.update(jid, 1, JobState.RUNNING, got.version)[0]
    env.advance(3 + LIMITS.time_limit_grace_s + 0.1)
    cmd = a.commands.get(timeout=5)
    assert (cmd.command, cmd.job_id) == (protocol.NodeCommandKind.CANCEL_JOB, jid)
    a.cleared()
    assert Q.get_job(jid).state == "timed_out"
    ok, r = a.update(jid, 1, JobState.TIMED_OUT, 2, result_key="res/t")  # node's own report
    assert ok and Q.get_job(jid).result_key == "res/t"


def test_cancel_from_dashboard_reaches_running_node(env):
    a = env.node("a")
    jid = env.submit()
    got = a.assignment()
    assert a.update(jid, 1, JobState.RUNNING, got.version)[0]
    Q.cancel(jid, "alice", limits=env.dispatcher.limits, now=env.clock())  # another process
    cmd = a.commands.get(timeout=5)
    assert (cmd.command, cmd.job_id) == (protocol.NodeCommandKind.CANCEL_JOB, jid)
    ok, _ = a.update(jid, 1, JobState.CANCELED, 2)
    assert ok and Q.get_job(jid).state == "canceled"
    a.cleared()


def test_fair_queue_across_nodes(env):
    nodes = [env.node(f"n{i}") for i in range(3)]
    ids = [env.submit(owner) for owner in ("alice", "alice", "bob", "carol")]
    got = {}
    for n in nodes:
        a = n.assignment()
        got[a.job_id] = n
    assert set(got) == {ids[0], ids[2], ids[3]}  # alice's second waits for her first
    got[ids[0]].run(Q.assignment(Q.get_job(ids[0]), Q.get_execution(ids[0], 1)))
    assert got[ids[0]].assignment().job_id == ids[1]


def _proc_env(broker, db_url: str, uid: str) -> dict[str, str]:
    return {**os.environ, "RAAS_DATABASE_URL": db_url, "RAAS_CENTRAL_MQTT_URL": broker.url,
            "RAAS_DISPATCHER_MQTT_USERNAME": "", "RAAS_DISPATCHER_CLIENT_ID": f"disp-{uid}",
            "RAAS_DISPATCHER_TICK_S": "0.05", "PYTHONPATH": str(ROOT)}


def _start_proc(env_vars: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "dispatcher"], env=env_vars, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)


def test_sigkill_mid_job_then_restart_completes_exactly_once(mini_broker, tmp_path, uid):
    db_url = f"sqlite:///{tmp_path / 'raas.db'}"
    env_vars = _proc_env(mini_broker, db_url, uid)
    state_topic = protocol.topic(TopicKind.DISPATCHER_STATE)
    watch = Watcher(mini_broker.admin, state_topic)
    proc = _start_proc(env_vars, tmp_path / "d.log")
    node = FakeNode(mini_broker.admin, f"{uid}-a").start()
    try:
        birth1 = protocol.DispatcherState.from_bytes(watch.wait_for(lambda t, p, r: p)[1])
        assert birth1.online
        init_db(db_url)
        Q.ensure_owner("alice")
        jid = Q.enqueue("alice", SRC, 30, limits=LIMITS).id
        a = node.assignment(10)
        assert node.update(jid, 1, JobState.RUNNING, a.version)[0]
        node.set_state(NodeStatus.BUSY, jid)

        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        death = protocol.DispatcherState.from_bytes(watch.wait_for(lambda t, p, r: p)[1])
        assert not death.online and death.ts == birth1.ts  # the will, same ts as the birth
        node.send(jid, 1, JobState.SUCCEEDED, 2, result_key="res/1")  # nobody is listening
        with pytest.raises(queue_mod.Empty):
            node.reply(0.3)

        proc = _start_proc(env_vars, tmp_path / "d.log")
        birth2 = protocol.DispatcherState.from_bytes(watch.wait_for(lambda t, p, r: p, 10)[1])
        assert birth2.online and birth2.ts > birth1.ts
        ok, r = node.reply(10)  # the broker kept the update in the dispatcher's session
        assert ok and r.version == 3
        node.set_state(NodeStatus.IDLE)
        node.cleared(5)
        job = Q.get_job(jid)
        assert (job.state, job.result_key, job.attempts) == ("succeeded", "res/1", 1)
        assert events(jid) == [(None, "queued"), ("queued", "assigned"),
                               ("assigned", "running"), ("running", "succeeded")]
        # and it keeps dispatching after the restart
        j2 = Q.enqueue("alice", SRC, 30, limits=LIMITS).id
        assert node.assignment(10).job_id == j2
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        node.close()
        watch.close()
    clean = protocol.DispatcherState.from_bytes(retained(mini_broker, state_topic))
    assert not clean.online  # a clean exit publishes offline itself


def test_sigkill_before_acceptance_republishes_assignment(mini_broker, tmp_path, uid):
    """Restart between assign and accept: the retained assignment is still honoured once."""
    db_url = f"sqlite:///{tmp_path / 'raas.db'}"
    env_vars = _proc_env(mini_broker, db_url, uid)
    init_db(db_url)
    Q.ensure_owner("alice")
    jid = Q.enqueue("alice", SRC, 30, limits=LIMITS).id
    proc = _start_proc(env_vars, tmp_path / "d.log")
    node = FakeNode(mini_broker.admin, f"{uid}-a").start()
    try:
        a = node.assignment(10)
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        proc = _start_proc(env_vars, tmp_path / "d.log")
        again = node.assignment(10)  # republished on start (same execution and version)
        assert (again.job_id, again.execution, again.version) == (jid, 1, a.version)
        node.run(again)
        assert Q.get_job(jid).state == "succeeded" and Q.get_job(jid).attempts == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        node.close()


def test_broker_restart_rebuilds_fleet_view(env):
    b = env.node("b")
    j1 = env.submit()
    got = b.assignment()
    assert b.update(j1, 1, JobState.RUNNING, got.version)[0]
    b.set_state(NodeStatus.BUSY, j1)
    a = env.node("a")
    env.broker.stop()
    b.crash()  # b vanishes together with the broker: its will is never delivered
    wait_until(lambda: not env.dispatcher.connected.is_set() and not a.connected.is_set())
    env.broker.start()  # no persistence: every retained message is gone
    assert a.connected.wait(5)
    wait_until(lambda: env.dispatcher.connected.is_set(), 10)
    birth = protocol.DispatcherState.from_bytes(
        retained(env.broker, protocol.topic(TopicKind.DISPATCHER_STATE), 5))
    assert birth.online  # birth republished on reconnect
    status = protocol.JobStatus.from_bytes(retained(env.broker, protocol.topic(
        TopicKind.JOB_STATE, owner="alice", job=j1)))
    assert status.state == JobState.RUNNING  # job states republished
    wait_until(lambda: env.dispatcher.nodes[a.node_id].suspect_since is None)  # a re-announced
    env.advance(env.config.lost_grace_s + 0.1)  # b never came back: its job moves to a
    again = a.assignment()
    assert (again.job_id, again.execution) == (j1, 2)
    a.run(again)
    j2 = env.submit()
    assert a.assignment().job_id == j2
    assert Q.get_job(j1).state == "succeeded"


def test_events_follow_only_one_writer_per_transition(env):
    """Every JobEvent row corresponds to a state change of the job (sanity on the audit log)."""
    a = env.node("a")
    jid = env.submit()
    a.run(a.assignment())
    rows = list(JobEvent.select().where(JobEvent.job == jid).order_by(JobEvent.id))
    assert [r.actor.split(":")[0] for r in rows] == ["alice", "dispatcher", "node", "node"]


def test_presence_overtakes_only_other_nodes_updates():
    """Worker ordering: a node's state may pass other nodes' updates, never its own or a fence."""
    import collections

    from dispatcher.inbox import TICK, Message, presence_first

    def msg(kind: TopicKind, node: str, job: str | None = None) -> Message:
        name = protocol.topic(kind, node=node, **({"job": job} if job else {}))
        return Message.classify(name, b"")

    upd_a = msg(TopicKind.NODE_JOB_UPDATE, "a", "j1")
    st_b = msg(TopicKind.NODE_STATE, "b")
    st_a = msg(TopicKind.NODE_STATE, "a")
    upd_c = msg(TopicKind.NODE_JOB_UPDATE, "c", "j2")
    st_d = msg(TopicKind.NODE_STATE, "d")
    pending = collections.deque([upd_a, st_b, st_a, upd_c, TICK, st_d])
    fast = presence_first(pending)
    assert fast == [st_b]  # st_a waits behind a's update; st_d behind the tick
    assert list(pending) == [upd_a, st_a, upd_c, TICK, st_d]

# ------------------------------------------------------------------------ telemetry/log relay
def _batch(job: str, node: str, t0: float = 0.0) -> protocol.TelemetryBatch:
    return protocol.TelemetryBatch(job_id=job, node_id=node, episode_id=1, seq=(1,), t=(t0,),
                                   theta=(3.1,), theta_dot=(0.0,), u_desired=(0.5,),
                                   u_applied=(0.5,), reward=(-9.6,), deadline_miss=(False,))


def test_relay_forwards_only_the_job_the_node_holds(env, caplog):
    """A node writes its jobs' telemetry and logs in its own subtree; the dispatcher republishes
    them to the owner's job topics only for the execution the node holds (finding: a node's
    login could publish log and telemetry for any user's job)."""
    a, b = env.node("a"), env.node("b")
    jid = env.submit("alice")
    other = env.submit("bob")  # assigned to the other node
    wa = {n.node_id: n.assignment() for n in (a, b)}
    mine = next(n for n in (a, b) if wa[n.node_id].job_id == jid)
    theirs = b if mine is a else a
    watch = Watcher(env.broker.admin, protocol.job_filter("alice", jid),
                    protocol.job_filter("bob", other))
    relayed = lambda t, p, r: t.endswith(("/telemetry", "/log"))  # noqa: E731
    try:
        def send(node, kind, job, msg):
            node.client.publish(protocol.topic(kind, node=node.node_id, job=job), msg.to_bytes(),
                                qos=1).wait_for_publish(2)

        log = protocol.LogChunk(job_id=jid, lines=("hello",))
        send(mine, TopicKind.NODE_JOB_TELEMETRY, jid, _batch(jid, mine.node_id))
        send(mine, TopicKind.NODE_JOB_LOG, jid, log)
        t, payload, _ = watch.wait_for(lambda t, p, r: t.endswith("/telemetry"))
        assert t == protocol.topic(TopicKind.JOB_TELEMETRY, owner="alice", job=jid)
        assert protocol.TelemetryBatch.from_bytes(payload) == _batch(jid, mine.node_id)
        t, payload, _ = watch.wait_for(lambda t, p, r: t.endswith("/log"))
        assert protocol.LogChunk.from_bytes(payload) == log
        # forged: the other node writes for a job it does not hold, or a payload naming
        # another job or node than its topic
        caplog.clear()
        send(theirs, TopicKind.NODE_JOB_TELEMETRY, jid, _batch(jid, theirs.node_id))
        send(theirs, TopicKind.NODE_JOB_LOG, jid, log)
        send(mine, TopicKind.NODE_JOB_TELEMETRY, jid, _batch(other, mine.node_id))
        send(mine, TopicKind.NODE_JOB_TELEMETRY, jid, _batch(jid, theirs.node_id))
        mine.client.publish(protocol.topic(TopicKind.NODE_JOB_LOG, node=mine.node_id, job=jid),
                            b"{garbage", qos=1).wait_for_publish(2)
        wait_until(lambda: env.dispatcher.relay.dropped >= 5)
        with pytest.raises(queue_mod.Empty):
            watch.wait_for(relayed, timeout_s=0.3)
        dropped = [r for r in caplog.records if "relay: dropped" in r.getMessage()]
        assert len(dropped) == 5 and not any(r.exc_info for r in dropped)
        # after the execution ends, its last batches are still relayed for a grace period only
        mine.run(wa[mine.node_id])
        wait_until(lambda: Q.get_job(jid).job_state is JobState.SUCCEEDED)
        env.dispatcher.wait_idle()
        send(mine, TopicKind.NODE_JOB_TELEMETRY, jid, _batch(jid, mine.node_id, 1.0))
        assert watch.wait_for(lambda t, p, r: t.endswith("/telemetry"))[0].startswith(
            protocol.job_filter("alice", jid)[:-1])
        env.advance(31)
        send(mine, TopicKind.NODE_JOB_TELEMETRY, jid, _batch(jid, mine.node_id, 2.0))
        wait_until(lambda: env.dispatcher.relay.dropped >= 6)
        with pytest.raises(queue_mod.Empty):
            watch.wait_for(relayed, timeout_s=0.3)
    finally:
        watch.close()
