"""Contract tests of the job queue (dispatcher.queue), run on SQLite and on PostgreSQL."""

from __future__ import annotations

import random

import pytest

from dispatcher import queue as Q
from dispatcher.models import Execution, Job, JobEvent, Node
from gym_raas_mqtt.config import load
from gym_raas_mqtt.protocol import JobSource, JobState, JobUpdate, SourceKind

LIM = Q.QueueLimits(default_time_limit_s=120, min_time_limit_s=1, max_time_limit_s=600,
                    max_attempts=3, accept_timeout_s=30, time_limit_grace_s=20, cancel_grace_s=30)
SRC = JobSource(SourceKind.GIT, url="https://example.org/u/ctrl.git", ref="main")
S = JobState


def submit(owner: str = "alice", t: float = 0.0, limits: Q.QueueLimits = LIM, **kw) -> str:
    Q.ensure_owner(owner)
    return Q.enqueue(owner, SRC, kw.pop("time_limit_s", 10), limits=limits, now=t, **kw).id


def assign_next(node_id: str, **kw):
    """The fair queue's next job on ``node_id`` alone: ``(job, execution)`` or None."""
    got = Q.assign_batch([node_id], **kw)
    return (got[0][1], got[0][2]) if got else None


def n_events(job_id: str | None = None) -> int:
    q = JobEvent.select()
    return (q.where(JobEvent.job == job_id) if job_id else q).count()


def state_of(job_id: str) -> tuple[str, str | None]:
    job = Q.get_job(job_id)
    ex = Q.current_execution(job)
    return job.state, ex.state if ex else None


def make_in(state: JobState, limits: Q.QueueLimits = LIM) -> tuple[str, int]:
    """A job whose current execution is in ``state`` (``queued``: no execution yet)."""
    jid = submit(limits=limits)
    if state == S.QUEUED:
        return jid, 1
    Q.assign(jid, "n1", limits=limits, now=1)
    if state == S.CANCELED:
        Q.start(jid, 1, limits=limits, now=2)
        Q.finish(jid, 1, S.CANCELED, now=3)
    elif state == S.ERROR:
        Q.error_and_requeue(jid, 1, "platform fault", now=2)
    elif state != S.ASSIGNED:
        Q.start(jid, 1, limits=limits, now=2)
        if state != S.RUNNING:
            Q.finish(jid, 1, state, now=3)
    return jid, 1


# -------------------------------------------------------------------------------- submission
def test_enqueue_writes_job_and_event(db):
    jid = submit(t=5.0)
    job = Q.get_job(jid)
    assert (job.state, job.owner_id, job.time_limit_s, job.submitted_at) == ("queued", "alice",
                                                                               10.0, 5.0)
    assert Q.job_source(job) == SRC
    [ev] = Q.events(jid)
    assert (ev.from_state, ev.to_state, ev.actor) == (None, "queued", "alice")


def test_enqueue_default_time_limit(db):
    Q.ensure_owner("alice")
    assert Q.enqueue("alice", SRC, None, limits=LIM).time_limit_s == 120.0


@pytest.mark.parametrize("bad", [0, 0.5, 600.5, float("nan"), float("inf"), "60", True])
def test_enqueue_rejects_bad_time_limit(db, bad):
    Q.ensure_owner("alice")
    with pytest.raises(Q.InvalidSubmission, match="time limit"):
        Q.enqueue("alice", SRC, bad, limits=LIM)
    assert Job.select().count() == 0 and n_events() == 0


def test_enqueue_rejects_unknown_owner_and_bad_source(db):
    with pytest.raises(Q.InvalidSubmission, match="unknown owner"):
        Q.enqueue("nobody", SRC, 10, limits=LIM)
    Q.ensure_owner("alice")
    with pytest.raises(Q.InvalidSubmission, match="JobSource"):
        Q.enqueue("alice", {"kind": "git"}, 10, limits=LIM)
    with pytest.raises(Q.InvalidSubmission, match="owner"):
        Q.enqueue("../etc", SRC, 10, limits=LIM)
    assert Job.select().count() == 0


def test_time_limit_bounds_come_from_config(db, monkeypatch):
    monkeypatch.setenv("RAAS_MAX_TIME_LIMIT_S", "300")
    limits = load(Q.QueueLimits)  # what the dispatcher and the dashboard build at start-up
    Q.ensure_owner("alice")
    with pytest.raises(Q.InvalidSubmission, match="1–300 s"):
        Q.enqueue("alice", SRC, 301, limits=limits)
    assert Q.enqueue("alice", SRC, 300, limits=limits).time_limit_s == 300


