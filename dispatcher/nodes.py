"""The node registry: the only writer of the ``Node`` table (the dispatcher's record of the fleet).

Rows are rebuilt from the nodes' retained messages, in batches: :meth:`NodeRegistry.note` collects
changes per node in memory, :meth:`NodeRegistry.flush` upserts them in one transaction. A node's
row is created by whichever of its messages arrives first (a ``meta`` may come before its
``state``), so every insert carries every required column; on conflict only what changed is
written. ``draining`` and ``run_seconds`` are the operator's and the accounting's columns: never
overwritten by presence.
"""

from __future__ import annotations

from typing import Any

from dispatcher import db
from dispatcher.models import SelfTest
from gym_raas_mqtt.protocol import NodeStatus

PRESENCE_COLUMNS = frozenset({"state", "session", "current_job", "last_seen", "suspect_since",
                              "backend", "software_version", "calibration_id", "image_digest"})
"""What presence messages may set."""
NEW_ROW = {"state": NodeStatus.OFFLINE.value, "session": 0, "draining": False, "run_seconds": 0.0}
"""Columns a new row gets unless the first message says otherwise."""


class NodeRegistry:
    """Batched writes of node rows (one instance per dispatcher; not thread-safe: the worker
    thread owns it)."""

    def __init__(self) -> None:
        self._dirty: dict[str, dict[str, Any]] = {}

    def note(self, node_id: str, **fields: Any) -> None:
        """Record presence fields of ``node_id`` for the next :meth:`flush`.

        Raises:
            ValueError: a field presence may not set.
        """
        bad = set(fields) - PRESENCE_COLUMNS
        if bad:
            raise ValueError(f"not presence columns: {sorted(bad)}")
        self._dirty.setdefault(node_id, {}).update(fields)

    def flush(self) -> int:
        """Upsert every noted node in one transaction; returns how many rows were written."""
        if not self._dirty:
            return 0
        dirty, self._dirty = self._dirty, {}
        with db.transaction():
            for node_id, fields in dirty.items():
                row = {**NEW_ROW, **fields}
                cols = ", ".join(f'"{c}"' for c in row)
                marks = ", ".join("?" for _ in row)
                sets = ", ".join(f'"{c}" = excluded."{c}"' for c in fields)
                db.execute(f'INSERT INTO "node" ("id", {cols}) VALUES (?, {marks}) '
                           f'ON CONFLICT ("id") DO UPDATE SET {sets}', node_id, *row.values())
        return len(dirty)


def draining_nodes() -> set[str]:
    """Nodes an operator set to drain: they finish their job and get no new one."""
    return {row[0] for row in db.execute('SELECT "id" FROM "node" WHERE "draining" = ?',
                                         True).fetchall()}


def set_draining(node_id: str, draining: bool) -> bool:
    """Set or clear ``node_id``'s drain flag; returns False when the node is unknown."""
    with db.transaction():
        return db.update("node", {"draining": draining}, '"id" = ?', node_id) == 1


def add_run_seconds(node_id: str, seconds: float) -> None:
    """Add an execution's run time [s] to the node's total."""
    with db.transaction():
        db.execute('UPDATE "node" SET "run_seconds" = "run_seconds" + ? WHERE "id" = ?',
                   float(seconds), node_id)


def record_selftest(node_id: str, ok: bool, details: dict[str, Any], at: float) -> None:
    """Append a self-test result (``details``: the motor node's measurements) to the node's
    history."""
    with db.transaction():
        SelfTest.create(node=node_id, ok=ok, details=details, at=at)
