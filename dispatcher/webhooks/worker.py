"""The webhook delivery worker: threads in the dispatcher that send due deliveries.

Why in the dispatcher: it is the platform's one long-lived central process (dashboards may run
as several processes and restart with deploys), it already owns the side effects of job state,
and its own threads keep slow receivers away from the dashboard's request threads. Deliveries
are rows (:mod:`dispatcher.webhooks.outbox`), so a restarted dispatcher carries on where the
last one stopped; each thread claims one row at a time, so slow receivers block only their
thread and several threads (or dispatchers) never send one attempt twice.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Callable

from peewee import DatabaseError, InterfaceError

from dispatcher.models import Job, database
from dispatcher.webhooks import outbox
from dispatcher.webhooks.config import WebhookConfig
from dispatcher.webhooks.delivery import Answer, build_body, post
from dispatcher.webhooks.registry import secret_of

log = logging.getLogger(__name__)

LEASE_MARGIN_S = 30.0
"""A claimed delivery is due again this long after its attempt's time limit (a dead worker)."""


class DeliveryWorker:
    """Send due webhook deliveries until stopped.

    Args:
        config: delivery timing and URL policy (built once at start-up).
        clock: wall clock [s since the epoch], the one the queue's transitions use (tests
            inject a fake one and advance it instead of sleeping).
        rng: jitter source of the retry delays.
    """

    def __init__(self, config: WebhookConfig, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start :attr:`WebhookConfig.threads` delivery threads."""
        self._stop.clear()
        self._threads = [threading.Thread(target=self._run, name=f"webhook-{i}", daemon=True)
                         for i in range(self.config.threads)]
        for t in self._threads:
            t.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop after the attempts in flight (an unfinished one is sent again after its lease)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout_s)
        self._threads = []

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                database.connect(reuse_if_open=True)
                busy = self.send_one()
            except (DatabaseError, InterfaceError):
                log.exception("webhook delivery: database error; reconnecting")
                if not database.is_closed():
                    database.close()
                busy = False
            except Exception:  # noqa: BLE001 - the thread must survive anything; the claimed
                # delivery is due again when its lease ends
                log.exception("webhook delivery: attempt failed unexpectedly")
                busy = False
            if not busy:
                self._stop.wait(self.config.poll_s)
        if not database.is_closed():
            database.close()

    def send_one(self) -> bool:
        """Claim one due delivery and make its attempt. Returns False when none was due."""
        lease_s = self.config.timeout_s + LEASE_MARGIN_S
        claimed = outbox.claim(self.clock(), lease_s)
        if claimed is None:
            return False
        body = claimed.body
        if body is None:
            body = build_body(claimed, Job.get_by_id(claimed.job_id))
            outbox.save_body(claimed, body)
        secret = secret_of(claimed.owner)
        if secret is None:  # cannot happen through the API: a webhook comes with a secret
            answer = Answer(None, "the user has no webhook secret")
        else:
            answer = post(claimed.url, body, secret, claimed, self.config)
        self.record(claimed, answer)
        return True

    def record(self, claimed: outbox.Claimed, answer: Answer) -> None:
        """Write the attempt's outcome: delivered, retried later, or failed for good."""
        if answer.ok:
            outbox.delivered(claimed, answer.status_code)
            log.info("webhook delivery %s (job %s) delivered: HTTP %s", claimed.id,
                     claimed.job_id, answer.status_code)
            return
        error = answer.error or "no answer"
        if claimed.attempt >= self.config.max_attempts:
            outbox.attempt_failed(claimed, answer.status_code, error, None)
            log.warning("webhook delivery %s (job %s) failed after %d attempts: %s",
                        claimed.id, claimed.job_id, claimed.attempt, error)
            return
        delay_s = self.config.retry_delay_s(claimed.attempt, self.rng)
        outbox.attempt_failed(claimed, answer.status_code, error, self.clock() + delay_s)
        log.info("webhook delivery %s (job %s) attempt %d failed (%s); retry in %.1f s",
                 claimed.id, claimed.job_id, claimed.attempt, error, delay_s)