# -------------------------------------------------------------------------------- transitions
def _attempt(name: str, jid: str, n: int) -> None:
    if name == "assign":
        Q.assign(jid, "n2", limits=LIM, now=10)
    elif name == "start":
        Q.start(jid, n, limits=LIM, now=10)
    elif name == "finish":
        Q.finish(jid, n, S.SUCCEEDED, {"result_key": "r"}, now=10)
    elif name == "fail":
        Q.fail(jid, n, "exit 1", now=10)
    elif name == "error":
        Q.error_and_requeue(jid, n, "docker died", now=10)
    elif name == "cancel_assigned":  # cancel's immediate form
        Q.cancel(jid, "alice", limits=LIM, now=10)


EXPECTED = {  # (transition, state of the current execution) → allowed
    ("assign", S.QUEUED), ("start", S.ASSIGNED), ("finish", S.RUNNING), ("fail", S.ASSIGNED),
    ("fail", S.RUNNING), ("error", S.ASSIGNED), ("error", S.RUNNING),
}


@pytest.mark.parametrize("state", list(JobState))
@pytest.mark.parametrize("name", ["assign", "start", "finish", "fail", "error"])
def test_every_transition_from_every_state(db, name, state):
    limits = Q.QueueLimits(max_attempts=1) if state == S.ERROR else LIM
    jid, n = make_in(state, limits)
    before, events = state_of(jid), n_events(jid)
    if (name, state) in EXPECTED:
        _attempt(name, jid, n)
        assert state_of(jid) != before
        assert n_events(jid) > events  # the event is written with the change
    else:
        with pytest.raises((Q.TransitionError, Q.UnknownJob)):
            _attempt(name, jid, n)
        assert state_of(jid) == before and n_events(jid) == events  # nothing written


def test_transitions_table_matches_expectations():
    for name, (sources, targets) in Q.TRANSITIONS.items():
        for s in JobState:
            for t in JobState:
                assert Q.allowed(name, s, t) == (s in sources and t in targets)
    assert Q.allowed("enqueue", None, S.QUEUED)
    # no transition leaves a terminal state
    from gym_raas_mqtt.protocol import TERMINAL_STATES
    assert not any(src & TERMINAL_STATES for src, _ in Q.TRANSITIONS.values())


def test_happy_path_states_versions_events(db):
    jid = submit()
    ex = Q.assign(jid, "n1", limits=LIM, now=1)
    assert (ex.number, ex.version, ex.state, ex.deadline_at) == (1, 1, "assigned", 31)
    Q.start(jid, 1, version=1, limits=LIM, now=2)
    ex = Q.get_execution(jid, 1)
    assert (ex.state, ex.version, ex.deadline_at) == ("running", 2, 2 + 10 + 20)
    Q.finish(jid, 1, S.SUCCEEDED, {"result_key": "res/1", "commit_sha": "abc", "summary": {"r": 1}},
             version=2, now=5)
    job = Q.get_job(jid)
    assert (job.state, job.result_key, job.commit_sha, job.summary, job.started_at,
            job.finished_at) == ("succeeded", "res/1", "abc", {"r": 1}, 2, 5)
    assert [(e.from_state, e.to_state) for e in Q.events(jid)] == [
        (None, "queued"), ("queued", "assigned"), ("assigned", "running"),
        ("running", "succeeded")]


def test_stale_version_is_refused(db):
    jid = submit()
    Q.assign(jid, "n1", limits=LIM, now=1)
    with pytest.raises(Q.StaleVersion):
        Q.start(jid, 1, version=2, limits=LIM, now=2)
    assert state_of(jid) == ("assigned", "assigned")


def test_error_requeues_until_max_attempts_then_error(db):
    jid = submit()
    for attempt in (1, 2, 3):
        ex = Q.assign(jid, f"n{attempt}", limits=LIM, now=attempt)
        assert ex.number == attempt
        state = Q.error_and_requeue(jid, attempt, "node lost", now=attempt + 0.5)
        assert state == (S.QUEUED if attempt < 3 else S.ERROR)
    job = Q.get_job(jid)
    assert (job.state, job.attempts) == ("error", 3)
    assert "gave up after 3" in job.reason
    assert Execution.select().where(Execution.job == jid).count() == 3
    with pytest.raises(Q.TransitionError):
        Q.assign(jid, "n4", limits=LIM)
    tos = [e.to_state for e in Q.events(jid)]
    assert tos == ["queued", "assigned", "error", "queued", "assigned", "error", "queued",
                   "assigned", "error"]


