"""The account page's webhooks in headless Chromium: add a URL (the secret shown once), a job
ends, the dispatcher's delivery worker POSTs to a real receiver, whose signature check passes
with that secret, and the delivery log shows it delivered. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from dashboard.app import create_app
from dashboard.server import BackgroundServer
from dashboard_helpers import QUEUE_LIMITS, make_config, make_user, run_job_to_end
from dispatcher import queue
from dispatcher.models import database
from dispatcher.webhooks import WebhookConfig
from dispatcher.webhooks.worker import DeliveryWorker
from gym_raas_mqtt.protocol import JobSource, SourceKind
from test_browser import browser, open_page, shot, until  # noqa: F401 - the browser fixture
from tests.webhook_receiver import Receiver, signed_by

pytestmark = [pytest.mark.browser]
LOCAL = WebhookConfig(allow_http=True, allow_private=True, poll_s=0.05, timeout_s=2.0)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Any]:
    cfg = make_config(tmp_path)
    app = create_app({"TESTING": True, "RAAS_CONFIG": cfg, "RAAS_WEBHOOKS": LOCAL})
    with BackgroundServer(app, threads=4) as server:
        server.cfg, server.app = cfg, app
        yield server


def test_add_a_webhook_and_receive_a_signed_delivery(site: Any, browser: Any,  # noqa: F811
                                                      tmp_path: Path) -> None:
    user = make_user(site.app, "alice")
    receiver = Receiver()
    worker = DeliveryWorker(LOCAL)
    context, page, errors = open_page(browser)
    try:
        page.goto(site.url + "/account")
        page.fill("input[name=username]", user.name)
        page.fill("input[name=password]", user.password)
        page.click("button[type=submit]")
        page.fill("#webhooks input[name=url]", "ftp://example.org/")
        page.click("#webhooks form.row button[type=submit]")
        assert "must start with https://" in page.inner_text("#webhook-error")
        errors.clear()  # the browser logs that page's 400 status as a console error
        page.fill("#webhooks input[name=url]", receiver.url)
        page.click("#webhooks form.row button[type=submit]")
        secret = page.inner_text("#webhook-secret code")
        assert len(secret) == 64 and receiver.url in page.inner_text("#webhook-list")
        shot(page, "account-webhook-added")

        with database.connection_context():
            jid = queue.enqueue("alice", JobSource(SourceKind.GIT, url="https://e.org/c.git"), 10,
                                limits=QUEUE_LIMITS).id
            run_job_to_end(jid, site.cfg.store_url, tmp_path)
        worker.start()  # what the dispatcher runs
        headers, body = receiver.get()
        assert signed_by(secret, headers, body)
        assert json.loads(body)["job"]["id"] == jid

        def delivered() -> bool:
            page.goto(site.url + "/account")
            return "delivered" in page.inner_text("#webhook-deliveries")

        until(page, delivered, timeout_s=10, what="the delivery log to say delivered")
        assert page.query_selector("#webhook-secret") is None  # the secret was shown once
        shot(page, "account-webhook-delivered")
        assert errors == []  # no script errors and no CSP violation on the page
    finally:
        worker.stop()
        receiver.close()
        context.close()
