"""The web dashboard: the Flask application factory and what every request shares.

Blueprints: ``auth`` (login, account, tokens), ``ui`` (server-rendered pages), ``api`` (JSON
under ``/api/v1``, bearer tokens, CSRF-exempt) and ``stream`` (server-sent live updates fed by the
process's single MQTT subscriber, :mod:`dashboard.hub`).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from datetime import timedelta
from typing import Any

from flask import Flask, g, jsonify, render_template, request, session
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from dashboard.config import DashboardConfig, check_secret_key
from dashboard.hub import Hub, Subscriber
from dashboard.submission import Limits
from dispatcher.limits import QueueLimits
from gym_raas_mqtt.config import load

log = logging.getLogger(__name__)
csrf = CSRFProtect()
UPLOAD_OVERHEAD_BYTES = 64 * 1024  # multipart framing and form fields around the archive

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the dashboard application.

    Args:
        test_config: Flask config overrides. ``RAAS_CONFIG`` may hold a ready
            :class:`DashboardConfig`; ``TESTING=True`` allows a generated secret key; ``RAAS_HUB``
            may hold a :class:`~dashboard.hub.Hub` to use instead of starting a subscriber.

    Raises:
        ConfigError: invalid settings, or (outside tests) a missing or development secret key.
    """
    from dispatcher.models import init_db

    test_config = dict(test_config or {})
    cfg: DashboardConfig = test_config.pop("RAAS_CONFIG", None) or load(DashboardConfig)
    cfg.check()
    testing = bool(test_config.get("TESTING"))
    key = test_config.pop("SECRET_KEY", None) or cfg.resolved_secret_key()
    if testing and not key:
        key = secrets.token_urlsafe(48)
    key = check_secret_key(key)

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=cfg.secure_cookies,
        SESSION_COOKIE_NAME="raas_session",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=cfg.session_lifetime_s),
        MAX_CONTENT_LENGTH=cfg.max_upload_bytes + UPLOAD_OVERHEAD_BYTES,
        MAX_FORM_MEMORY_SIZE=cfg.max_upload_bytes + UPLOAD_OVERHEAD_BYTES,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
    )
    app.config.update(test_config)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["raas_config"] = cfg
    queue_limits = load(QueueLimits)  # the queue owns the time-limit policy (RAAS_*_TIME_LIMIT_S)
    app.extensions["raas_limits"] = Limits(
        cfg.max_upload_bytes, cfg.max_unpacked_bytes, cfg.max_archive_members,
        queue_limits.min_time_limit_s, queue_limits.max_time_limit_s,
        queue_limits.default_time_limit_s)

    init_db(cfg.database_url)
    _register_db_hooks(app)
    _register_user_loading(app)

    hub = test_config.get("RAAS_HUB")
    if hub is None:
        hub = Hub(cfg.sse_max_streams, cfg.sse_max_streams_per_user, cfg.sse_queue_size)
        if cfg.broker_url:
            from gym_raas_mqtt.mqtt import BrokerAddress

            address = BrokerAddress.parse(cfg.broker_url, username=cfg.broker_username,
                                          password_file=cfg.broker_password_file)
            subscriber = Subscriber(hub, address)
            subscriber.start()
            app.extensions["raas_subscriber"] = subscriber
    app.extensions["raas_hub"] = hub

    from dashboard import api, auth, stream, ui

    csrf.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(ui.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(stream.bp)
    csrf.exempt(api.bp)
    _register_errors(app)

    @app.after_request
    def security_headers(resp: Any) -> Any:
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        return resp

    return app


def _register_db_hooks(app: Flask) -> None:
    """One database connection per request (peewee's recommended Flask pattern)."""
    from dispatcher.models import database

    @app.before_request
    def db_connect() -> None:
        database.connect(reuse_if_open=True)

    @app.teardown_request
    def db_close(exc: BaseException | None) -> None:
        if not database.is_closed():
            database.close()


def _register_user_loading(app: Flask) -> None:
    from dashboard.accounts import owner_for_token
    from dispatcher.models import Owner

    @app.before_request
    def load_user() -> None:
        g.user = None
        g.via_token = False
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer " and (request.path.startswith("/api/")
                                                or request.path.startswith("/stream")):
            g.user = owner_for_token(header[7:].strip())
            g.via_token = g.user is not None
            return
        name = session.get("user")
        if isinstance(name, str):
            g.user = Owner.get_or_none(Owner.name == name)
            if g.user is None:
                session.clear()


def wants_json() -> bool:
    """API and stream paths answer errors in JSON; pages answer in HTML."""
    return request.path.startswith("/api/") or request.path.startswith("/stream")


def json_error(status: int, error: str, reason: str) -> Any:
    """A JSON error response ``{"error": ..., "reason": ...}`` with ``status``."""
    resp = jsonify({"error": error, "reason": reason})
    resp.status_code = status
    return resp


def _register_errors(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(e: CSRFError) -> Any:
        if wants_json():
            return json_error(400, "csrf", e.description)
        return render_template("error.html", status=400,
                               reason=f"{e.description} Reload the page and try again."), 400

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Any:
        status = e.code or 500
        name = (e.name or "error").lower().replace(" ", "_")
        if wants_json():
            return json_error(status, name, e.description or name)
        return render_template("error.html", status=status, reason=e.description), status

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> Any:
        log.exception("unhandled error on %s %s", request.method, request.path)
        if wants_json():
            return json_error(500, "internal", "internal error; the administrator has the log")
        return render_template("error.html", status=500, reason="Internal error."), 500


def config_of(app: Flask) -> DashboardConfig:
    return app.extensions["raas_config"]


def replace_config(cfg: DashboardConfig, **changes: Any) -> DashboardConfig:
    """A copy of ``cfg`` with ``changes`` (tests build configs with this)."""
    return dataclasses.replace(cfg, **changes)