def test_cancel_queued_assigned_running_and_finished(db):
    q_id, a_id, r_id, done_id = (submit(t=i) for i in range(4))
    from dispatcher.models import Owner
    Owner.update(max_running=5).execute()
    Q.assign(a_id, "n1", limits=LIM, now=1)
    Q.assign(r_id, "n2", limits=LIM, now=1)
    Q.start(r_id, 1, limits=LIM, now=2)
    Q.assign(done_id, "n3", limits=LIM, now=1)
    Q.start(done_id, 1, limits=LIM, now=2)
    Q.finish(done_id, 1, S.SUCCEEDED, now=3)

    assert Q.cancel(q_id, "alice", limits=LIM, now=10).state == "canceled"
    job = Q.cancel(a_id, "alice", limits=LIM, now=10)
    assert job.state == "canceled" and Q.get_execution(a_id, 1).version == 2
    # the node's late acceptance of the canceled assignment is refused
    out = Q.apply_update("n1", JobUpdate(job_id=a_id, execution=1, expected_version=1,
                                         status=S.RUNNING), limits=LIM, now=11)
    assert not out.accepted and "canceled" in out.reason

    job = Q.cancel(r_id, "alice", limits=LIM, now=10)
    assert (job.state, job.cancel_requested) == ("running", True)
    assert Q.get_execution(r_id, 1).deadline_at == 32  # min(time limit 2+10+20, 10+30)
    n = n_events(r_id)
    Q.cancel(r_id, "alice", limits=LIM, now=11)  # asking twice writes nothing
    assert n_events(r_id) == n
    # the node confirms with `canceled` (version unchanged by the request)
    out = Q.apply_update("n2", JobUpdate(job_id=r_id, execution=1, expected_version=2,
                                         status=S.CANCELED), limits=LIM, now=12)
    assert out.accepted and Q.get_job(r_id).state == "canceled"

    assert Q.cancel(done_id, "alice", limits=LIM, now=10).state == "succeeded"
    with pytest.raises(Q.UnknownJob):
        Q.cancel("nope", "alice", limits=LIM)


def test_expire_leases(db):
    from dispatcher.models import Owner
    a, r, c = submit(t=0), submit(t=1), submit(t=2)
    Owner.update(max_running=3).execute()
    Q.assign(a, "n1", limits=LIM, now=100)  # accept deadline 130
    Q.assign(r, "n2", limits=LIM, now=100)
    Q.start(r, 1, limits=LIM, now=101)  # deadline 101 + 10 + 20 = 131
    Q.assign(c, "n3", limits=LIM, now=100)
    Q.start(c, 1, limits=LIM, now=101)
    Q.cancel(c, "alice", limits=LIM, now=102)  # deadline min(131, 132)
    assert Q.expire_leases(129.9, limits=LIM) == []
    got = Q.expire_leases(130.5, limits=LIM)
    assert [(e.job_id, e.state, e.job_state) for e in got] == [(a, S.ERROR, S.QUEUED)]
    got = sorted(Q.expire_leases(131.5, limits=LIM), key=lambda e: e.job_id != r)
    assert [(e.job_id, e.state) for e in got] == [(r, S.TIMED_OUT), (c, S.CANCELED)]
    assert Q.get_job(r).reason == "time limit of 10 s exceeded"
    # the node's own timed_out report afterwards is answered idempotently and keeps its results
    out = Q.apply_update("n2", JobUpdate(job_id=r, execution=1, expected_version=2,
                                         status=S.TIMED_OUT, details={"result_key": "res/r"}),
                         limits=LIM, now=132)
    assert out.accepted and not out.changed and Q.get_job(r).result_key == "res/r"


def test_node_lost_requeues_active_executions(db):
    from dispatcher.models import Owner
    a, b = submit(t=0), submit(t=1)
    Owner.update(max_running=2).execute()
    Q.assign(a, "n1", limits=LIM, now=1)
    Q.start(a, 1, limits=LIM, now=2)
    Q.assign(b, "n2", limits=LIM, now=1)
    got = Q.node_lost("n1", "node lost", now=5)
    assert [(e.job_id, e.job_state) for e in got] == [(a, S.QUEUED)]
    assert state_of(a) == ("queued", "error") and state_of(b) == ("assigned", "assigned")


