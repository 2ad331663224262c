"""The node's session counter: durable, monotonic, and forgiving of a corrupt file."""

from __future__ import annotations

from fleet_node.session import SessionCounter


def test_session_counter_is_durable_and_monotonic(tmp_path):
    c = SessionCounter(tmp_path / "a" / "session")
    assert c.value == 0
    assert [c.next(), c.next()] == [1, 2]
    assert SessionCounter(tmp_path / "a" / "session").next() == 3
    (tmp_path / "a" / "session").write_text("garbage")
    assert SessionCounter(tmp_path / "a" / "session").value == 0
