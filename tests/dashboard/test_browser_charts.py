"""The chart component in headless Chromium: a finished job's chart from its telemetry (drag-zoom,
pan, reset, upright band, deadline-miss markers), the compare view overlaying two runs picked on
the jobs page, and the live chart following a running job — all under the dashboard's strict CSP
with no violation reported. Screenshots go to test-artifacts/."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from dashboard_helpers import QUEUE_LIMITS, make_user, run_job_to_end
from dispatcher import queue
from dispatcher.models import database
from gym_raas_mqtt import protocol
from gym_raas_mqtt.protocol import JobState, TelemetryBatch, TopicKind
from gym_raas_mqtt.results import UPRIGHT_RAD
import test_browser
from test_browser import FakeNode, open_page, publish_state, shot, until

browser = test_browser.browser  # the module-scoped headless Chromium fixture, shared

pytestmark = [pytest.mark.browser, pytest.mark.broker]
GIT = {"url": "https://example.org/me/ctrl.git", "ref": "main", "time_limit_s": 30}
HEADER = "episode_id,seq,t,theta,theta_dot,u_desired,u_applied,reward,deadline_miss"
DT = 0.05
STEPS = 400  # per episode: 20 s at 20 Hz
MISS_ROWS = (100, 650)  # one deadline miss in each episode
CSP_WATCH = """document.addEventListener("securitypolicyviolation", (e) => {
  (window.__csp = window.__csp || []).push(e.violatedDirective + " " + e.blockedURI); });"""


def swing_up_csv(path: Path, gain: float = 1.0) -> None:
    """Two episodes of a pendulum brought up from hanging (θ = π) and held near 0, with a
    deadline miss in each; ``gain`` makes runs differ."""
    rows = [HEADER]
    for i in range(2 * STEPS):
        episode, seq = divmod(i, STEPS)
        theta = math.pi * math.exp(-gain * seq / 120) * math.cos(seq / 15)
        theta_dot = -math.pi / 15 * math.exp(-gain * seq / 120) * math.sin(seq / 15)
        u = max(-2.0, min(2.0, -3 * theta))
        rows.append(f"{episode + 1},{seq},{seq * DT:.2f},{theta!r},{theta_dot!r},{u!r},{u!r},"
                    f"{-(theta ** 2 + 0.1 * theta_dot ** 2)!r},{int(i in MISS_ROWS)}")
    path.write_text("\n".join(rows) + "\n")


def finished_job(live: Any, user: Any, tmp_path: Path, gain: float) -> str:
    r = live.app.test_client().post("/api/v1/jobs", json=GIT, headers=user.headers)
    assert r.status_code == 201, r.get_json()
    job = r.get_json()["id"]
    tel = tmp_path / f"{job}.csv"
    swing_up_csv(tel, gain)
    run_job_to_end(job, live.cfg.store_url, tmp_path, telemetry=tel)
    return job


def log_in(page: Any, url: str, user: Any) -> None:
    page.goto(url)
    page.fill("input[name=username]", user.name)
    page.fill("input[name=password]", user.password)
    page.click("button[type=submit]")


def csp_page(browser: Any) -> tuple[Any, Any, list[str]]:
    """:func:`open_page` that also records Content-Security-Policy violations in ``window.__csp``
    (an init script: injected by the browser's devtools protocol, not the page, so CSP allows)."""
    context, page, errors = open_page(browser)
    page.add_init_script(CSP_WATCH)
    return context, page, errors


def no_violations(page: Any, errors: list[str]) -> None:
    """No CSP violation and no script error so far — and the watcher does see one: an inline
    style attribute set now (what a chart library must not do) is reported."""
    assert page.evaluate("window.__csp || []") == []
    assert not errors, errors
    page.evaluate("document.body.setAttribute('style', 'outline: 1px solid red')")
    until(page, lambda: page.evaluate("(window.__csp || []).length") > 0, 2.0,
          "the CSP watcher to report an inline style attribute")


def chart_state(page: Any, sel: str) -> dict[str, str]:
    return page.eval_on_selector(sel, "el => Object.assign({}, el.dataset)")


def ink(page: Any, sel: str) -> int:
    """Pixels drawn on the canvases inside ``sel``."""
    return page.eval_on_selector_all(sel + " canvas", """cs => cs.reduce((n, c) => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n; }, 0)""")


def drag(page: Any, sel: str, x0: float, x1: float, shift: bool = False) -> None:
    """Drag across the plotting area of ``sel`` from fraction ``x0`` to ``x1`` of its width."""
    page.locator(sel).scroll_into_view_if_needed()
    box = page.locator(sel).bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * x0, y)
    if shift:
        page.keyboard.down("Shift")
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * x1, y, steps=8)
    page.mouse.up()
    if shift:
        page.keyboard.up("Shift")


