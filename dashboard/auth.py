"""Login, logout and the account page (API tokens, the user's own read-only broker login)."""

from __future__ import annotations

import functools
from typing import Any, Callable
from urllib.parse import urlsplit

from flask import (Blueprint, abort, flash, g, redirect, render_template, request,
                   session, url_for)

from dashboard import accounts
from dashboard.api import ApiError, broker_info, issue_broker_password
from dispatcher.models import ApiToken

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
    """The login form (GET) and a login (POST; back to ``next`` on success)."""
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
    tokens = list(ApiToken.select().where(ApiToken.owner == g.user.name)
                  .order_by(ApiToken.created_at.desc()))
    return render_template("account.html", tokens=tokens, broker=broker_info(),
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
    return _account_page(new_token=accounts.issue_token(g.user, label))


@bp.post("/account/tokens/<int:token_id>/delete")
@login_required
def delete_token(token_id: int) -> Any:
    """Revoke one of the user's tokens."""
    n = ApiToken.delete().where((ApiToken.id == token_id)
                                & (ApiToken.owner == g.user.name)).execute()
    if not n:
        abort(404, description="no such token")
    flash("Token revoked.")
    return redirect(url_for("auth.account"))


@bp.post("/account/broker")
@login_required
def broker_password() -> Any:
    """Issue (or refresh) the user's read-only broker password and show it once."""
    try:
        creds = issue_broker_password()
    except ApiError as e:
        return _account_page(broker_error=e.reason), e.status
    return _account_page(broker_creds=creds)
