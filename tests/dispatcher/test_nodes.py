"""The node registry (dispatcher.nodes), the only writer of the Node table, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from dispatcher import nodes
from dispatcher.models import Node, SelfTest


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