# -------------------------------------------------------------------------------- node updates
def upd(jid: str, status: JobState, v: int, n: int = 1, **details) -> JobUpdate:
    return JobUpdate(job_id=jid, execution=n, expected_version=v, status=status, details=details)


def test_apply_update_flow_duplicates_and_stale(db):
    jid = submit()
    Q.assign(jid, "n1", limits=LIM, now=1)
    r = Q.apply_update("n1", upd(jid, S.RUNNING, 1), limits=LIM, now=2)
    assert (r.accepted, r.version, r.changed) == (True, 2, True)
    events = n_events(jid)
    r = Q.apply_update("n1", upd(jid, S.RUNNING, 1), limits=LIM, now=3)  # duplicate
    assert (r.accepted, r.version, r.changed) == (True, 2, False) and n_events(jid) == events
    r = Q.apply_update("n1", upd(jid, S.SUCCEEDED, 1), limits=LIM, now=3)  # stale
    assert (r.accepted, r.version) == (False, 2) and "stale" in r.reason
    r = Q.apply_update("n2", upd(jid, S.SUCCEEDED, 2), limits=LIM, now=3)  # another node
    assert not r.accepted and "another node" in r.reason
    r = Q.apply_update("n1", upd(jid, S.SUCCEEDED, 2, n=2), limits=LIM, now=3)
    assert not r.accepted and "no execution" in r.reason
    r = Q.apply_update("n1", upd(jid, S.QUEUED, 2), limits=LIM, now=3)
    assert not r.accepted
    assert n_events(jid) == events and state_of(jid) == ("running", "running")
    r = Q.apply_update("n1", upd(jid, S.SUCCEEDED, 2, result_key="k"), limits=LIM, now=4)
    assert (r.accepted, r.version, r.changed) == (True, 3, True)
    events = n_events(jid)
    r = Q.apply_update("n1", upd(jid, S.SUCCEEDED, 2, result_key="k"), limits=LIM, now=5)
    assert (r.accepted, r.version, r.changed) == (True, 3, False) and n_events(jid) == events
    r = Q.apply_update("n1", upd(jid, S.FAILED, 3), limits=LIM, now=5)  # after terminal
    assert not r.accepted and "already succeeded" in r.reason
    assert state_of(jid) == ("succeeded", "succeeded") and n_events(jid) == events


def test_zombie_node_cannot_overwrite_reassigned_job(db):
    jid = submit()
    Q.assign(jid, "n1", limits=LIM, now=1)
    Q.apply_update("n1", upd(jid, S.RUNNING, 1), limits=LIM, now=2)
    Q.node_lost("n1", "lost", now=40)
    Q.assign(jid, "n2", limits=LIM, now=41)
    Q.apply_update("n2", upd(jid, S.RUNNING, 1, n=2), limits=LIM, now=42)
    r = Q.apply_update("n1", upd(jid, S.SUCCEEDED, 2), limits=LIM, now=43)  # zombie n1
    assert not r.accepted and "already error" in r.reason
    r = Q.apply_update("n1", upd(jid, S.SUCCEEDED, 2, n=2), limits=LIM, now=43)
    assert not r.accepted
    assert state_of(jid) == ("running", "running") and Q.get_job(jid).node_id == "n2"


def test_node_reported_error_requeues(db):
    jid = submit()
    Q.assign(jid, "n1", limits=LIM, now=1)
    r = Q.apply_update("n1", upd(jid, S.ERROR, 1, reason="image missing"), limits=LIM, now=2)
    assert r.accepted and state_of(jid) == ("queued", "error")
    assert Q.get_execution(jid, 1).reason == "image missing"


# -------------------------------------------------------------------------------- fair queue
def test_fifo_with_per_owner_cap(db):
    a1, a2, b1, a3, b2 = (submit(o, t) for t, o in enumerate("a a b a b".split()))
    got = [assign_next(f"n{i}", limits=LIM, now=10) for i in range(4)]
    assert [g[0].id if g else None for g in got] == [a1, b1, None, None]  # both owners capped
    Q.start(a1, 1, limits=LIM, now=11)
    Q.finish(a1, 1, S.SUCCEEDED, now=12)
    assert assign_next("n0", limits=LIM, now=13)[0].id == a2  # a's next, ahead of b2 (capped)


