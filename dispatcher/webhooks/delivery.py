"""One webhook delivery attempt: the JSON body, its signature, and the HTTP POST.

The body says which job ended, how, with the summary's key figures and links to the job; it is
signed like GitHub's webhooks: ``X-Raas-Signature-256: sha256=<hex HMAC-SHA256 of the raw body
with the user's secret>``, and ``X-Raas-Delivery`` carries the delivery id (the same on every
retry: receivers use it to drop duplicates). The POST goes to the address the URL check
resolved, never follows redirects, and reads at most :data:`MAX_ANSWER_BYTES` of the answer.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import ssl
from dataclasses import dataclass

from dispatcher.models import Job
from dispatcher.webhooks.config import WebhookConfig
from dispatcher.webhooks.outbox import EVENT, Claimed
from dispatcher.webhooks.targets import Target, UrlRefused, resolve

SIGNATURE_HEADER = "X-Raas-Signature-256"
DELIVERY_HEADER = "X-Raas-Delivery"
EVENT_HEADER = "X-Raas-Event"
USER_AGENT = "RaaS-MQTT-Webhook/1"
MAX_ANSWER_BYTES = 64 * 1024
SUMMARY_FIGURES = ("return", "seconds_upright", "steps", "episodes", "deadline_misses",
                   "duration_s", "control_period_s")
"""The summary's figures a body carries (the bundle has the rest)."""


@dataclass(frozen=True)
class Answer:
    """How an attempt ended: an HTTP status (None when there was no answer) and an error text
    (None for a 2xx)."""

    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        """The receiver answered 2xx."""
        return self.status_code is not None and 200 <= self.status_code < 300


def signature(secret: str, body: bytes) -> str:
    """The ``X-Raas-Signature-256`` value of ``body``: ``sha256=`` + hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def build_body(claimed: Claimed, job: Job) -> str:
    """The JSON body of a delivery (compact, keys in a fixed order)."""
    summary = job.summary if isinstance(job.summary, dict) else None
    base = (claimed.base_url or "").rstrip("/")
    body = {
        "event": EVENT, "delivery": claimed.id,
        "job": {"id": job.id, "owner": job.owner_id, "state": claimed.state,
                "reason": job.reason, "node_id": job.node_id, "attempts": job.attempts,
                "commit_sha": job.commit_sha, "time_limit_s": job.time_limit_s,
                "submitted_at": job.submitted_at, "started_at": job.started_at,
                "finished_at": job.finished_at},
        "summary": None if summary is None else {k: summary.get(k) for k in SUMMARY_FIGURES},
        "links": {"job": f"{base}/jobs/{job.id}", "api": f"{base}/api/v1/jobs/{job.id}",
                  "results": f"{base}/api/v1/jobs/{job.id}/results"},
    }
    return json.dumps(body, separators=(",", ":"))


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to a checked address, with the URL's host in the ``Host`` header."""

    def __init__(self, target: Target, timeout_s: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout_s)
        self.address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(_PinnedHTTP):
    """HTTPS to a checked address; the certificate is verified against the URL's host."""

    tls = ssl.create_default_context()

    def connect(self) -> None:
        super().connect()
        self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.host)


def post(url: str, body: str, secret: str, claimed: Claimed, policy: WebhookConfig) -> Answer:
    """POST ``body`` to ``url`` once, signed with ``secret``; never raises for the receiver's
    or the network's faults (they are the :class:`Answer`). A URL the check refuses now (its
    host resolves elsewhere than when it was added) is a failed attempt too: DNS may recover."""
    try:
        target = resolve(url, policy)
    except UrlRefused as e:
        return Answer(None, f"refused: {e}")
    data = body.encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               SIGNATURE_HEADER: signature(secret, data), DELIVERY_HEADER: claimed.id,
               EVENT_HEADER: EVENT}
    conn_cls = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
    conn = conn_cls(target, policy.timeout_s)
    try:
        conn.request("POST", target.path, body=data, headers=headers)
        resp = conn.getresponse()
        resp.read(MAX_ANSWER_BYTES)
    except ssl.SSLError as e:
        return Answer(None, f"TLS: {e}")
    except (OSError, http.client.HTTPException) as e:  # refused, reset, timeout, bad answer
        return Answer(None, f"{e.__class__.__name__}: {e}" if str(e) else e.__class__.__name__)
    finally:
        conn.close()
    if 200 <= resp.status < 300:
        return Answer(resp.status, None)
    return Answer(resp.status, f"HTTP {resp.status} {resp.reason}"[:200])

