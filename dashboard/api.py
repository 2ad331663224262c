"""The JSON API under ``/api/v1`` (documented by ``/api/v1/openapi.json``).

Authentication is ``Authorization: Bearer <token>``; a logged-in browser session may also *read*
(GET) so the pages' scripts can use the same endpoints. Changes need a token, which is why this
blueprint is exempt from CSRF protection. Errors are ``{"error": ..., "reason": ...}`` with a 4xx
status; bad input never yields a 500.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, jsonify, request

from broker_config.provision import ensure_user, user_username
from dashboard import accounts, fleet, jobs, openapi, runs, telemetry, timeline
from dashboard.errors import json_error
from dashboard.submission import (SubmissionError, archive_source, check_time_limit, git_source,
                                  run_metadata, text_metadata)
from dashboard.submission import submit as submit_job
from dispatcher import queue
from dispatcher.models import ApiToken, Job
from gym_raas_mqtt import protocol
from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.mqtt import BrokerAddress
from gym_raas_mqtt.mqtt.address import DEFAULT_PORTS
from gym_raas_mqtt.protocol import JobState

bp = Blueprint("api", __name__, url_prefix="/api/v1")
PUBLIC_ENDPOINTS = {"api.openapi_document", "api.create_token"}
METADATA_FIELDS = ("name", "tags", "notes", "args", "env")
"""A submission's run metadata, in the order of :func:`dashboard.submission.run_metadata`."""


class ApiError(Exception):
    """A request the API refuses: answered as ``{"error", "reason"}`` with ``status``."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason = status, error, reason


@bp.errorhandler(ApiError)
def _api_error(e: ApiError) -> Any:
    return json_error(e.status, e.error, e.reason)


@bp.errorhandler(SubmissionError)
def _submission_error(e: SubmissionError) -> Any:
    error = {413: "too_large", 415: "unsupported_media_type"}.get(e.status, "invalid")
    resp = jsonify({"error": error, "reason": str(e), "field": e.field})
    resp.status_code = e.status
    return resp


@bp.before_request
def require_auth() -> Any:
    """401 without a user; changes (not GET/HEAD) need a bearer token, not a session."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if g.user is None:
        resp = json_error(401, "unauthorized", g.token_refused or "log in: send 'Authorization: "
                          "Bearer <token>' (create one with `raas login`)")
        resp.headers["WWW-Authenticate"] = 'Bearer realm="raas"'
        return resp
    if request.method not in ("GET", "HEAD") and not g.via_token:
        return json_error(401, "unauthorized", "changes through the API need a bearer token")
    return None


def _json_body() -> dict[str, Any]:
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send application/json")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid", "the body must be a JSON object")
    return body


# -- documents and accounts --------------------------------------------------------------------
@bp.get("/openapi.json")
def openapi_document() -> Any:
    """The OpenAPI document of this API (public)."""
    return jsonify(openapi.document())


@bp.post("/tokens")
def create_token() -> Any:
    """Exchange a user name and password for a new API token (what ``raas login`` does); throttled
    per user name and per address (:mod:`dashboard.throttle`)."""
    body = _json_body()
    name, password = body.get("username"), body.get("password")
    if not isinstance(name, str) or not isinstance(password, str) or not name or not password:
        raise ApiError(400, "invalid", "username and password (strings) are required")
    label = body.get("name", "cli")
    if not isinstance(label, str) or len(label) > 64:
        raise ApiError(400, "invalid", "name must be a string of at most 64 characters")
    owner = accounts.authenticate(name, password)
    if owner is None:
        raise ApiError(401, "unauthorized", "wrong user name or password")
    lifetime_s = current_app.extensions["raas_config"].token_lifetime_s
    token = accounts.issue_token(owner, label or "cli", lifetime_s=lifetime_s)
    row = ApiToken.get(ApiToken.token_hash == accounts.hash_token(token))
    return jsonify({"token": token, "user": owner.name, "id": row.id,
                    "expires_at": row.expires_at}), 201


@bp.get("/tokens")
def list_tokens() -> Any:
    """The caller's API tokens (active, expired and revoked; never their values)."""
    return jsonify({"tokens": [accounts.token_view(t, g.token_id)
                               for t in accounts.user_tokens(g.user.name)]})


@bp.delete("/tokens/<token_id>")
def revoke_token(token_id: str) -> Any:
    """Revoke one of the caller's API tokens (404 for anyone else's)."""
    # ids are database integers: any other path names no token (and never reaches the query)
    is_id = token_id.isascii() and token_id.isdigit() and len(token_id) <= 18
    row = accounts.revoke_token(g.user.name, int(token_id)) if is_id else None
    if row is None:
        raise ApiError(404, "not_found", f"you have no token {token_id}")
    return jsonify(accounts.token_view(row, g.token_id))