def test_max_running_two_and_suspended_owner(db):
    from dispatcher.models import Owner
    ids = [submit(o, t) for t, o in enumerate("a a a s b".split())]
    Owner.update(max_running=2).where(Owner.name == "a").execute()
    Owner.update(max_running=0).where(Owner.name == "s").execute()
    got = [assign_next(f"n{i}", limits=LIM, now=10) for i in range(5)]
    assert [g[0].id if g else None for g in got] == [ids[0], ids[1], ids[4], None, None]
    assert Q.queue_position(ids[3]) is None  # suspended owner: no position


def test_requeued_job_keeps_its_place_and_prefers_another_node(db):
    first = submit("a", 0)
    later = submit("b", 1)
    Q.assign(first, "n1", limits=LIM, now=2)
    Q.error_and_requeue(first, 1, "lost", now=3)
    # n1 avoids the job that failed on it while another node could take it
    got = {n: (j.id, e.number) for n, j, e in Q.assign_batch(["n1", "n2"], limits=LIM, now=4)}
    assert got["n1"] == (later, 1)
    assert got["n2"] == (first, 2)
    assert Q.queue_positions(4) == {}


def test_assign_skips_canceled_and_returns_none_when_empty(db):
    assert assign_next("n1", limits=LIM) is None
    j = submit()
    Q.cancel(j, "alice", limits=LIM)
    assert assign_next("n1", limits=LIM) is None


def test_queue_position_single_node_is_fifo(db):
    ids = [submit(o, t) for t, o in enumerate("a a b a b c".split())]
    assert Q.queue_positions(1) == {j: i + 1 for i, j in enumerate(ids)}
    assert Q.queue_position(ids[3], 1) == 4


def test_queue_position_counts_fleet_nodes(db):
    ids = [submit(o, t) for t, o in enumerate("a a b".split())]
    Node.insert_many([{"id": "n1", "state": "idle"}, {"id": "n2", "state": "busy"},
                      {"id": "n3", "state": "maintenance"}]).execute()
    # two usable nodes: a's second job waits for a's first (cap 1), b's runs alongside
    assert Q.queue_positions() == {ids[0]: 1, ids[2]: 2, ids[1]: 3}
    assert Q.queue_position(ids[1]) == 3


@pytest.mark.parametrize("slots", [1, 3])
def test_queue_positions_predict_dispatch_order(db, slots):
    """Positions equal the order assignment really starts jobs (waves of equal-length jobs)."""
    from dispatcher.models import Owner
    rng = random.Random(slots)
    ids = [submit(rng.choice("abcd"), t) for t in range(40)]
    for o, cap in zip("abcd", (1, 2, 1, 3)):
        Owner.update(max_running=cap).where(Owner.name == o).execute()
    # one job already running for owner a, occupying one node during the first wave
    Q.assign(ids[0], "busy", limits=LIM, now=1)
    Q.start(ids[0], 1, limits=LIM, now=1)
    predicted = Q.queue_positions(slots)
    assert sorted(predicted.values()) == list(range(1, 40))
    order, t = [], 10.0
    running = [(ids[0], 1)]
    while True:
        free = slots - len(running)
        for i in range(free):
            got = assign_next(f"n{i}", limits=LIM, now=t)
            if got is None:
                break
            order.append(got[0].id)
            running.append((got[0].id, got[1].number))
        if not running:
            break
        for jid, n in running:  # the wave ends: everything finishes
            if Q.get_execution(jid, n).state == "assigned":
                Q.start(jid, n, limits=LIM, now=t)
            Q.finish(jid, n, S.SUCCEEDED, now=t + 1)
        running, t = [], t + 2
    assert order == sorted(predicted, key=predicted.get)


def test_assign_batch_takes_the_first_wave_in_one_transaction(db):
    from dispatcher.models import Owner
    rng = random.Random(7)
    for t in range(30):
        submit(rng.choice("abcde"), t)
    Owner.update(max_running=2).where(Owner.name == "b").execute()
    predicted = Q.queue_positions(6)
    first_wave = sorted(predicted, key=predicted.get)[:6]
    got = Q.assign_batch([f"n{i}" for i in range(6)], limits=LIM, now=50)
    assert [job.id for _, job, _ in got] == first_wave
    assert [node for node, _, _ in got] == [f"n{i}" for i in range(6)]
    assert all(state_of(j.id) == ("assigned", "assigned") for _, j, _ in got)
    assert Q.assign_batch([], limits=LIM) == []


