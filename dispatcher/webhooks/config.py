"""Webhook settings: which URLs may be called and how deliveries are timed and retried.

One frozen :class:`WebhookConfig`, built once at start-up by each process that needs it: the
dashboard checks URLs with it when users add them, the dispatcher's delivery worker checks them
again and times its attempts with it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from gym_raas_mqtt.config import setting
from gym_raas_mqtt.errors import ConfigError


@dataclass(frozen=True)
class WebhookConfig:
    """Webhook policy and delivery timing; every field has a default (see ``raas config``)."""

    allow_http: bool = setting(
        "RAAS_WEBHOOK_ALLOW_HTTP", False,
        "accept plain http:// webhook URLs (default: https:// only; dev stacks and tests)")
    allow_private: bool = setting(
        "RAAS_WEBHOOK_ALLOW_PRIVATE", False,
        "accept webhook URLs that resolve to loopback, link-local, private or other non-public "
        "addresses (default: refused, so users cannot make the platform call its own network)")
    timeout_s: float = setting("RAAS_WEBHOOK_TIMEOUT_S", 10.0,
                               "time limit of one delivery attempt (connect, send, answer)",
                               unit="s")
    max_attempts: int = setting("RAAS_WEBHOOK_MAX_ATTEMPTS", 8,
                                "attempts per delivery before it is marked failed",
                                unit="attempts")
    backoff_s: float = setting("RAAS_WEBHOOK_BACKOFF_S", 10.0,
                               "wait before the first retry; doubled for each further one, "
                               "with random jitter", unit="s")
    backoff_max_s: float = setting("RAAS_WEBHOOK_BACKOFF_MAX_S", 3600.0,
                                   "longest wait between two attempts", unit="s")
    poll_s: float = setting("RAAS_WEBHOOK_POLL_S", 1.0,
                            "how often the delivery worker looks for due deliveries", unit="s")
    threads: int = setting("RAAS_WEBHOOK_THREADS", 2,
                           "delivery threads in the dispatcher (slow receivers block only one)")
    max_per_user: int = setting("RAAS_WEBHOOK_MAX_PER_USER", 5, "webhook URLs a user may add")

    def __post_init__(self) -> None:
        for name in ("timeout_s", "max_attempts", "backoff_s", "backoff_max_s", "poll_s",
                     "threads", "max_per_user"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"webhook setting {name} must be > 0, got {getattr(self, name)}")

    def retry_delay_s(self, attempts: int, rng: random.Random | None = None) -> float:
        """Wait after failed attempt number ``attempts`` (1-based) [s]: ``backoff_s ·
        2^(attempts−1)``, capped at ``backoff_max_s``, times a jitter factor in [0.5, 1) so
        deliveries failed together do not retry in lockstep."""
        base = min(self.backoff_max_s, self.backoff_s * 2.0 ** max(0, attempts - 1))
        return base * (0.5 + 0.5 * (rng or random).random())
