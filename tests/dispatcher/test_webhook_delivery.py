"""Webhook deliveries end to end: a job ends in the running dispatcher → a signed POST reaches a
real HTTP receiver on a free port; retries with backoff, a restart mid-retry, the outbox written
in the transition's transaction (SQLite and PostgreSQL), and the URL policy."""

from __future__ import annotations

import json
import queue
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dispatcher import queue as Q
from dispatcher.models import WebhookDelivery
from dispatcher.service import Dispatcher
from dispatcher.webhooks import UrlRefused, WebhookConfig, registry
from dispatcher.webhooks.outbox import DeliveryStatus
from dispatcher.webhooks.targets import check_form, resolve
from dispatcher.webhooks.worker import LEASE_MARGIN_S
from dispatcher_fakes import LIMITS, SRC, Clock, FakeNode, settings, wait_until
from gym_raas_mqtt.protocol import JobState
from tests.webhook_receiver import Receiver

LOCAL = WebhookConfig(allow_http=True, allow_private=True, backoff_s=5.0, backoff_max_s=60.0,
                      poll_s=0.02, timeout_s=2.0, max_attempts=4)


def docs_verify() -> Any:
    """The receiver's ``verify(secret, body, signature_header)`` exactly as docs/api.md shows it."""
    text = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    [snippet] = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def verify(" in b]
    scope: dict[str, Any] = {}
    exec(snippet, scope)  # noqa: S102 - our own documentation
    return scope["verify"]


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """A receiver's check of a delivery, with the documented snippet."""
    return docs_verify()(secret, body, headers.get("X-Raas-Signature-256", ""))


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def hooked(request, mini_broker, tmp_path, uid):
    """A running dispatcher with the local webhook policy, its clock, and a node."""
    if getattr(request, "param", "sqlite") == "postgresql":
        db_url = request.getfixturevalue("db_url_postgresql")
    else:
        db_url = f"sqlite:///{tmp_path / 'raas.db'}"
    clock = Clock()
    cfg = settings(mini_broker, db_url, uid)
    started: list[Dispatcher] = []

    def start() -> Dispatcher:
        d = Dispatcher(cfg, LIMITS, clock=clock, webhooks=LOCAL)
        d.start()
        assert d.ready.wait(5)
        started.append(d)
        return d

    disp = start()
    node = FakeNode(mini_broker.admin, f"{uid}-n1").start()
    wait_until(lambda: getattr(disp.nodes.get(node.node_id), "session", None) == 1)

    class H:
        pass

    H.clock, H.node, H.start, H.dispatcher = clock, node, start, disp
    yield H
    node.close()
    for d in started:
        d.stop()


def run_job(h, owner: str = "alice", status: JobState = JobState.SUCCEEDED) -> str:
    Q.ensure_owner(owner)
    h.clock.advance(0.001)
    jid = Q.enqueue(owner, SRC, 10, limits=LIMITS, now=h.clock()).id
    a = h.node.assignment()
    assert a.job_id == jid
    h.node.run(a, status, summary={"return": -812.5, "steps": 400, "episodes": 2,
                                   "seconds_upright": 3.25, "deadline_misses": 1,
                                   "duration_s": 21.0, "per_episode": []},
               result_key=f"results/{jid}/")
    return jid


def deliveries(job_id: str) -> list[WebhookDelivery]:
    return list(WebhookDelivery.select().where(WebhookDelivery.job == job_id))


def recorded(h, job_id: str, attempt: int) -> bool:
    """Attempt ``attempt`` of the job's one delivery has its outcome written (its claim's lease,
    ``timeout_s + LEASE_MARGIN_S`` ahead, is replaced by a shorter backoff or a final status)."""
    [d] = deliveries(job_id)
    lease_end = h.clock() + h.dispatcher.webhooks.config.timeout_s + LEASE_MARGIN_S
    return d.attempts == attempt and (d.status != "pending" or d.next_attempt_at < lease_end)


@pytest.mark.parametrize("hooked", ["sqlite", "postgresql"], indirect=True)
def test_job_end_sends_one_signed_delivery(hooked, receiver):
    Q.ensure_owner("alice")
    hook, secret = registry.add("alice", receiver.url, "https://dash.example", LOCAL)
    assert secret and len(secret) == 64
    jid = run_job(hooked)
    headers, body = receiver.get()
    assert verify(secret, headers, body)
    assert not verify("another-secret", headers, body)
    doc = json.loads(body)
    assert doc["event"] == "job.ended" and doc["delivery"] == headers["X-Raas-Delivery"]
    assert (doc["job"]["id"], doc["job"]["state"], doc["job"]["owner"]) == (jid, "succeeded",
                                                                            "alice")
    assert doc["summary"]["return"] == -812.5 and doc["summary"]["episodes"] == 2
    assert doc["links"]["job"] == f"https://dash.example/jobs/{jid}"
    assert headers["Content-Type"] == "application/json"
    wait_until(lambda: deliveries(jid) and deliveries(jid)[0].status == "delivered")
    [d] = deliveries(jid)
    assert (d.attempts, d.last_status_code, d.id) == (1, 200, headers["X-Raas-Delivery"])
    with pytest.raises(queue.Empty):  # exactly one delivery
        receiver.get(timeout_s=0.3)


def test_receiver_failing_twice_gets_the_third_attempt(hooked):
    r = Receiver(answers=[500, 503])
    try:
        Q.ensure_owner("alice")
        _, secret = registry.add("alice", r.url, None, LOCAL)
        jid = run_job(hooked, status=JobState.FAILED)
        first = r.get()
        wait_until(lambda: recorded(hooked, jid, 1))
        d = deliveries(jid)[0]
        # backoff with jitter: 5 s · [0.5, 1) after the first failure, in the injected clock
        assert 2.5 <= d.next_attempt_at - hooked.clock() < 5.0
        assert (d.status, d.attempts, d.last_error) == ("pending", 1,
                                                        "HTTP 500 Internal Server Error")
        with pytest.raises(queue.Empty):  # not due yet
            r.get(timeout_s=0.2)
        hooked.clock.advance(5.0)
        second = r.get()
        wait_until(lambda: recorded(hooked, jid, 2))
        d = deliveries(jid)[0]
        assert 5.0 <= d.next_attempt_at - hooked.clock() < 10.0  # doubled
        hooked.clock.advance(10.0)
        third = r.get()
        wait_until(lambda: deliveries(jid)[0].status == "delivered")
        assert deliveries(jid)[0].attempts == 3
        assert first[1] == second[1] == third[1]  # the same bytes every time
        assert len({h["X-Raas-Delivery"] for h, _ in (first, second, third)}) == 1
        assert all(verify(secret, h, b) for h, b in (first, second, third))
        assert json.loads(third[1])["job"]["state"] == "failed"
    finally:
        r.close()


def test_gives_up_after_max_attempts(hooked):
    r = Receiver(answers=[500] * 10)
    try:
        Q.ensure_owner("alice")
        registry.add("alice", r.url, None, LOCAL)
        jid = run_job(hooked)
        for n in range(1, LOCAL.max_attempts + 1):
            r.get()
            wait_until(lambda: recorded(hooked, jid, n))
            hooked.clock.advance(LOCAL.backoff_max_s)
        wait_until(lambda: deliveries(jid)[0].status == "failed")
        d = deliveries(jid)[0]
        assert (d.attempts, d.next_attempt_at) == (LOCAL.max_attempts, None)
        with pytest.raises(queue.Empty):
            r.get(timeout_s=0.3)
    finally:
        r.close()


def test_dispatcher_restart_mid_retry_still_delivers(hooked):
    r = Receiver(answers=[502])
    try:
        Q.ensure_owner("alice")
        _, secret = registry.add("alice", r.url, None, LOCAL)
        jid = run_job(hooked)
        first = r.get()
        wait_until(lambda: recorded(hooked, jid, 1))
        hooked.dispatcher.stop()  # the retry's state is in the table only
        hooked.clock.advance(5.0)
        hooked.start()
        headers, body = r.get()
        assert body == first[1] and verify(secret, headers, body)
        wait_until(lambda: deliveries(jid)[0].status == "delivered")
        assert deliveries(jid)[0].attempts == 2
    finally:
        r.close()


def test_unreachable_receiver_is_retried(hooked, receiver):
    Q.ensure_owner("alice")
    dead = Receiver()
    url = dead.url
    dead.close()  # nothing listens on that port any more
    registry.add("alice", url, None, LOCAL)
    jid = run_job(hooked)
    wait_until(lambda: recorded(hooked, jid, 1))
    d = deliveries(jid)[0]
    assert d.status == "pending" and d.last_status_code is None
    assert "Connection" in d.last_error or "refused" in d.last_error.lower()


def test_a_receiver_slower_than_the_time_limit_is_retried(hooked):
    r = Receiver(delay_s=1.5)
    try:
        Q.ensure_owner("alice")
        registry.add("alice", r.url, None, LOCAL)
        hooked.dispatcher.webhooks.config = replace(LOCAL, timeout_s=0.3)
        jid = run_job(hooked)
        r.get()
        wait_until(lambda: recorded(hooked, jid, 1))
        d = deliveries(jid)[0]
        assert (d.status, d.last_status_code) == ("pending", None)
        assert "timed out" in d.last_error
    finally:
        r.close()


def test_outbox_row_commits_with_the_transition_only(db):
    """A job end queues one delivery per webhook of its owner, in the same transaction; a
    transition that fails writes none; other users' jobs queue nothing for this user."""
    Q.ensure_owner("alice")
    Q.ensure_owner("bob")
    registry.add("alice", "http://127.0.0.1:9/a", None, LOCAL)
    registry.add("alice", "http://127.0.0.1:9/b", None, LOCAL)
    jid = Q.enqueue("alice", SRC, 10, limits=LIMITS, now=1.0).id
    bob_job = Q.enqueue("bob", SRC, 10, limits=LIMITS, now=1.0).id
    Q.assign(jid, "n1", limits=LIMITS, now=2.0)
    Q.start(jid, 1, limits=LIMITS, now=3.0)
    assert deliveries(jid) == []  # not ended yet
    Q.finish(jid, 1, JobState.SUCCEEDED, now=4.0)
    rows = deliveries(jid)
    assert sorted(d.webhook.url for d in rows) == ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"]
    assert {(d.state, d.status, d.attempts, d.next_attempt_at) for d in rows} == {
        ("succeeded", DeliveryStatus.PENDING.value, 0, 4.0)}
    with pytest.raises(Q.TransitionError):
        Q.finish(jid, 1, JobState.FAILED, now=5.0)
    assert len(deliveries(jid)) == 2
    Q.cancel(bob_job, "bob", limits=LIMITS, now=6.0)
    assert deliveries(bob_job) == []
    # a queued job canceled by its owner ends too
    j2 = Q.enqueue("alice", SRC, 10, limits=LIMITS, now=7.0).id
    Q.cancel(j2, "alice", limits=LIMITS, now=8.0)
    assert {d.state for d in deliveries(j2)} == {"canceled"}


@pytest.mark.parametrize("url,why", [
    ("ftp://example.org/x", "must start with https://"),
    ("http://example.org/x", "plain http:// webhooks are not allowed"),
    ("https://user:pw@example.org/x", "must not carry a user name or password"),
    ("https://example.org/x#frag", "must not have a #fragment"),
    ("https://example.org:99999/x", "invalid port"),
    ("https:///x", "has no host"),
    ("https://exa mple.org/", "without spaces"),
    ("https://bücher.example/", "ASCII characters"),
    ("https://" + "a" * 2000 + ".org/", "at most 2000 ASCII characters"),
    (42, "non-empty string"),
    ("", "non-empty string"),
])
def test_url_form_refused_with_reason(url, why):
    with pytest.raises(UrlRefused, match=why):
        check_form(url, WebhookConfig())


@pytest.mark.parametrize("url,why", [
    ("https://127.0.0.1/hook", "127.0.0.1 is a loopback address"),
    ("https://localhost/hook", "is a loopback address"),
    ("https://[::1]/hook", "::1 is a loopback address"),
    ("https://169.254.169.254/latest/meta-data", "is a link-local address"),
    ("https://10.1.2.3/hook", "10.1.2.3 is a private address"),
    ("https://192.168.0.10/hook", "is a private address"),
    ("https://[::ffff:127.0.0.1]/hook", "127.0.0.1 is a loopback address"),
    ("https://0.0.0.0/hook", "is not a host address"),
    ("https://224.0.0.1/hook", "is not a host address"),
    ("https://no-such-host.invalid/hook", "does not resolve"),
])
def test_non_public_addresses_refused(url, why):
    with pytest.raises(UrlRefused, match=why):
        resolve(url, WebhookConfig())


def test_private_addresses_allowed_by_the_setting():
    target = resolve("http://127.0.0.1:8123/h?q=1", LOCAL)
    assert (target.scheme, target.host, target.port, target.path, target.address) == (
        "http", "127.0.0.1", 8123, "/h?q=1", "127.0.0.1")
    with pytest.raises(UrlRefused, match="not a host address"):
        resolve("http://0.0.0.0/", LOCAL)


def test_refused_at_delivery_time_is_a_failed_attempt(hooked, receiver):
    """The URL is checked again before each attempt (its host may resolve elsewhere now)."""
    Q.ensure_owner("alice")
    registry.add("alice", receiver.url, None, LOCAL)
    hooked.dispatcher.webhooks.config = WebhookConfig(allow_http=True, poll_s=0.02)
    jid = run_job(hooked)
    wait_until(lambda: recorded(hooked, jid, 1))
    assert "127.0.0.1 is a loopback address" in deliveries(jid)[0].last_error
    with pytest.raises(queue.Empty):
        receiver.get(timeout_s=0.2)


def test_backoff_is_exponential_capped_and_jittered():
    cfg = WebhookConfig(backoff_s=10.0, backoff_max_s=60.0)

    class Fixed:
        def __init__(self, x: float) -> None:
            self.x = x

        def random(self) -> float:
            return self.x

    assert [cfg.retry_delay_s(n, Fixed(0.999999)) for n in (1, 2, 3, 4, 5)] == pytest.approx(
        [10.0, 20.0, 40.0, 60.0, 60.0], rel=1e-5)
    assert cfg.retry_delay_s(1, Fixed(0.0)) == 5.0