def test_assign_batch_sends_requeued_job_elsewhere_but_never_starves_it(db):
    first, later = submit("a", 0), submit("b", 1)
    Q.assign(first, "n1", limits=LIM, now=2)
    Q.error_and_requeue(first, 1, "lost", now=3)
    got = Q.assign_batch(["n1", "n2"], limits=LIM, now=4)
    assert [(n, j.id) for n, j, _ in got] == [("n2", first), ("n1", later)]
    third = submit("c", 5)
    Q.error_and_requeue(first, 2, "lost again", now=6)
    got = Q.assign_batch(["n2"], limits=LIM, now=7)  # the only free node: it gets it anyway
    assert [(n, j.id, e.number) for n, j, e in got] == [("n2", first, 3)]
    assert Q.queue_positions(1) == {third: 1}


def test_requeued_job_waits_for_a_busy_node_rather_than_return_where_it_failed(db):
    first, later = submit("a", 0), submit("b", 1)
    Q.assign(first, "n1", limits=LIM, now=2)
    Q.error_and_requeue(first, 1, "docker died", now=3)
    assert Q.get_job(first).reason == "requeued after an error on n1 (docker died)"
    # n1 is free but failed it; n2 is busy: the requeued job waits, the next one takes n1
    got = Q.assign_batch(["n1"], limits=LIM, now=4, busy=["n2"])
    assert [(n, j.id) for n, j, _ in got] == [("n1", later)]
    assert state_of(first) == ("queued", "error") and Q.errored_on([first]) == {first: {"n1"}}
    assert [(r.job_id, r.node_id, r.error) for r in Q.requeued_jobs()] == [
        (first, "n1", "docker died")]
    got = Q.assign_batch(["n2"], limits=LIM, now=5, busy=["n1"])  # n2 is free now
    assert [(n, j.id, e.number) for n, j, e in got] == [("n2", first, 2)]
    assert Q.get_job(first).reason == "attempt 2 on n2 after an error on n1"
    assert Q.requeued_jobs() == []


def test_wait_reason_is_written_only_while_queued(db):
    jid = submit()
    Q.assign(jid, "n1", limits=LIM, now=1)
    Q.error_and_requeue(jid, 1, "lost", now=2)
    n = n_events(jid)
    assert Q.note_wait(jid, "requeued …; waiting for another node (n2)")
    assert not Q.note_wait(jid, "requeued …; waiting for another node (n2)")  # unchanged
    assert Q.get_job(jid).reason.endswith("(n2)") and n_events(jid) == n  # no event
    Q.assign(jid, "n2", limits=LIM, now=3)
    assert not Q.note_wait(jid, "waiting")
    assert Q.get_job(jid).reason == "attempt 2 on n2 after an error on n1"


def test_extend_accept_deadlines_after_reconnect(db):
    a, b = submit("a", 0), submit("b", 1)
    Q.assign(a, "n1", limits=LIM, now=100)  # deadline 130
    Q.assign(b, "n2", limits=LIM, now=100)
    Q.start(b, 1, limits=LIM, now=101)
    events = n_events()
    assert Q.extend_accept_deadlines(200, limits=LIM) == 1
    assert Q.get_execution(a, 1).deadline_at == 230
    assert Q.get_execution(b, 1).deadline_at == 101 + 10 + 20  # running: untouched
    assert n_events() == events
    assert [e.job_id for e in Q.expire_leases(229, limits=LIM)] == [b]  # a is still in time


def test_refused_change_leaves_no_partial_write(db):
    """The row-count check on the job catches another writer; the execution update is undone."""
    jid = submit()
    Q.assign(jid, "n1", limits=LIM, now=1)
    Job.update(state="canceled").where(Job.id == jid).execute()  # a writer that bypassed queue.py
    events = n_events(jid)
    r = Q.apply_update("n1", upd(jid, S.RUNNING, 1), limits=LIM, now=2)
    assert not r.accepted and "not at execution 1 in state assigned" in r.reason
    ex = Q.get_execution(jid, 1)
    assert (ex.state, ex.version, ex.started_at) == ("assigned", 1, None)
    assert n_events(jid) == events
    with pytest.raises(Q.TransitionError):
        Q.start(jid, 1, limits=LIM, now=2)
    assert Q.get_execution(jid, 1).state == "assigned"
