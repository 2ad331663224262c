"""The node registry (dispatcher.nodes), the only writer of the Node table, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from dispatcher import nodes
from dispatcher import queue as Q
from dispatcher.limits import QueueLimits
from dispatcher.models import Node, SelfTest
from gym_raas_mqtt.protocol import JobSource, JobState, SourceKind


def test_first_message_may_be_meta_and_every_insert_is_complete(db):
    """A node's meta can arrive before its state (and at every start): the row is created with
    every required column instead of failing NOT NULL on state/session."""
    reg = nodes.NodeRegistry()
    reg.note("pi-1", backend="sim", software_version="0.1.0", calibration_id="c1",
             image_digest=None)
    assert reg.flush() == 1
    row = Node.get_by_id("pi-1")
    assert (row.state, row.session, row.backend, row.draining, row.run_seconds) == (
        "offline", 0, "sim", False, 0.0)
    reg.note("pi-1", state="idle", session=3, current_job=None, last_seen=5.0,
             suspect_since=None)
    reg.flush()
    row = Node.get_by_id("pi-1")
    assert (row.state, row.session, row.backend, row.last_seen) == ("idle", 3, "sim", 5.0)


def test_presence_never_touches_operator_or_accounting_columns(db):
    reg = nodes.NodeRegistry()
    reg.note("pi-2", state="idle", session=1)
    reg.flush()
    assert nodes.set_draining("pi-2", True)
    nodes.add_run_seconds("pi-2", 12.5)
    nodes.add_run_seconds("pi-2", 0.5)
    reg.note("pi-2", state="busy", session=1, current_job="j1")
    reg.flush()
    row = Node.get_by_id("pi-2")
    assert (row.state, row.draining, row.run_seconds) == ("busy", True, 13.0)
    assert nodes.draining_nodes() == {"pi-2"}
    assert nodes.set_draining("pi-2", False) and nodes.draining_nodes() == set()
    assert not nodes.set_draining("nobody", True)  # unknown node: nothing written
    with pytest.raises(ValueError, match="draining"):
        reg.note("pi-2", draining=True)


def test_selftests_are_appended(db):
    reg = nodes.NodeRegistry()
    reg.note("pi-3", state="resetting", session=1)
    reg.flush()
    nodes.record_selftest("pi-3", True, {"max_error_rad": 0.01}, at=10.0)
    nodes.record_selftest("pi-3", False, {"error": "stuck"}, at=20.0)
    rows = list(SelfTest.select().where(SelfTest.node == "pi-3").order_by(SelfTest.at))
    assert [(r.ok, r.details, r.at) for r in rows] == [
        (True, {"max_error_rad": 0.01}, 10.0), (False, {"error": "stuck"}, 20.0)]


def test_an_execution_is_accounted_on_its_node_when_it_ends(db):
    """Run time and the run of platform errors are written by the transition that ends the
    execution (one transaction: exactly once)."""
    reg = nodes.NodeRegistry()
    reg.note("pi-4", state="idle", session=1)
    reg.flush()
    lim = QueueLimits(max_attempts=5)
    Q.ensure_owner("alice", 5)
    src = JobSource(SourceKind.GIT, url="https://h/r.git")
    ends = [(JobState.ERROR, 10.0), (JobState.ERROR, 5.0), (JobState.SUCCEEDED, 2.0),
            (JobState.ERROR, 1.0), (JobState.CANCELED, 1.0), (JobState.ERROR, 1.0)]
    streaks = []
    for k, (state, run_s) in enumerate(ends):
        jid = Q.enqueue("alice", src, 30, limits=lim, now=100.0 * k).id
        Q.assign(jid, "pi-4", limits=lim, now=100.0 * k + 1)
        Q.start(jid, 1, limits=lim, now=100.0 * k + 2)
        if state == JobState.ERROR:
            Q.error_and_requeue(jid, 1, "boom", now=100.0 * k + 2 + run_s)
        else:
            Q.finish(jid, 1, state, now=100.0 * k + 2 + run_s)
        streaks.append(Node.get_by_id("pi-4").error_streak)
    assert streaks == [1, 2, 0, 1, 1, 2]
    assert Node.get_by_id("pi-4").run_seconds == pytest.approx(20.0)
    assert nodes.error_streaks(2) == {"pi-4": 2} and nodes.error_streaks(3) == {}
    assert nodes.set_maintenance("pi-4", "2 errors", at=1.0)
    assert nodes.held_nodes() == {"pi-4": "2 errors"} and nodes.error_streaks(2) == {}
    assert nodes.clear_maintenance("pi-4") and nodes.held_nodes() == {}
    assert Node.get_by_id("pi-4").error_streak == 0
    assert not nodes.set_maintenance("nobody", "x", at=1.0)


def test_selftest_of_an_unknown_node_is_not_recorded(db):
    assert not nodes.record_selftest("ghost", True, {}, at=1.0, duration_s=2.0)
    assert SelfTest.select().count() == 0
