"""The node registry: the only writer of the ``Node`` table (the dispatcher's record of the fleet).

Rows are rebuilt from the nodes' retained messages, in batches: :meth:`NodeRegistry.note` collects
changes per node in memory, :meth:`NodeRegistry.flush` upserts them in one transaction. A node's
row is created by whichever of its messages arrives first (a ``meta`` may come before its
``state``), so every insert carries every required column; on conflict only what changed is
written. The operator's columns (``draining``, ``maintenance_reason``) and the accounting's
(``run_seconds``, ``error_streak``) are never overwritten by presence: they change only through
the functions below. :func:`execution_ended` runs inside the transaction that ends an execution
(:mod:`dispatcher.queue.transitions`), so an execution is accounted exactly once, whoever ends it
and however often the dispatcher restarts.
"""

from __future__ import annotations

from typing import Any

from dispatcher import db
from dispatcher.models import Node, SelfTest
from gym_raas_mqtt.protocol import JobState, NodeStatus

PRESENCE_COLUMNS = frozenset({"state", "session", "current_job", "last_seen", "suspect_since",
                              "reason", "backend", "software_version", "calibration_id",
                              "image_digest"})
"""What presence messages may set."""
NEW_ROW = {"state": NodeStatus.OFFLINE.value, "session": 0, "draining": False, "run_seconds": 0.0,
           "error_streak": 0}
"""Columns a new row gets unless the first message says otherwise."""
STREAK_RESET = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT})
"""Execution ends that reset a node's run of platform errors: it ran the user's code to its end
(``canceled`` leaves the run as it is; ``error`` extends it)."""


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


# ---------------------------------------------------------------------------------- operator
def draining_nodes() -> set[str]:
    """Nodes an operator set to drain: they finish their job and get no new one."""
    return {row[0] for row in db.execute('SELECT "id" FROM "node" WHERE "draining" = ?',
                                         True).fetchall()}


def set_draining(node_id: str, draining: bool) -> bool:
    """Set or clear ``node_id``'s drain flag; returns False when the node is unknown."""
    with db.transaction():
        return db.update("node", {"draining": draining}, '"id" = ?', node_id) == 1


def held_nodes() -> dict[str, str]:
    """Nodes in the dispatcher's maintenance (it assigns nothing to them), with the reason."""
    return dict(db.execute('SELECT "id", "maintenance_reason" FROM "node" '
                           'WHERE "maintenance_reason" IS NOT NULL').fetchall())


def set_maintenance(node_id: str, reason: str, at: float) -> bool:
    """Put ``node_id`` in maintenance (at ``at`` [s since the epoch]) until
    :func:`clear_maintenance`; returns False when the node is unknown."""
    with db.transaction():
        return db.update("node", {"maintenance_reason": reason[:2000], "maintenance_since": at},
                         '"id" = ?', node_id) == 1


def clear_maintenance(node_id: str) -> bool:
    """Take ``node_id`` out of maintenance and forget its run of errors; returns False when the
    node is unknown."""
    with db.transaction():
        return db.update("node", {"maintenance_reason": None, "maintenance_since": None,
                                  "error_streak": 0}, '"id" = ?', node_id) == 1


# ---------------------------------------------------------------------------------- accounting
def add_run_seconds(node_id: str, seconds: float) -> None:
    """Add an execution's run time [s] to the node's total."""
    with db.transaction():
        db.execute('UPDATE "node" SET "run_seconds" = "run_seconds" + ? WHERE "id" = ?',
                   float(seconds), node_id)


def execution_ended(node_id: str, state: JobState, started_at: float | None,
                    finished_at: float) -> None:
    """Account an execution that ended ``state`` on ``node_id``, inside the transaction that ended
    it: its run time (``finished_at - started_at`` [s], none if it never started) and the node's
    run of consecutive platform errors (:data:`STREAK_RESET`). Unknown nodes are skipped."""
    if started_at is not None and finished_at > started_at:
        add_run_seconds(node_id, finished_at - started_at)
    if state == JobState.ERROR:
        db.execute('UPDATE "node" SET "error_streak" = COALESCE("error_streak", 0) + 1 '
                   'WHERE "id" = ?', node_id)
    elif state in STREAK_RESET:
        db.update("node", {"error_streak": 0}, '"id" = ? AND "error_streak" <> 0', node_id)


def error_streaks(at_least: int) -> dict[str, int]:
    """Nodes not in maintenance whose last ``at_least`` or more executions all ended ``error``."""
    return dict(db.execute('SELECT "id", "error_streak" FROM "node" WHERE "error_streak" >= ? '
                           'AND "maintenance_reason" IS NULL', at_least).fetchall())


def record_selftest(node_id: str, ok: bool, details: dict[str, Any], at: float, *,
                    duration_s: float | None = None, max_error_rad: float | None = None,
                    rms_error_rad: float | None = None, reason: str | None = None) -> bool:
    """Append a self-test result to the node's history.

    Args:
        ok: it passed.
        details: the motor node's measurements (free-form JSON).
        at: when it ended [s since the epoch].
        duration_s: how long it took [s].
        max_error_rad, rms_error_rad: the residual of the response against the model [rad].
        reason: why it failed.

    Returns:
        False (nothing written) when the node has no row.
    """
    with db.transaction():
        if Node.get_or_none(Node.id == node_id) is None:
            return False
        SelfTest.create(node=node_id, ok=ok, details=details, at=at, duration_s=duration_s,
                        max_error_rad=max_error_rad, rms_error_rad=rms_error_rad,
                        reason=reason and reason[:2000])
        return True