def broker_info() -> dict[str, Any]:
    """How a user reaches their own job topics on the central broker (no password); over TLS,
    with the CA certificate to verify it (PEM, None when the broker's is publicly trusted)."""
    cfg = current_app.extensions["raas_config"]
    url = cfg.public_broker_url or cfg.broker_url
    parts = urlsplit(url) if url else None
    tls = bool(parts and parts.scheme == "mqtts")
    return {"url": url, "host": parts.hostname if parts else None,
            "port": (parts.port or DEFAULT_PORTS.get(parts.scheme, 1883)) if parts else None,
            "tls": tls,
            "ca_certificate": Path(cfg.broker_ca_file).read_text()
            if tls and cfg.broker_ca_file else None,
            "username": user_username(g.user.name),
            "topic_filter": protocol.job_filter(g.user.name),
            "credentials_available": bool(cfg.broker_admin_url)}


@bp.get("/me")
def me() -> Any:
    """The caller's account and how they reach the broker."""
    u = g.user
    return jsonify({"name": u.name, "is_admin": u.is_admin, "max_running": u.max_running,
                    "broker": broker_info()})


def issue_broker_password() -> dict[str, Any]:
    """Create or refresh the user's read-only central-broker login (A1's ``ensure_user``).

    Raises:
        ApiError: 503 when the dashboard has no broker admin address configured.
    """
    cfg = current_app.extensions["raas_config"]
    if not cfg.broker_admin_url:
        raise ApiError(503, "unavailable", "this dashboard cannot issue broker credentials; ask "
                       "the operator (RAAS_DASHBOARD_BROKER_ADMIN_URL is not set)")
    admin = BrokerAddress.parse(cfg.broker_admin_url,
                                password_file=cfg.broker_admin_password_file,
                                ca_file=cfg.broker_ca_file)
    try:
        password = ensure_user(admin, g.user.name)
    except (RaasError, OSError) as e:
        raise ApiError(503, "unavailable", f"the broker did not create your login: {e}") from None
    return broker_info() | {"password": password}


@bp.post("/me/broker-credentials")
def broker_credentials() -> Any:
    """Issue (or refresh) the caller's read-only broker password."""
    return jsonify(issue_broker_password())


# -- jobs ----------------------------------------------------------------------------------------
@bp.post("/jobs")
def create_job() -> Any:
    """Submit a job: a git URL (JSON) or an uploaded archive (multipart)."""
    limits = current_app.extensions["raas_limits"]
    queue_limits = current_app.extensions["raas_queue_limits"]
    ctype = request.mimetype
    if ctype == "application/json":
        body = _json_body()
        unknown = set(body) - {"url", "ref", "time_limit_s", *METADATA_FIELDS}
        if unknown:
            raise ApiError(400, "invalid", f"unknown field(s): {', '.join(sorted(unknown))[:200]}")
        meta = run_metadata(*(body.get(k) for k in METADATA_FIELDS))
        source = git_source(body.get("url"), body.get("ref"))
        time_limit = check_time_limit(body.get("time_limit_s"), queue_limits)
    elif ctype == "multipart/form-data":
        upload = request.files.get("archive")
        if upload is None:
            raise ApiError(400, "invalid", "multipart submissions need an 'archive' file part")
        time_limit = check_time_limit(request.form.get("time_limit_s"), queue_limits)
        meta = text_metadata(request.form)
        data = upload.stream.read(limits.max_upload_bytes + 1)
        source = archive_source(jobs.store(), g.user.name, upload.filename or "", data, limits)
    else:
        raise ApiError(415, "unsupported_media_type", "send application/json (git) or "
                       "multipart/form-data with an 'archive' part (.tar.gz/.zip)")
    try:
        job = submit_job(g.user.name, source, time_limit, queue_limits, meta)
    except RaasError as e:
        raise ApiError(400, "rejected", str(e)) from None
    resp = jsonify(jobs.job_view(Job.get_by_id(job.id), detail=True))
    resp.status_code = 201
    resp.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return resp


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid", f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise ApiError(400, "invalid", f"{name} must be between {lo} and {hi}")
    return value