def test_finished_chart_zooms_pans_and_marks(live: Any, browser: Any, uid: str,
                                             tmp_path: Path) -> None:
    user = make_user(live.app, uid)
    job = finished_job(live, user, tmp_path, 1.0)
    context, page, errors = csp_page(browser)
    log_in(page, live.url + f"/jobs/{job}", user)
    sel = "#finished-chart"
    page.wait_for_selector(sel + "[data-state=ready]", timeout=8000)
    s = chart_state(page, sel)
    end = (2 * STEPS - 1) * DT  # episodes end to end
    assert s["runs"] == "1" and s["points"] == str(2 * STEPS)
    assert float(s["xmin"]) == 0.0 and float(s["xmax"]) == pytest.approx(end, abs=1e-3)
    assert s["band"] == f"{-UPRIGHT_RAD},{UPRIGHT_RAD}" and int(s["bandPx"]) >= 4
    assert s["misses"] == "2" and s["synced"] == "1"
    assert page.locator(sel + " .chart-panel").count() == 4
    assert ink(page, sel) > 5000
    # the PNG stays in the bundle, behind a link and a folded static view
    assert page.locator("#results ul.files a", has_text="plot.png").count() == 1
    until(page, lambda: page.evaluate("document.getElementById('plot').naturalWidth") > 100,
          what="plot.png loaded")
    shot(page, "chart-finished")

    # drag-zoom on the θ panel: every panel follows; the misses outside the range are not drawn
    over = sel + " .chart-panel[data-quantity=theta] .u-over"
    drag(page, over, 0.30, 0.45)
    until(page, lambda: float(chart_state(page, sel)["xmax"]) < end - 1, what="zoomed in")
    s = chart_state(page, sel)
    lo, hi = float(s["xmin"]), float(s["xmax"])
    assert end * 0.28 < lo < hi < end * 0.47 and s["synced"] == "1"
    assert s["misses"] == "0"  # 5.0 s and 32.5 s (episode 2 starts at 20 s) lie outside
    shot(page, "chart-zoomed")
    page.click(sel + " button[title='pan right']")
    s = chart_state(page, sel)
    assert float(s["xmin"]) == pytest.approx(lo + (hi - lo) * 0.25, abs=2e-3)
    drag(page, over, 0.6, 0.2, shift=True)  # shift+drag pans: the range moves right again
    s2 = chart_state(page, sel)
    assert float(s2["xmin"]) > float(s["xmin"]) + 0.2 * (hi - lo)
    assert float(s2["xmax"]) - float(s2["xmin"]) == pytest.approx(hi - lo, abs=2e-3)
    page.click(sel + " button:text('Reset')")
    s = chart_state(page, sel)
    assert float(s["xmin"]) == 0.0 and s["misses"] == "2"
    drag(page, over, 0.05, 0.25)  # zoom onto the first miss (5.0 s)
    s = chart_state(page, sel)
    assert float(s["xmin"]) < MISS_ROWS[0] * DT < float(s["xmax"]) and s["misses"] == "1"
    page.dblclick(over)
    until(page, lambda: float(chart_state(page, sel)["xmin"]) == 0.0, what="double-click reset")
    no_violations(page, errors)
    context.close()


