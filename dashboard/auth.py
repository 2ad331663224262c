"""Login, logout and the account page (API tokens, the user's own read-only broker login)."""

from __future__ import annotations

import functools
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import (Blueprint, abort, current_app, flash, g, redirect, render_template, request,
                   session, url_for)

from dashboard import accounts
from dashboard.api import ApiError, broker_info, issue_broker_password

bp = Blueprint("auth", __name__)


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Redirect anonymous visitors of a page to the login form (and back afterwards)."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.user is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after login (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("ui.jobs_page")
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else url_for("ui.jobs_page")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """The login form (GET) and a login (POST; back to ``next`` on success); throttled per user
    name and per address (:mod:`dashboard.throttle`)."""
    if request.method == "POST":
        name = request.form.get("username", "")
        owner = accounts.authenticate(name, request.form.get("password", ""))
        if owner is None:
            return render_template("login.html", error="Wrong user name or password.",
                                   username=name[:64]), 401
        session.clear()  # a fresh session (and CSRF token) per login
        session["user"] = owner.name
        session.permanent = True
        return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", error=None, username="")


@bp.post("/logout")
def logout() -> Any:
    """Forget the session."""
    session.clear()
    return redirect(url_for("auth.login"))


def _account_page(**extra: Any) -> Any:
    """The account page with the user's tokens and broker access, plus ``extra`` to show once."""
    tokens = [accounts.token_view(t) for t in accounts.user_tokens(g.user.name)]
    lifetime_days = current_app.extensions["raas_config"].token_lifetime_s / 86400
    return render_template("account.html", tokens=tokens, broker=broker_info(),
                           token_lifetime_days=f"{lifetime_days:g}",
                           api_url=request.host_url.rstrip("/"), **extra)


@bp.get("/account")
@login_required
def account() -> Any:
    """The account page."""
    return _account_page()


@bp.post("/account/tokens")
@login_required
def new_token() -> Any:
    """Create an API token and show it once."""
    label = (request.form.get("name") or "web").strip()[:64] or "web"
    lifetime_s = current_app.extensions["raas_config"].token_lifetime_s
    return _account_page(new_token=accounts.issue_token(g.user, label, lifetime_s=lifetime_s))


@bp.post("/account/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int) -> Any:
    """Revoke one of the user's tokens."""
    if accounts.revoke_token(g.user.name, token_id) is None:
        abort(404, description="no such token")
    flash(f"Token {token_id} revoked.")
    return redirect(url_for("auth.account"))


@bp.post("/account/broker")
@login_required
def broker_password() -> Any:
    """Issue (or refresh) the user's read-only broker password and show it once."""
    try:
        creds = issue_broker_password()
    except ApiError as e:
        return _account_page(broker_error=e.reason), e.status
    # the password is on this page once: no cache may keep it
    return _account_page(broker_creds=creds), 200, {"Cache-Control": "no-store"}
