"""User accounts: password hashing, account creation and API tokens (stored as SHA-256 only;
they expire, and their owner can revoke them)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from werkzeug.security import check_password_hash, generate_password_hash

from dispatcher.models import ApiToken, Owner, database, now
from gym_raas_mqtt import protocol
from gym_raas_mqtt.errors import ProtocolError, RaasError

TOKEN_PREFIX = "raas_"
MIN_PASSWORD_CHARS = 10
# Verified against when the user does not exist, so a login takes as long either way.
_DUMMY_HASH = generate_password_hash("not-a-real-password-" + secrets.token_hex(8))


class AccountError(RaasError):
    """An account operation was refused (bad name, weak password, unknown user)."""


class TokenRefused(AccountError):
    """A presented API token is unknown, expired or revoked (the message says which)."""


def hash_token(token: str) -> str:
    """SHA-256 hex digest of an API token (what the database stores)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_user(name: str, password: str | None, *, admin: bool = False,
                max_running: int = 1) -> Owner:
    """Create a user.

    Args:
        name: user name; must be a valid protocol id (it is a topic level).
        password: login password (>= 10 characters) or None for a token-only account.

    Raises:
        AccountError: invalid name, weak password, or the name is taken.
    """
    try:
        protocol.check_id(name, "user name")
    except ProtocolError as e:
        raise AccountError(str(e)) from None
    if password is not None and len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"password must have at least {MIN_PASSWORD_CHARS} characters")
    with database.atomic():
        if Owner.get_or_none(Owner.name == name) is not None:
            raise AccountError(f"user {name!r} exists")
        return Owner.create(name=name, is_admin=admin, max_running=max_running,
                            password_hash=generate_password_hash(password) if password else None)


def set_password(name: str, password: str) -> None:
    """Replace ``name``'s password. Raises AccountError for an unknown user or weak password."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"password must have at least {MIN_PASSWORD_CHARS} characters")
    if not Owner.update(password_hash=generate_password_hash(password)).where(
            Owner.name == name).execute():
        raise AccountError(f"no user {name!r}")


def authenticate(name: str, password: str) -> Owner | None:
    """The user if ``password`` matches, else None (constant work for unknown users)."""
    owner = Owner.get_or_none(Owner.name == name) if isinstance(name, str) else None
    stored = owner.password_hash if owner is not None and owner.password_hash else _DUMMY_HASH
    ok = check_password_hash(stored, password if isinstance(password, str) else "")
    return owner if ok and owner is not None and owner.password_hash else None


def issue_token(owner: Owner | str, name: str = "cli", *, lifetime_s: float) -> str:
    """Create an API token for ``owner`` valid for ``lifetime_s`` [s] and return it (shown once;
    only its hash is kept)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    t = now()
    ApiToken.create(owner=owner, token_hash=hash_token(token), name=name[:64] or "cli",
                    created_at=t, expires_at=t + lifetime_s)
    return token


def token_state(row: ApiToken) -> str:
    """``active``, ``expired`` or ``revoked`` (now)."""
    if row.revoked_at is not None:
        return "revoked"
    # no expiry: issued before tokens expired, so it is treated as past any lifetime
    if row.expires_at is None or row.expires_at <= now():
        return "expired"
    return "active"


def check_token(token: str) -> ApiToken:
    """The stored token matching a presented bearer token; records its use.

    Raises:
        TokenRefused: unknown, revoked or expired (the message says which and what to do).
    """
    digest = hash_token(token) if token and len(token) <= 256 else ""
    row = ApiToken.get_or_none(ApiToken.token_hash == digest) if digest else None
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        raise TokenRefused("unknown token: create one with `raas login`")
    state = token_state(row)
    if state != "active":
        ended = "was revoked" if state == "revoked" else "has expired"
        raise TokenRefused(f"token {row.id} ({row.name}) {ended}; create a new one with "
                           "`raas login`")
    ApiToken.update(last_used_at=now()).where(ApiToken.id == row.id).execute()
    return row


def user_tokens(owner: Owner | str) -> list[ApiToken]:
    """Every token of ``owner`` (active, expired and revoked), newest first."""
    return list(ApiToken.select().where(ApiToken.owner == owner)
                .order_by(ApiToken.created_at.desc(), ApiToken.id.desc()))


def token_view(row: ApiToken, current_id: int | None = None) -> dict[str, Any]:
    """A token as the API and CLI show it (never its value or hash); times in s since the epoch.

    Args:
        row: the token.
        current_id: id of the token the request came with, marked ``current``.
    """
    return {"id": row.id, "name": row.name, "state": token_state(row),
            "created_at": row.created_at, "expires_at": row.expires_at,
            "last_used_at": row.last_used_at, "revoked_at": row.revoked_at,
            "current": row.id == current_id}


def revoke_token(owner: Owner | str, token_id: int) -> ApiToken | None:
    """Revoke ``owner``'s token ``token_id`` (a revoked one stays revoked when it was).

    Returns:
        The token, or None when ``owner`` has no token with that id.
    """
    ApiToken.update(revoked_at=now()).where(
        (ApiToken.id == token_id) & (ApiToken.owner == owner)
        & ApiToken.revoked_at.is_null()).execute()
    return ApiToken.get_or_none((ApiToken.id == token_id) & (ApiToken.owner == owner))


def revoke_tokens(owner: Owner | str) -> int:
    """Revoke every token of ``owner`` that is not revoked yet; returns how many."""
    return ApiToken.update(revoked_at=now()).where(
        (ApiToken.owner == owner) & ApiToken.revoked_at.is_null()).execute()
