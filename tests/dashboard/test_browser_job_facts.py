"""In headless Chromium: the job page's live facts and event timeline follow the queue while the
job waits, runs, is requeued and runs again; the account page shows the real broker password once
in the mosquitto_sub line, with copy buttons (issue 14, item 9). Screenshots go to
test-artifacts/ as in test_browser.py."""

from __future__ import annotations

import re
from typing import Any

import pytest

from dashboard_helpers import QUEUE_LIMITS, make_user
from dispatcher import queue
from dispatcher.models import database
from tests.dashboard import test_browser
from tests.dashboard.test_browser import open_page, shot, until

pytestmark = [pytest.mark.browser, pytest.mark.broker]
browser = test_browser.browser


def log_in(page: Any, live: Any, user: Any) -> None:
    page.goto(live.url + "/login")
    page.fill("input[name=username]", user.name)
    page.fill("input[name=password]", user.password)
    page.click("button[type=submit]")
    page.wait_for_url("**/jobs")


def test_job_page_shows_live_facts_and_the_timeline(live: Any, browser: Any, uid: str) -> None:
    user = make_user(live.app, uid)
    context, page, errors = open_page(browser)
    log_in(page, live, user)
    r = page.request.post(live.url + "/api/v1/jobs", headers=user.headers,
                          data={"url": "https://example.org/ctrl.git", "time_limit_s": 30})
    assert r.status == 201, r.text()
    job = r.json()["id"]
    page.goto(f"{live.url}/jobs/{job[:6]}")  # a unique prefix names the job
    page.wait_for_url(f"**/jobs/{job}")
    assert page.inner_text("#job-attempts") == "0"
    assert page.inner_text("#job-started") == "—"
    assert [li.inner_text() for li in page.query_selector_all("#timeline-list li")][0].endswith(
        "queued — submitted")
    with database.connection_context():
        queue.assign(job, f"{uid}-a", limits=QUEUE_LIMITS)
        queue.start(job, 1, limits=QUEUE_LIMITS)
        queue.error_and_requeue(job, 1, "the node lost its broker")
        queue.assign(job, f"{uid}-b", limits=QUEUE_LIMITS)
        queue.start(job, 2, limits=QUEUE_LIMITS)
    until(page, lambda: page.inner_text("#job-attempts") == "2", 8, "attempt 2 shown")
    until(page, lambda: page.inner_text("#job-node") == f"{uid}-b", 5, "the node shown")
    assert page.inner_text("#job-started") != "—"
    elapsed = page.inner_text("#job-elapsed")
    assert re.fullmatch(r"\d+ / 30 s", elapsed), elapsed
    items = [li.inner_text() for li in page.query_selector_all("#timeline-list li")]
    kinds = [re.search(r"(queued|assigned|started|requeued|finished)", i).group(1) for i in items]
    assert kinds == ["queued", "assigned", "started", "requeued", "assigned", "started"]
    assert "the node lost its broker" in items[3] and "(attempt 1)" in items[3]
    shot(page, "job-facts-timeline")
    assert not errors, errors
    context.close()


def test_account_page_shows_the_real_password_once_with_copy_buttons(live: Any, browser: Any,
                                                                     uid: str) -> None:
    user = make_user(live.app, uid)
    context, page, errors = open_page(browser)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    log_in(page, live, user)
    page.goto(live.url + "/account")
    assert "-P 'PASSWORD'" in page.inner_text("#mosquitto-sub")  # nothing issued yet
    page.click("text=Issue my broker password")
    page.wait_for_selector("#broker-password")
    password = page.inner_text("#broker-password code:nth-of-type(2)")
    command = page.inner_text("#mosquitto-sub")
    assert f"-P '{password}'" in command and "PASSWORD" not in command
    page.click("#broker-password button.copy")
    until(page, lambda: page.get_attribute("#broker-password button.copy", "data-copied") == "1",
          5, "password copied")
    assert page.evaluate("navigator.clipboard.readText()") == password
    page.click("button[data-copy-from=mosquitto-sub]")
    until(page, lambda: page.evaluate("navigator.clipboard.readText()").startswith(
        "mosquitto_sub "), 5, "command copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert f"-P '{password}'" in copied and "\\" not in copied and "\n" not in copied
    shot(page, "account-password")
    page.goto(live.url + "/account")  # shown once: a later visit has the placeholder again
    assert password not in page.content()
    assert not errors, errors
    context.close()
