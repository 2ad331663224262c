"""User accounts: password hashing, API tokens (stored as SHA-256 only) and account creation."""

from __future__ import annotations

import hashlib
import hmac
import secrets

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


def issue_token(owner: Owner | str, name: str = "cli") -> str:
    """Create an API token for ``owner`` and return it (shown once; only its hash is kept)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    ApiToken.create(owner=owner, token_hash=hash_token(token), name=name[:64] or "cli")
    return token


def owner_for_token(token: str) -> Owner | None:
    """The owner of a presented bearer token, or None. Updates the token's last use."""
    if not token or len(token) > 256:
        return None
    digest = hash_token(token)
    row = ApiToken.get_or_none(ApiToken.token_hash == digest)
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    ApiToken.update(last_used_at=now()).where(ApiToken.id == row.id).execute()
    return row.owner


def revoke_tokens(owner: Owner | str) -> int:
    """Delete every token of ``owner``; returns how many."""
    return ApiToken.delete().where(ApiToken.owner == owner).execute()
