"""The fleet page's scaling panel and the operators' standby and wake: its JSON API and buttons.

``GET /api/v1/fleet/samples`` returns the dispatcher's fleet samples of a rolling window
(arrivals, queue, idle/busy/booting/standby/online stations; :mod:`dispatcher.autoscale`) and its
last scaling decision; the panel (static/scaling.js) draws them. ``POST /api/v1/nodes/<id>/standby``
and ``.../wake`` (admins, a bearer token) and the fleet page's buttons write ``Node.standby``
through :mod:`dispatcher.nodes`; the dispatcher picks the change up within a tick, stops (or
resumes) assigning to the node and tells its agent.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, abort, flash, jsonify, redirect, request, url_for

from dashboard import fleet
from dashboard.api import ApiError, require_auth
from dashboard.auth import login_required
from dashboard.errors import json_error
from dispatcher import nodes
from dispatcher.models import FleetSample, Node, ScalingDecision

api_bp = Blueprint("scaling_api", __name__, url_prefix="/api/v1")
bp = Blueprint("scaling", __name__)
api_bp.before_request(require_auth)

WINDOW_DEFAULT_S, WINDOW_MIN_S, WINDOW_MAX_S = 3600, 60, 7 * 86400
"""The panel's rolling window [s]: default and bounds of ``window_s``."""
SAMPLES_MAX = 2000
"""Samples returned at most (the newest; a longer window is thinned evenly)."""
SAMPLE_FIELDS = ("t", "arrivals", "queued", "idle", "busy", "booting", "standby", "online")


@api_bp.errorhandler(ApiError)
def api_error(e: ApiError) -> Any:
    """Answer a refused request as ``{"error", "reason"}``."""
    return json_error(e.status, e.error, e.reason)


def decision_view(d: ScalingDecision | None) -> dict[str, Any] | None:
    """A scaling decision as JSON-ready data (None stays None)."""
    if d is None:
        return None
    return {"t": d.t, "policy": d.policy, "action": d.action, "online": d.online,
            "target": d.target, "woke": d.woke or [], "slept": d.slept or [], "reason": d.reason}


def samples(window_s: float, now: float) -> list[dict[str, Any]]:
    """The fleet samples of the last ``window_s`` [s] before ``now``, oldest first, at most
    :data:`SAMPLES_MAX` (evenly thinned)."""
    columns = [getattr(FleetSample, name) for name in SAMPLE_FIELDS]
    rows = list(FleetSample.select(*columns).where(FleetSample.t >= now - window_s)
                .order_by(FleetSample.t).dicts())
    return rows[::max(1, -(-len(rows) // SAMPLES_MAX))]


@api_bp.get("/fleet/samples")
def get_samples() -> Any:
    """The scaling panel's data: fleet samples of the window and the last decision."""
    raw = request.args.get("window_s", str(WINDOW_DEFAULT_S))
    if not (raw.isascii() and raw.isdigit() and WINDOW_MIN_S <= int(raw) <= WINDOW_MAX_S):
        raise ApiError(400, "invalid", f"window_s must be an integer from {WINDOW_MIN_S} to "
                                       f"{WINDOW_MAX_S} [s]")
    now = time.time()
    last = ScalingDecision.select().order_by(ScalingDecision.t.desc()).first()
    return jsonify({"window_s": int(raw), "now": now, "samples": samples(int(raw), now),
                    "last_decision": decision_view(last)})


def set_standby(node_id: str, standby: bool) -> dict[str, Any]:
    """Keep a node in standby (or wake it) as the logged-in admin; returns its view.

    Aborts 403 for anyone but an admin, 404 for a node the dispatcher has never seen.
    """
    fleet.require_admin_for(node_id, "put a node in standby or wake it")
    if Node.get_or_none(Node.id == node_id) is None:
        abort(404, description=f"no node {node_id!r}")
    nodes.set_standby([node_id], standby, time.time())
    return next(v for v in fleet.node_views() if v["id"] == node_id)


@api_bp.post("/nodes/<node_id>/standby")
def standby_node(node_id: str) -> Any:
    """Put a node in standby (admins): once idle its motor is off and it gets no job."""
    return jsonify(set_standby(node_id, True))


@api_bp.post("/nodes/<node_id>/wake")
def wake_node(node_id: str) -> Any:
    """Wake a node in standby (admins): it resets and self-tests, then gets jobs again."""
    return jsonify(set_standby(node_id, False))


@bp.post("/fleet/<node_id>/power/<action>")
@login_required
def power_action(node_id: str, action: str) -> Any:
    """An operator's standby or wake button on the fleet page (admins)."""
    if action not in ("standby", "wake"):
        abort(404)
    set_standby(node_id, action == "standby")
    flash(f"Node {node_id} goes to standby once idle: motor off, no job until woken."
          if action == "standby" else
          f"Node {node_id} wakes: it resets and self-tests, then takes jobs again.")
    return redirect(url_for("ui.fleet_page"))
