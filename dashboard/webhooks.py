"""Webhooks in the dashboard: the JSON API under ``/api/v1/webhooks`` and the account page's
section (add, delete, new secret, delivery log).

The URL checks, secrets and delivery rows are :mod:`dispatcher.webhooks`'; the dispatcher sends
the deliveries. A new secret is shown once, in the answer that made it (the API's ``secret``
field, or the account page rendered by the form's POST).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, g, jsonify, redirect, request, url_for

from dashboard import auth
from dashboard.api import ApiError, require_auth
from dashboard.errors import json_error
from dispatcher.webhooks import UrlRefused, registry
from dispatcher.webhooks.outbox import recent
from dispatcher.webhooks.registry import TooManyWebhooks

api_bp = Blueprint("webhooks_api", __name__, url_prefix="/api/v1/webhooks")
bp = Blueprint("webhooks", __name__)
LOG_DEFAULT, LOG_MAX = 20, 200
"""Deliveries the log shows by default and at most."""


def policy() -> Any:
    """The webhook policy (:class:`~dispatcher.webhooks.WebhookConfig`), built once at start-up."""
    return current_app.extensions["raas_webhooks"]


api_bp.before_request(require_auth)


@api_bp.errorhandler(ApiError)
def api_error(e: ApiError) -> Any:
    """Answer a refused request as ``{"error", "reason"}``."""
    return json_error(e.status, e.error, e.reason)


def add_for_user(url: object) -> tuple[dict[str, Any], str | None]:
    """Add a webhook for ``g.user``; returns its view and the secret when one was made.

    Raises:
        ApiError: 400 with the reason the URL is refused, 409 when the user has too many.
    """
    try:
        hook, secret = registry.add(g.user.name, url, request.host_url.rstrip("/"), policy())
    except UrlRefused as e:
        raise ApiError(400, "invalid", str(e)) from None
    except TooManyWebhooks as e:
        raise ApiError(409, "conflict", str(e)) from None
    return registry.view(hook), secret


def webhook_id_of(raw: str) -> int | None:
    """A webhook id from a path segment (None: it names no webhook)."""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


# -- API -----------------------------------------------------------------------------------------
@api_bp.get("")
def list_webhooks() -> Any:
    """The caller's webhooks (never the secret) and whether they have a secret."""
    return jsonify({"webhooks": [registry.view(h) for h in registry.user_webhooks(g.user.name)],
                    "has_secret": registry.secret_of(g.user.name) is not None})


@api_bp.post("")
def create_webhook() -> Any:
    """Add a webhook; the answer carries the signing secret once, when this made it."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send application/json")
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or set(body) != {"url"}:
        raise ApiError(400, "invalid", 'the body must be {"url": "https://..."}')
    view, secret = add_for_user(body["url"])
    return jsonify(view | {"secret": secret}), 201


@api_bp.delete("/<webhook_id>")
def delete_webhook(webhook_id: str) -> Any:
    """Delete one of the caller's webhooks (404 for anyone else's)."""
    number = webhook_id_of(webhook_id)
    hook = registry.delete(g.user.name, number) if number is not None else None
    if hook is None:
        raise ApiError(404, "not_found", f"you have no webhook {webhook_id[:40]}")
    return jsonify(registry.view(hook))


@api_bp.post("/secret")
def rotate_secret() -> Any:
    """Make a new signing secret (shown once); later deliveries are signed with it."""
    return jsonify({"secret": registry.new_secret(g.user.name)}), 201


@api_bp.get("/deliveries")
def list_deliveries() -> Any:
    """The caller's last deliveries, newest first (``limit``, default 20, at most 200)."""
    raw = request.args.get("limit", str(LOG_DEFAULT))
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3 and 1 <= int(raw) <= LOG_MAX):
        raise ApiError(400, "invalid", f"limit must be an integer from 1 to {LOG_MAX}")
    return jsonify({"deliveries": recent(g.user.name, int(raw))})


# -- the account page's section ------------------------------------------------------------------
@bp.app_context_processor
def webhook_section() -> dict[str, Any]:
    """``webhook_section()`` for the account page: the user's webhooks, the delivery log, and
    what to show once (a new secret, a refusal)."""

    def section() -> dict[str, Any]:
        return {"webhooks": [registry.view(h) for h in registry.user_webhooks(g.user.name)],
                "deliveries": recent(g.user.name, LOG_DEFAULT),
                "new_secret": g.get("webhook_secret"), "error": g.get("webhook_error")}

    return {"webhook_section": section}


@bp.post("/account/webhooks")
@auth.login_required
def add_webhook() -> Any:
    """Add a webhook from the account page (its secret shown once)."""
    try:
        _, g.webhook_secret = add_for_user(request.form.get("url", "").strip())
    except ApiError as e:
        g.webhook_error = e.reason
        return auth.account(), e.status
    flash("Webhook added.")
    return auth.account()


@bp.post("/account/webhooks/<int:webhook_id>/delete")
@auth.login_required
def remove_webhook(webhook_id: int) -> Any:
    """Delete one of the user's webhooks."""
    if registry.delete(g.user.name, webhook_id) is None:
        abort(404, description="no such webhook")
    flash(f"Webhook {webhook_id} deleted.")
    return redirect(url_for("auth.account"))


@bp.post("/account/webhooks/secret")
@auth.login_required
def new_secret() -> Any:
    """Make a new signing secret and show it once."""
    g.webhook_secret = registry.new_secret(g.user.name)
    return auth.account()