@bp.get("/jobs")
def list_jobs() -> Any:
    """The runs table: the caller's jobs (an admin's: everyone's), sorted, filtered, searched
    and paginated on the server (:mod:`dashboard.runs`)."""
    try:
        query = runs.parse_query(request.args, g.user)
    except runs.RunsQueryError as e:
        raise ApiError(e.status, "forbidden" if e.status == 403 else "invalid", str(e)) from None
    page = runs.runs_page(query, g.user)
    return jsonify({"jobs": jobs.job_views(page.jobs), "total": page.total,
                    "page": query.page, "pages": page.pages, "per_page": query.per_page,
                    "sort": query.sort})


@bp.get("/jobs/<job_id>")
def get_job(job_id: str) -> Any:
    """One job in detail (with live progress while it runs)."""
    return jsonify(jobs.job_view(jobs.load_job(job_id), detail=True))


@bp.get("/jobs/<job_id>/events")
def get_job_events(job_id: str) -> Any:
    """A job's event timeline and live facts (:mod:`dashboard.timeline`)."""
    job = jobs.load_job(job_id)
    return jsonify({"job_id": job.id, "state": job.state, "events": timeline.job_timeline(job),
                    "facts": timeline.live_facts(job, jobs.hub().live_progress(job.id),
                                                 jobs.queue_position(job))})


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> Any:
    """Cancel a job (202: a running job is stopped by its node)."""
    job = jobs.load_job(job_id)
    if JobState(job.state).terminal:
        raise ApiError(409, "conflict", f"job {job.id} already ended ({job.state})")
    try:
        queue.cancel(job.id, g.user.name, limits=current_app.extensions["raas_queue_limits"])
    except RaasError as e:  # it ended between our read and the queue's update
        raise ApiError(409, "conflict", str(e)) from None
    return jsonify(jobs.job_view(Job.get_by_id(job.id), detail=True)), 202


@bp.get("/jobs/<job_id>/results")
def list_results(job_id: str) -> Any:
    """The files of a job's result bundle."""
    job = jobs.load_job(job_id)
    files = [f | {"url": f"/api/v1/jobs/{job.id}/results/{f['name']}"}
             for f in jobs.result_files(job)]
    return jsonify({"job_id": job.id, "state": job.state, "files": files})


@bp.get("/jobs/<job_id>/results/<name>")
def get_result(job_id: str, name: str) -> Any:
    """One result file (``plot.png`` inline, the others as attachments)."""
    job = jobs.load_job(job_id)
    data, ctype = jobs.result_bytes(job, name)
    disposition = "inline" if name in ("plot.png", "sim_vs_real.png") else "attachment"
    return Response(data, content_type=ctype, headers={
        "Content-Disposition": f'{disposition}; filename="{job.id}-{name}"',
        "Cache-Control": "private, max-age=60"})


@bp.get("/jobs/<job_id>/telemetry")
def get_telemetry(job_id: str) -> Any:
    """A finished job's telemetry as chart columns, min/max-decimated to ``max_points`` rows."""
    job = jobs.load_job(job_id)
    try:
        names = telemetry.parse_columns(request.args.get("columns"))
    except ValueError as e:
        raise ApiError(400, "invalid", f"columns: {e}") from None
    max_points = _int_arg("max_points", telemetry.DEFAULT_MAX_POINTS,
                          *telemetry.MAX_POINTS_RANGE)
    try:
        payload = telemetry.job_chart(job, names, max_points)
    except telemetry.TelemetryUnavailable as e:
        raise ApiError(e.status, e.error, e.reason) from None
    resp = jsonify(payload)
    resp.headers["Cache-Control"] = "private, max-age=60"
    return resp


@bp.get("/nodes")
def list_nodes() -> Any:
    """Every node with its live state, and whether the live data is current."""
    return jsonify({"nodes": fleet.node_views(), "live": jobs.hub().connected})


@bp.post("/nodes/<node_id>/drain")
def drain_node(node_id: str) -> Any:
    """Drain a node (admins): it finishes its job and gets no new one."""
    return jsonify(fleet.set_draining(node_id, True))


@bp.post("/nodes/<node_id>/resume")
def resume_node(node_id: str) -> Any:
    """Undo a drain (admins): the node gets jobs again."""
    return jsonify(fleet.set_draining(node_id, False))


@bp.get("/fleet/keys")
def fleet_keys() -> Any:
    """The fleet's public keys that sign result bundles (``raas verify --fetch-keys``)."""
    return jsonify(fleet.fleet_keys())


@bp.post("/fleet/keys/<node_id>/reset")
def reset_fleet_key(node_id: str) -> Any:
    """Re-enroll a node's key (admins): the one it announces now, or the next one."""
    return jsonify(fleet.reset_key(node_id))
