"""The node registry: the only writer of the ``Node`` table (the dispatcher's record of the fleet).

Rows are rebuilt from the nodes' retained messages, in batches: :meth:`NodeRegistry.note` collects
changes per node in memory, :meth:`NodeRegistry.flush` upserts them in one transaction. A node's
row is created by whichever of its messages arrives first (a ``meta`` may come before its
``state``), so every insert carries every required column; on conflict only what changed is
written. The operator's columns (``draining``, ``maintenance_reason``) and the accounting's
(``run_seconds``, ``error_streak``) are never overwritten by presence: they change only through
the functions below. :func:`execution_ended` runs inside the transaction that ends an execution
(:mod:`dispatcher.queue.transitions`), so an execution is accounted exactly once, whoever ends it
and however often the dispatcher restarts. A node's signing key (``public_key``) is enrolled from
its meta by :func:`enroll_key` — the first one wins — and changed only by an admin's
:func:`reset_key`.
"""

from __future__ import annotations

import logging
from typing import Any, Collection

from dispatcher import db
from dispatcher.models import Node, SelfTest
from gym_raas_mqtt.bundle_signature import SignatureError, decode_public_key
from gym_raas_mqtt.protocol import JobState, NodeStatus

log = logging.getLogger(__name__)

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


def standby_nodes() -> set[str]:
    """Nodes kept in standby (by the autoscaler or an operator): they get no job until woken."""
    return {row[0] for row in db.execute('SELECT "id" FROM "node" WHERE "standby" = ?',
                                         True).fetchall()}


def set_standby(node_ids: Collection[str], standby: bool, at: float) -> set[str]:
    """Keep ``node_ids`` in standby (or wake them, at ``at`` [s since the epoch]: recorded as a
    boot) in one transaction; returns the nodes whose flag changed."""
    changed = set()
    with db.transaction():
        for node_id in node_ids:
            if db.update("node", {"standby": standby},
                         '"id" = ? AND COALESCE("standby", ?) <> ?', node_id, False,
                         standby) == 1:
                changed.add(node_id)
                if not standby:
                    record_boot(node_id, at, "wake")
    return changed


def record_boot(node_id: str, at: float, cause: str) -> None:
    """Note that ``node_id`` started on its way online at ``at`` [s since the epoch]; ``cause``
    is ``birth`` (its agent started) or ``wake``."""
    with db.transaction():
        db.execute('INSERT INTO "nodeboot" ("node_id", "at", "cause") VALUES (?, ?, ?)',
                   node_id, at, cause)


def recent_errors(since: float) -> dict[str, int]:
    """Per node, executions ended ``error`` and failed self-tests since ``since`` [s since the
    epoch] (nodes with none are absent)."""
    rows = db.execute(
        'SELECT "node_id", COUNT(*) FROM "execution" WHERE "state" = ? AND "finished_at" >= ? '
        'GROUP BY "node_id" UNION ALL SELECT "node_id", COUNT(*) FROM "selftest" '
        'WHERE "ok" = ? AND "at" >= ? GROUP BY "node_id"',
        JobState.ERROR.value, since, False, since).fetchall()
    out: dict[str, int] = {}
    for node_id, n in rows:
        out[node_id] = out.get(node_id, 0) + int(n)
    return out


# ---------------------------------------------------------------------------------- signing keys
def enroll_key(node_id: str, public_key: str, at: float) -> str:
    """Record the public key (base64 Ed25519) that ``node_id`` announces; the first key seen for
    a node id is kept (a row is created if the node has none yet).

    Returns:
        ``"enrolled"`` (its first key, stored at ``at`` [s since the epoch]), ``"same"`` (the
        enrolled one), ``"refused"`` (another key: the enrolled one stays until an admin resets
        it with :func:`reset_key`; logged) or ``"invalid"`` (not a key; logged).
    """
    try:
        decode_public_key(public_key)
    except SignatureError as e:
        log.warning("node %s announced an invalid signing key (%s): ignored", node_id, e)
        return "invalid"
    verdict = _enroll_key(node_id, public_key, at)
    if verdict == "refused":
        log.warning("node %s announced a signing key %.12s… other than its enrolled one: refused "
                    "(its bundles will not verify; an admin resets the key if the node was "
                    "rebuilt)", node_id, public_key)
    elif verdict == "enrolled":
        log.info("node %s: signing key %.12s… enrolled", node_id, public_key)
    return verdict


def _enroll_key(node_id: str, public_key: str, at: float) -> str:
    with db.transaction():
        row = db.execute('SELECT "public_key" FROM "node" WHERE "id" = ?', node_id).fetchone()
        if row is not None and row[0] is not None:
            return "same" if row[0] == public_key else "refused"
        if row is None:
            fields = {**NEW_ROW, "public_key": public_key, "public_key_at": at}
            cols = ", ".join(f'"{c}"' for c in fields)
            db.execute(f'INSERT INTO "node" ("id", {cols}) VALUES (?, '
                       f'{", ".join("?" for _ in fields)})', node_id, *fields.values())
        else:
            db.update("node", {"public_key": public_key, "public_key_at": at}, '"id" = ?',
                      node_id)
        return "enrolled"


def reset_key(node_id: str, public_key: str | None, at: float) -> bool:
    """An admin's reset of ``node_id``'s enrolled key: to ``public_key`` (base64 Ed25519), or
    to none (the next key it announces is enrolled); returns False when the node is unknown."""
    with db.transaction():
        return db.update("node", {"public_key": public_key,
                                  "public_key_at": at if public_key else None},
                         '"id" = ?', node_id) == 1


def fleet_keys() -> dict[str, tuple[str, float | None]]:
    """Every enrolled key: ``{node_id: (base64 public key, enrolled at [s since the epoch])}``."""
    return {n: (k, at) for n, k, at in db.execute(
        'SELECT "id", "public_key", "public_key_at" FROM "node" WHERE "public_key" IS NOT NULL '
        'ORDER BY "id"').fetchall()}


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
