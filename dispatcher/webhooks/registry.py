"""Users' webhooks: adding, listing and deleting URLs, and each user's signing secret.

The secret is made by the server (32 random bytes, hex) when a user adds their first webhook or
asks for a new one, and handed out once; the dispatcher signs every delivery of that user's jobs
with it (:func:`dispatcher.webhooks.delivery.signature`).
"""

from __future__ import annotations

import secrets
from typing import Any

from dispatcher import db
from dispatcher.models import Webhook, WebhookSecret, now
from dispatcher.webhooks.config import WebhookConfig
from dispatcher.webhooks.targets import UrlRefused, resolve
from gym_raas_mqtt.errors import RaasError


class TooManyWebhooks(RaasError):
    """The user already has as many webhooks as allowed."""


def view(hook: Webhook) -> dict[str, Any]:
    """A webhook as the API and the account page show it (never the secret)."""
    return {"id": hook.id, "url": hook.url, "created_at": hook.created_at}


def user_webhooks(owner: str) -> list[Webhook]:
    """The user's webhooks, oldest first."""
    return list(Webhook.select().where(Webhook.owner == owner).order_by(Webhook.id))


def secret_of(owner: str) -> str | None:
    """The user's signing secret (None before their first webhook)."""
    row = WebhookSecret.get_or_none(WebhookSecret.owner == owner)
    return row.secret if row else None


def new_secret(owner: str) -> str:
    """Make (or replace) the user's signing secret; returns it (show it once). Deliveries not
    yet sent are signed with the new one."""
    value = secrets.token_hex(32)
    with db.transaction():
        n = db.update("webhooksecret", {"secret": value, "created_at": now()},
                      '"owner_id" = ?', owner)
        if n == 0:
            WebhookSecret.create(owner=owner, secret=value)
    return value


def add(owner: str, url: object, base_url: str | None,
        policy: WebhookConfig) -> tuple[Webhook, str | None]:
    """Add a webhook after checking its URL (form and resolved addresses).

    Args:
        owner: the user's name.
        url: the URL as given (any JSON value; checked here).
        base_url: the dashboard's address as the user reached it, for links in the body.
        policy: which URLs are allowed.

    Returns:
        ``(webhook, secret)``: the secret only when this call made it (the user's first
        webhook), else None.

    Raises:
        UrlRefused: the URL is refused (the message says why).
        TooManyWebhooks: the user has ``policy.max_per_user`` webhooks already.
    """
    resolve(url, policy)
    if Webhook.select().where(Webhook.owner == owner).count() >= policy.max_per_user:
        raise TooManyWebhooks(f"you have {policy.max_per_user} webhooks already; delete one "
                              "first")
    if Webhook.select().where((Webhook.owner == owner) & (Webhook.url == url)).exists():
        raise UrlRefused("you have a webhook with this URL already")
    hook = Webhook.create(owner=owner, url=url, base_url=base_url)
    return hook, None if secret_of(owner) else new_secret(owner)


def delete(owner: str, webhook_id: int) -> Webhook | None:
    """Delete one of the user's webhooks (with its pending deliveries); None if they have no
    such webhook."""
    hook = Webhook.get_or_none((Webhook.id == webhook_id) & (Webhook.owner == owner))
    if hook is not None:
        with db.transaction():
            db.execute('DELETE FROM "webhookdelivery" WHERE "webhook_id" = ?', hook.id)
            db.execute('DELETE FROM "webhook" WHERE "id" = ?', hook.id)
    return hook
