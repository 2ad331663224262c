"""The runs table in headless Chromium at phone width (400 px): the key columns in view, the
table scrolling sideways inside its box (never the page), sorting by return from a header,
searching, filtering by a tag and paging. Screenshots go to test-artifacts/."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard_helpers import figures, make_run, make_user
from test_browser import browser, shot  # noqa: F401 - the module's Chromium fixture

pytestmark = [pytest.mark.browser, pytest.mark.broker]
WIDTH = 400


def row_names(page: Any) -> list[str]:
    return page.eval_on_selector_all("#jobs-body tr[data-job] td.key strong",
                                     "cells => cells.map(c => c.textContent)")


def test_runs_table_at_400_px(live: Any, browser: Any, uid: str) -> None:  # noqa: F811
    user = make_user(live.app, uid)
    for i, (ret, tags) in enumerate([(-300.0, ("lqr",)), (-80.0, ("energy",)),
                                     (-120.0, ("lqr", "energy")), (-50.0, ("lqr",)),
                                     (-200.0, ())]):
        make_run(user.name, f"swingup-v{i + 1}", tags, f"gain {i}",
                 figures(ret, 2.0 + i, 100 * (i + 1), 1 + i % 2, 10.0 + i, i % 3),
                 node=f"{uid}n{i % 2}", t=1000.0 + i)
    make_run(user.name, "still-queued", ("lqr",), t=2000.0)
    context = browser.new_context(viewport={"width": WIDTH, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    page.goto(live.url + "/jobs")
    page.fill("input[name=username]", user.name)
    page.fill("input[name=password]", user.password)
    page.click("button[type=submit]")
    page.wait_for_url("**/jobs")
    assert row_names(page)[0] == "still-queued"  # newest first by default

    # phone width: the page itself never scrolls sideways; the table does, inside its box
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
    box = page.evaluate("""() => { const s = document.querySelector('.runs-scroll');
        return [s.scrollWidth, s.clientWidth]; }""")
    assert box[0] > box[1], "the wide table should scroll inside .runs-scroll"
    first = page.locator("#jobs-body tr[data-job] td.key").first.bounding_box()
    ret_head = page.locator("th[data-sort=return]").bounding_box()
    assert first["x"] >= 0 and first["x"] + first["width"] <= WIDTH  # the run's name in view
    assert ret_head["x"] + ret_head["width"] <= WIDTH + 1  # return is among the first columns
    shot(page, "runs-400px")

    # sort by return from its header: best first, then the other way; unfinished runs last
    page.click("th[data-sort=return] a")
    page.wait_for_url("**sort=-return**")
    assert row_names(page) == ["swingup-v4", "swingup-v2", "swingup-v3", "swingup-v5",
                               "swingup-v1", "still-queued"]
    assert page.get_attribute("th[data-sort=return]", "aria-sort") == "descending"
    page.click("th[data-sort=return] a")
    page.wait_for_url("**sort=return**")
    assert row_names(page)[:2] == ["swingup-v1", "swingup-v5"]
    page.locator(".runs-scroll").evaluate("s => { s.scrollLeft = s.scrollWidth; }")
    shot(page, "runs-400px-scrolled")

    # search, then a tag from a row, then pages of two
    page.fill("input[name=q]", "SWINGUP-V2")
    page.click("#runs-filter button[type=submit]")
    page.wait_for_url("**q=SWINGUP-V2**")
    assert row_names(page) == ["swingup-v2"]
    page.click("#jobs-body a.tag:text('energy')")
    page.wait_for_url("**tag=energy**")
    assert sorted(row_names(page)) == ["swingup-v2"]  # the search still applies
    page.goto(live.url + "/jobs?tag=lqr&sort=-return&per_page=2")
    assert row_names(page) == ["swingup-v4", "swingup-v3"]
    assert page.inner_text("#runs-count").startswith("page 1 of 2")
    page.click("#runs-pager a[rel=next]")
    page.wait_for_url("**page=2**")
    assert row_names(page) == ["swingup-v1", "still-queued"]
    shot(page, "runs-400px-page2")
    # the live refresh (jobs.js, through the API) keeps this page's sort, filter and page
    page.evaluate("() => document.getElementById('jobs-body').replaceChildren()")
    page.wait_for_timeout(10500)
    assert row_names(page) == ["swingup-v1", "still-queued"]
    assert not errors, errors
    context.close()
