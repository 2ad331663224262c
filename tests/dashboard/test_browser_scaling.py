"""The fleet page's scaling panel in headless Chromium: the SVG drawn from the dispatcher's fleet
samples (arrivals, queue, online, standby), the last decision, the standby / wake buttons, and no
script error or CSP violation. Screenshot in test-artifacts/."""

from __future__ import annotations

import time
from typing import Any

import pytest

from dashboard_helpers import make_user
from dispatcher import nodes
from dispatcher.models import FleetSample, Node, ScalingDecision, database
from tests.dashboard.test_browser import browser, open_page, shot, until  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.broker]


def test_scaling_panel_draws_samples_and_standby_buttons(live: Any, browser: Any,  # noqa: F811
                                                         uid: str) -> None:
    admin = make_user(live.app, f"{uid}op", admin=True)
    node, now = f"{uid}s", time.time()
    with database.connection_context():
        reg = nodes.NodeRegistry()
        reg.note(node, state="idle", session=1, last_seen=now)
        reg.flush()
        for k in range(30):  # a queue builds, a station wakes, the queue drains
            queued = max(0, 8 - abs(k - 12))
            FleetSample.create(t=now - 300 + 10 * k, arrivals=k % 3, queued=queued, idle=1,
                               busy=min(queued, 2), booting=0, standby=1 if queued < 3 else 0,
                               online=2 if queued >= 3 else 1)
        ScalingDecision.create(t=now - 5, policy="threshold", action=1, online=2, target=1,
                               woke=[], slept=[node], reason=None)
    context, page, errors = open_page(browser)
    page.goto(live.url + "/fleet")
    page.fill("input[name=username]", admin.name)
    page.fill("input[name=password]", admin.password)
    page.click("button[type=submit]")
    page.wait_for_url("**/fleet")
    until(page, lambda: page.get_attribute("#scaling", "data-samples") == "30",
          what="the panel drawn from 30 samples")
    for series in ("queued", "online", "standby"):  # step lines; arrivals are bars
        assert page.locator(f"#scaling-chart path.s-{series}").count() == 1
    assert page.locator("#scaling-chart rect.s-arrivals").count() == 20  # arrivals > 0
    assert "threshold" in page.inner_text("[data-field=scaling-policy]")
    assert f"standby {node}" in page.inner_text("[data-field=scaling-decision]")
    card = f".node[data-node='{node}']"
    for action, shown, kept in (("standby", "[data-field=standby]", True),
                                ("wake", "button[data-action=standby]", False)):
        page.click(f"{card} button[data-action={action}]")
        page.wait_for_selector(f"{card} {shown}")
        with database.connection_context():
            assert bool(Node.get_by_id(node).standby) is kept, action
        shot(page, f"fleet-scaling-{action}")
    assert not errors, errors
    context.close()
