"""The webhook outbox: the only writer of delivery rows, from a job's end to the last attempt.

A job's terminal transition calls :func:`job_ended` inside its own transaction (the queue stays
the one writer of job state; a delivery exists exactly when the state change committed). The
delivery worker then :func:`claim`\\ s due rows one at a time — the claim counts the attempt and
leases the row until the attempt's time limit has passed, so a crashed worker's delivery is
picked up again — and records each outcome with :func:`delivered` or :func:`attempt_failed`.
Every update after the claim quotes the claimed attempt number, so a worker whose lease ran out
can never overwrite a newer attempt's result. Times are s since the epoch.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Any

from dispatcher import db
from dispatcher.models import WebhookDelivery
from gym_raas_mqtt.protocol import JobState

EVENT = "job.ended"
"""The one event a webhook receives (the body's ``event``)."""
MAX_ERROR_CHARS = 500


class DeliveryStatus(str, enum.Enum):
    """Where a delivery is: waiting for its next attempt, answered 2xx, or given up."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class Claimed:
    """A delivery a worker holds for one attempt.

    Attributes:
        id: the delivery id (``X-Raas-Delivery``).
        attempt: this attempt's number (1-based).
        url: the webhook's URL.
        base_url: the dashboard address for the body's links (None: paths only).
        job_id, owner, state: the job that ended, its owner and its terminal state.
        body: the JSON body of earlier attempts (None before the first one built it).
    """

    id: str
    attempt: int
    url: str
    base_url: str | None
    job_id: str
    owner: str
    state: str
    body: str | None


def job_ended(job_id: str, state: JobState, t: float) -> int:
    """Queue one delivery per webhook of the job's owner (inside the transition's transaction).

    Returns:
        The number of deliveries queued.
    """
    rows = db.execute('SELECT "w"."id", "w"."owner_id" FROM "webhook" AS "w" JOIN "job" AS "j" '
                      'ON "j"."owner_id" = "w"."owner_id" WHERE "j"."id" = ?', job_id).fetchall()
    for webhook_id, owner in rows:
        db.execute('INSERT INTO "webhookdelivery" ("id", "webhook_id", "owner_id", "job_id", '
                   '"state", "status", "created_at", "attempts", "next_attempt_at") '
                   'VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)', str(uuid.uuid4()), webhook_id, owner,
                   job_id, state.value, DeliveryStatus.PENDING.value, t, t)
    return len(rows)


def claim(now: float, lease_s: float) -> Claimed | None:
    """Take the most overdue pending delivery for one attempt: count the attempt and lease the
    row for ``lease_s`` (if the worker dies, the delivery is due again after that).

    Returns:
        The claimed delivery, or None when nothing is due (or others took it first).
    """
    due = db.execute('SELECT "d"."id", "d"."attempts", "w"."url", "w"."base_url", "d"."job_id", '
                     '"d"."owner_id", "d"."state", "d"."body" FROM "webhookdelivery" AS "d" '
                     'JOIN "webhook" AS "w" ON "w"."id" = "d"."webhook_id" '
                     'WHERE "d"."status" = ? AND "d"."next_attempt_at" <= ? '
                     'ORDER BY "d"."next_attempt_at" LIMIT 8',
                     DeliveryStatus.PENDING.value, now).fetchall()
    for row in due:
        delivery_id, attempts = row[0], row[1]
        with db.transaction():
            n = db.update("webhookdelivery", {"attempts": attempts + 1,
                                              "next_attempt_at": now + lease_s,
                                              "last_attempt_at": now},
                          '"id" = ? AND "status" = ? AND "attempts" = ?', delivery_id,
                          DeliveryStatus.PENDING.value, attempts)
        if n == 1:
            return Claimed(delivery_id, attempts + 1, *row[2:])
    return None


def save_body(claimed: Claimed, body: str) -> bool:
    """Keep the body built by the first attempt, so that every retry sends the same bytes.
    Returns False when the claim is no longer this worker's."""
    with db.transaction():
        return db.update("webhookdelivery", {"body": body}, '"id" = ? AND "attempts" = ? AND '
                         '"body" IS NULL', claimed.id, claimed.attempt) == 1


def delivered(claimed: Claimed, status_code: int) -> bool:
    """Record a 2xx answer: the delivery is done. Returns False for a lost claim."""
    with db.transaction():
        return db.update("webhookdelivery", {
            "status": DeliveryStatus.DELIVERED.value, "next_attempt_at": None,
            "last_status_code": status_code, "last_error": None},
            '"id" = ? AND "status" = ? AND "attempts" = ?', claimed.id,
            DeliveryStatus.PENDING.value, claimed.attempt) == 1


def attempt_failed(claimed: Claimed, status_code: int | None, error: str,
                   next_attempt_at: float | None) -> bool:
    """Record a failed attempt: retried at ``next_attempt_at``, or given up (``failed``) when
    that is None. Returns False for a lost claim."""
    fields: dict[str, Any] = {"last_status_code": status_code,
                              "last_error": error[:MAX_ERROR_CHARS],
                              "next_attempt_at": next_attempt_at}
    if next_attempt_at is None:
        fields["status"] = DeliveryStatus.FAILED.value
    with db.transaction():
        return db.update("webhookdelivery", fields, '"id" = ? AND "status" = ? AND '
                         '"attempts" = ?', claimed.id, DeliveryStatus.PENDING.value,
                         claimed.attempt) == 1


def recent(owner: str, limit: int) -> list[dict[str, Any]]:
    """The owner's last ``limit`` deliveries, newest first, as the delivery log shows them."""
    rows = (WebhookDelivery.select().where(WebhookDelivery.owner == owner)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id).limit(limit))
    return [{"id": d.id, "webhook_id": d.webhook_id, "job_id": d.job_id, "event": EVENT,
             "state": d.state, "status": d.status, "attempts": d.attempts,
             "created_at": d.created_at, "last_attempt_at": d.last_attempt_at,
             "next_attempt_at": d.next_attempt_at, "last_status_code": d.last_status_code,
             "last_error": d.last_error} for d in rows]
