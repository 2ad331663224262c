"""The dashboard's Flask application factory and what every request shares.

:func:`create_app` builds the settings and policies once, opens the job database, starts the
process's single MQTT subscriber (:mod:`dashboard.hub`) and registers the blueprints; every
request gets a database connection, its user (``g.user``) and the security headers.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from flask import Flask, g, request, session
from flask_wtf.csrf import CSRFProtect

from dashboard import api, auth, charts, scaling, stream, ui, webhooks
from dashboard.accounts import TokenRefused, check_token
from dashboard.bodies import register_json_limits
from dashboard.config import DashboardConfig, check_secret_key
from dashboard.errors import register_error_handlers
from dashboard.hub import Hub, Subscriber
from dashboard.submission import Limits
from dashboard.throttle import install_login_limits
from dispatcher.limits import QueueLimits
from dispatcher.models import Owner, database, init_db
from dispatcher.webhooks import WebhookConfig
from gym_raas_mqtt.config import load
from gym_raas_mqtt.mqtt import BrokerAddress

csrf = CSRFProtect()
UPLOAD_OVERHEAD_BYTES = 64 * 1024  # multipart framing and form fields around the archive

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the dashboard application.

    Args:
        test_config: Flask config overrides. ``RAAS_CONFIG`` may hold a ready
            :class:`DashboardConfig`; ``TESTING=True`` allows a generated secret key; ``RAAS_HUB``
            may hold a :class:`~dashboard.hub.Hub` to use instead of starting a subscriber;
            ``RAAS_WEBHOOKS`` a :class:`~dispatcher.webhooks.WebhookConfig`.

    Raises:
        ConfigError: invalid settings, or (outside tests) a missing or development secret key.
    """
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
    app.extensions["raas_limits"] = Limits(cfg.max_upload_bytes, cfg.max_unpacked_bytes,
                                           cfg.max_archive_members)
    # the queue owns the time-limit policy (RAAS_*_TIME_LIMIT_S): built once, passed to each call
    app.extensions["raas_queue_limits"] = load(QueueLimits)
    # which webhook URLs users may add (RAAS_WEBHOOK_*); tests pass RAAS_WEBHOOKS
    app.extensions["raas_webhooks"] = test_config.pop("RAAS_WEBHOOKS", None) or load(WebhookConfig)

    init_db(cfg.database_url)
    register_json_limits(app, cfg.max_json_bytes, cfg.max_json_depth)
    _register_db_hooks(app)
    _register_user_loading(app)

    hub = test_config.get("RAAS_HUB")
    if hub is None:
        hub = Hub(cfg.sse_max_streams, cfg.sse_max_streams_per_user, cfg.sse_queue_size)
        if cfg.broker_url:
            address = BrokerAddress.parse(cfg.broker_url, username=cfg.broker_username,
                                          password_file=cfg.broker_password_file,
                                          ca_file=cfg.broker_ca_file)
            subscriber = Subscriber(hub, address)
            subscriber.start()
            app.extensions["raas_subscriber"] = subscriber
    app.extensions["raas_hub"] = hub

    csrf.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(ui.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(stream.bp)
    app.register_blueprint(charts.bp)
    app.register_blueprint(webhooks.api_bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(scaling.api_bp)
    app.register_blueprint(scaling.bp)
    csrf.exempt(api.bp)
    csrf.exempt(webhooks.api_bp)
    csrf.exempt(scaling.api_bp)
    register_error_handlers(app)
    install_login_limits(app, cfg.login_limit_per_account, cfg.login_limit_per_address)

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

    @app.before_request
    def db_connect() -> None:
        database.connect(reuse_if_open=True)

    @app.teardown_request
    def db_close(exc: BaseException | None) -> None:
        if not database.is_closed():
            database.close()


def _register_user_loading(app: Flask) -> None:
    """``g.user``: the bearer token's owner on API and stream paths, else the session's user.

    With a token, ``g.token_id`` is its id; a refused token leaves ``g.user`` None and says why
    in ``g.token_refused``.
    """

    @app.before_request
    def load_user() -> None:
        g.user, g.via_token, g.token_id, g.token_refused = None, False, None, None
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer " and (request.path.startswith("/api/")
                                                or request.path.startswith("/stream")):
            try:
                row = check_token(header[7:].strip())
            except TokenRefused as e:
                g.token_refused = str(e)
                return
            g.user, g.via_token, g.token_id = row.owner, True, row.id
            return
        name = session.get("user")
        if isinstance(name, str):
            g.user = Owner.get_or_none(Owner.name == name)
            if g.user is None:
                session.clear()
