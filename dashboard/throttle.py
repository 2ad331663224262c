"""Login throttling: per-account and per-address limits on the login form and ``POST
/api/v1/tokens`` (Flask-Limiter on the platform database), and their 429 answers.

Both ways of presenting a password share two buckets, so an attacker gains nothing by alternating
between them:

* per account: the *failed* attempts (answered 401) naming one user name, whether or not that
  user exists, so the answers and their timing do not reveal which accounts exist;
* per address: every attempt from one client address, so trying many user names (or a correct
  password of another account) from an address that is guessing is throttled too.

A throttled attempt is answered 429 with ``Retry-After`` [s]: the login page with the reason for
the form, ``{"error": "too_many_requests", "reason": ...}`` for the API. The counters live in
:class:`~dashboard.limit_store.DatabaseStorage`, so they hold across threads and processes.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any, Callable

from flask import Flask, Response, make_response, render_template, request
from flask_limiter import Limiter, RateLimitExceeded

from dashboard.errors import json_error, wants_json
from dashboard.limit_store import SCHEME

LOGIN_ENDPOINTS = ("auth.login", "api.create_token")
"""The views that check a password (the login form and the API's token exchange)."""


def client_address() -> str:
    """The client's address as the server sees it (the peer; see docs/api.md about proxies)."""
    return request.remote_addr or "unknown"


def account_key() -> str:
    """A fixed-length key for the user name an attempt names (form field or JSON body)."""
    if request.is_json:
        body = request.get_json(silent=True)
        name = body.get("username") if isinstance(body, dict) else None
    else:
        name = request.form.get("username")
    text = name if isinstance(name, str) else ""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def refused(response: Response) -> bool:
    """Whether a login attempt failed (wrong user name or password): only those count per account."""
    return response.status_code == 401


def install_login_limits(app: Flask, per_account: str, per_address: str) -> Limiter:
    """Throttle the views of :data:`LOGIN_ENDPOINTS` in ``app`` (call after the blueprints).

    Args:
        app: the dashboard application; its models must be bound to the database.
        per_account: failed attempts allowed per user name, e.g. ``"5/minute;20/hour"``.
        per_address: attempts allowed per client address, e.g. ``"30/minute"``.

    Returns:
        The app's limiter.
    """
    # every limit is evaluated on every attempt (not only up to the first breached one), so an
    # address keeps counting while one of its accounts is throttled
    limiter = Limiter(client_address, storage_uri=f"{SCHEME}://", strategy="fixed-window",
                      fail_on_first_breach=False)
    limiter.init_app(app)
    by_account = limiter.shared_limit(
        per_account, scope="login-account", key_func=account_key, methods=["POST"],
        deduct_when=refused, error_message="too many failed logins for this user name")
    by_address = limiter.shared_limit(
        per_address, scope="login-address", key_func=client_address, methods=["POST"],
        error_message="too many login attempts from your address")
    # wrapped here rather than decorated where defined: the limits are settings of this app
    for endpoint in LOGIN_ENDPOINTS:
        app.view_functions[endpoint] = by_account(by_address(app.view_functions[endpoint]))
    app.register_error_handler(RateLimitExceeded, too_many_attempts_handler(limiter))
    return limiter


def retry_after_s(limiter: Limiter) -> int:
    """Whole seconds until every limit the current request broke has a new window (>= 1)."""
    broken = [lim for lim in limiter.current_limits if lim.breached]
    ends = [lim.reset_at for lim in broken] or [time.time() + 1]
    return max(1, math.ceil(max(ends) - time.time()))


def too_many_attempts_handler(limiter: Limiter) -> Callable[[RateLimitExceeded], Any]:
    """The 429 answer of ``limiter``'s app: the login page or JSON, with ``Retry-After``."""

    def too_many_attempts(e: RateLimitExceeded) -> Any:
        wait_s = retry_after_s(limiter)
        reason = f"{e.description}; try again in {wait_s} s"
        if wants_json():
            resp = json_error(429, "too_many_requests", reason)
        else:
            name = request.form.get("username", "")[:64]
            resp = make_response(render_template(
                "login.html", error=reason[0].upper() + reason[1:] + ".", username=name), 429)
        resp.headers["Retry-After"] = str(wait_s)
        return resp

    return too_many_attempts