def test_compare_overlays_two_runs_picked_on_the_jobs_page(live: Any, browser: Any, uid: str,
                                                         tmp_path: Path) -> None:
    user = make_user(live.app, uid)
    other = make_user(live.app, f"{uid}x")
    fast, slow = (finished_job(live, user, tmp_path, g) for g in (2.0, 0.5))
    foreign = finished_job(live, other, tmp_path, 1.0)
    context, page, errors = csp_page(browser)
    log_in(page, live.url + "/jobs", user)
    page.wait_for_url("**/jobs")
    page.evaluate("sessionStorage.clear()")
    page.reload()
    assert page.locator("#compare-button").is_disabled()
    page.check(f"tr[data-job='{fast}'] input.pick")
    page.check(f"tr[data-job='{slow}'] input.pick")
    assert page.inner_text("#compare-button") == "Compare (2)"
    shot(page, "jobs-compare-picked")
    page.click("#compare-button")
    page.wait_for_url("**/compare?jobs=*")
    assert page.url.endswith(f"/compare?jobs={fast},{slow}")
    sel = "#compare-chart"
    page.wait_for_selector(sel + "[data-state=ready]", timeout=8000)
    s = chart_state(page, sel)
    assert s["runs"] == "2" and s["points"] == str(4 * STEPS) and s["misses"] == "4"
    legend = page.eval_on_selector_all(
        sel + " .chart-panel[data-quantity=theta] .u-legend .u-series th",
        "els => els.map(e => e.textContent.trim())")
    assert legend[1:] == [fast, slow]
    assert page.locator(sel + " .chart-panel").count() == 4 and ink(page, sel) > 5000
    heads = page.eval_on_selector_all("#compare-table thead th[data-job]",
                                      "els => els.map(e => e.dataset.job)")
    assert heads == [fast, slow]
    returns = page.eval_on_selector_all("#compare-table tr[data-metric=return] td",
                                        "els => els.map(e => parseFloat(e.textContent))")
    assert returns[0] > returns[1]  # the faster swing-up loses less reward
    assert page.inner_text("#compare-table tr[data-metric=steps]").split()[-2:] == [
        str(2 * STEPS)] * 2
    assert "node-a" in page.inner_text("#compare-table tr[data-metric=node_id]")
    drag(page, sel + " .chart-panel[data-quantity=reward] .u-over", 0.0, 0.2)
    assert chart_state(page, sel)["synced"] == "1"
    shot(page, "compare")
    # a phone: the table scrolls inside its box, the charts shrink to the width
    page.set_viewport_size({"width": 400, "height": 800})
    right = "sel => Math.max(...[...document.querySelectorAll(sel)].map(e => e.getBoundingClientRect().right))"
    until(page, lambda: page.evaluate(f"({right})('#compare-chart canvas, .scroll-x')") <= 400,
          what="the compare page's table and charts to fit 400 px")
    shot(page, "compare-400px")
    no_violations(page, errors)

    # the address is the comparison: another user's run, too many or too few runs are refused
    resp = page.goto(live.url + f"/compare?jobs={fast},{foreign}")
    assert resp.status == 403
    resp = page.goto(live.url + "/compare?jobs=" + ",".join([fast] * 2))
    assert resp.status == 400 and "at least two" in page.inner_text("main")
    resp = page.goto(live.url + "/compare?jobs=" + ",".join(f"{i:016x}" for i in range(9)))
    assert resp.status == 400 and "at most 8" in page.inner_text("main")
    context.close()


def test_live_chart_follows_a_running_job(live: Any, browser: Any, uid: str) -> None:
    user = make_user(live.app, uid)
    node = f"{uid}n"
    r = live.app.test_client().post("/api/v1/jobs", json=GIT, headers=user.headers)
    job = r.get_json()["id"]
    with database.connection_context():
        queue.assign(job, node, limits=QUEUE_LIMITS)
        queue.start(job, 1, limits=QUEUE_LIMITS)
    publish_state(live, user.name, job, JobState.RUNNING, node)
    context, page, errors = csp_page(browser)
    log_in(page, live.url + f"/jobs/{job}", user)
    page.wait_for_selector("#chart[data-state]")
    # the node's first batch has a missed deadline at its third step (t = 0.1 s)
    first_steps = [(i, i * DT, math.pi - 0.05, 0.0, 2.0, 2.0, -9.0, i == 2) for i in range(5)]
    batch = TelemetryBatch(job_id=job, node_id=node, episode_id=1, **{
        c: tuple(row[k] for row in first_steps) for k, c in enumerate(protocol.TELEMETRY_COLUMNS)})
    live.pub.publish(protocol.topic(TopicKind.JOB_TELEMETRY, owner=user.name, job=job),
                     batch.to_bytes(), qos=0)
    fake = FakeNode(live.pub, user.name, job, node)  # its steps 0-4 are taken as seen already
    fake.thread.start()
    sel = "#chart"
    try:
        until(page, lambda: int(chart_state(page, sel).get("points", 0)) >= 60, 10.0,
              "live samples in the chart")
        first = chart_state(page, sel)
        until(page, lambda: float(chart_state(page, sel)["xmax"]) > float(first["xmax"]) + 0.5,
              5.0, "the chart's time range following the job")
        assert int(chart_state(page, sel)["updates"]) > int(first["updates"])
        assert chart_state(page, sel)["band"] == f"{-UPRIGHT_RAD},{UPRIGHT_RAD}"
        assert chart_state(page, sel)["misses"] == "1"
        assert ink(page, sel) > 5000
        # zoomed, it holds still while samples keep coming; Reset follows again
        drag(page, sel + " .chart-panel[data-quantity=theta] .u-over", 0.2, 0.6)
        held = chart_state(page, sel)
        time.sleep(0.8)
        now = chart_state(page, sel)
        assert now["xmax"] == held["xmax"] and int(now["points"]) > int(held["points"])
        page.click(sel + " button:text('Reset')")
        until(page, lambda: float(chart_state(page, sel)["xmax"]) > float(held["xmax"]) + 1,
              5.0, "following again after Reset")
        shot(page, "chart-live")
    finally:
        fake.stop.set()
        fake.thread.join()
    no_violations(page, errors)
    context.close()
