"""The fleet as pages and the API show it, and what operators (admins) do to it: drain, resume, keys.

A node's view joins the dispatcher's row (run hours, drain, maintenance, last seen from its
heartbeats) with the live retained state/meta and the heartbeats the dashboard's subscriber has
seen, and its self-test history, newest first. Drain and resume are written through
:mod:`dispatcher.nodes` (the only writer of node rows); the dispatcher picks the change up within
a tick, stops (or resumes) assigning to the node and tells its agent.
"""

from __future__ import annotations

from typing import Any

from flask import abort, g

from dashboard.jobs import hub
from dispatcher import nodes
from dispatcher.models import now
from gym_raas_mqtt.bundle_signature import SignatureError, decode_public_key, keys_document
from dispatcher.models import Node, SelfTest
from gym_raas_mqtt import protocol
from gym_raas_mqtt.errors import ProtocolError

SELFTESTS_SHOWN = 10
"""Self-tests listed per node (newest first)."""


def selftest_view(t: SelfTest) -> dict[str, Any]:
    """One self-test as JSON-ready data (the API schema ``SelfTest``)."""
    return {"at": t.at, "ok": t.ok, "duration_s": t.duration_s, "max_error_rad": t.max_error_rad,
            "rms_error_rad": t.rms_error_rad, "reason": t.reason, "details": t.details}


def _selftests(node_id: str) -> list[dict[str, Any]]:
    rows = (SelfTest.select().where(SelfTest.node == node_id)
            .order_by(SelfTest.at.desc(), SelfTest.id.desc()).limit(SELFTESTS_SHOWN))
    return [selftest_view(t) for t in rows]


def node_views() -> list[dict[str, Any]]:
    """Every node (the API schema ``Node``): the dispatcher's row, overlaid with the live retained
    state/meta and heartbeats the dashboard's subscriber has seen, and the last self-tests."""
    live = hub().node_snapshot()
    rows = {n.id: n for n in Node.select().order_by(Node.id)}
    out = []
    for node_id in sorted(set(rows) | set(live)):
        n = rows.get(node_id)
        lv = live.get(node_id, {})
        st, meta, beat = lv.get("state") or {}, lv.get("meta") or {}, lv.get("heartbeat") or {}
        seen = [st.get("ts"), beat.get("ts"), n.last_seen if n else None]
        out.append({
            "id": node_id,
            "state": st.get("state") or (n.state if n else None),
            "current_job": st.get("job_id") if st else (n.current_job if n else None),
            "reason": st.get("reason") if st else (n.reason if n else None),
            "last_seen": max(filter(None, seen), default=None),
            "run_hours": round((n.run_seconds if n else 0.0) / 3600.0, 3),
            "backend": meta.get("backend") or (n.backend if n else None),
            "software_version": meta.get("software_version") or (n.software_version if n else None),
            "calibration_id": meta.get("calibration_id") or (n.calibration_id if n else None),
            "image_digest": meta.get("image_digest") or (n.image_digest if n else None),
            "draining": bool(n.draining) if n else False,
            "standby": bool(n.standby) if n else False,
            "maintenance": n.maintenance_reason if n else None,
            "error_streak": (n.error_streak or 0) if n else 0,
            "selftests": _selftests(node_id) if n is not None else [],
        })
    return out


def require_admin_for(node_id: str, action: str) -> None:
    """Abort 403 unless the logged-in user is an admin (``action``: what only operators may do,
    e.g. "drain or resume a node"), and 404 for a malformed node id."""
    if not g.user.is_admin:
        abort(403, description=f"only operators (admins) may {action}")
    try:
        protocol.check_id(node_id, "node id")
    except ProtocolError:
        abort(404, description=f"no node {node_id[:80]!r}")


def set_draining(node_id: str, draining: bool) -> dict[str, Any]:
    """Drain (or resume) a node as the logged-in admin; returns its view.

    Aborts 403 for anyone but an admin, 404 for a node the dispatcher has never seen.
    """
    require_admin_for(node_id, "drain or resume a node")
    if not nodes.set_draining(node_id, draining):
        abort(404, description=f"no node {node_id!r}")
    return next(v for v in node_views() if v["id"] == node_id)


def fleet_keys() -> dict[str, Any]:
    """The fleet's enrolled public keys as a keys document
    (:func:`gym_raas_mqtt.bundle_signature.keys_document`): what ``raas verify`` checks with."""
    return keys_document(nodes.fleet_keys())


def reset_key(node_id: str) -> dict[str, Any]:
    """Reset a node's enrolled key to the one it announces now (its live retained meta), or to
    none when it announces none (the next one is enrolled); admins only. Returns
    ``{node_id, public_key}``.

    Aborts 403 for anyone but an admin, 404 for a node the dispatcher has never seen.
    """
    require_admin_for(node_id, "reset a node's key")
    announced = (hub().node_snapshot().get(node_id, {}).get("meta") or {}).get("public_key")
    key = announced if isinstance(announced, str) else None
    try:
        decode_public_key(key)
    except SignatureError:
        key = None  # none, or not a key: the next valid one announced is enrolled
    if not nodes.reset_key(node_id, key, now()):
        abort(404, description=f"no node {node_id!r}")
    return {"node_id": node_id, "public_key": key}
