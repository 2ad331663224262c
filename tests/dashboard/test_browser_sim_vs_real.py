"""The job page's sim-vs-real section in headless Chromium: a finished job whose node's motor is
weaker than its calibration shows the RMS error per horizon, the divergence, the refit's deltas
and the overlay image, at desktop and phone width. Screenshots go to test-artifacts/."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from dashboard_helpers import make_user
from fleet_node.node_key import NodeKey
from gym_raas_mqtt import physics
from gym_raas_mqtt.physics import DEFAULT_PARAMS
from test_browser import browser, open_page, shot, until  # noqa: F401 - the browser fixture
from test_fleet_keys import signed_job

pytestmark = [pytest.mark.browser, pytest.mark.broker]


def weak_motor_telemetry(path: Path) -> None:
    """Two 8 s episodes of energy pumping on a pendulum whose torque gain is 25 % below the
    calibration's (DEFAULT_PARAMS), as a motor node records them."""
    truth = DEFAULT_PARAMS.replace(action_gain=0.75 * DEFAULT_PARAMS.action_gain)
    lines = ["episode_id,seq,t,theta,theta_dot,u_desired,u_applied,reward,deadline_miss"]
    for episode in (1, 2):
        th, thd = math.pi - 0.05 * episode, 0.0
        for k in range(1, 161):
            u = 2.0 if thd >= 0 else -2.0  # pumps energy: dE/dt = b·u·θ̇
            r = physics.reward(th, thd, u)
            lines.append(f"{episode},{k},{(k - 1) * 0.05!r},{th!r},{thd!r},{u!r},{u!r},{r!r},0")
            th, thd = physics.step(truth, th, thd, u)
    path.write_text("\n".join(lines) + "\n")


def test_sim_vs_real_section(live: Any, browser: Any,  # noqa: F811 - the imported fixture
                             uid: str, tmp_path: Path) -> None:
    user = make_user(live.app, uid)
    tel = tmp_path / "weak.csv"
    weak_motor_telemetry(tel)
    job = signed_job(live.app, user.name, f"{uid}n", NodeKey.load_or_create(tmp_path / "k.pem"),
                     tmp_path, telemetry=tel)
    context, page, errors = open_page(browser)
    page.goto(live.url + f"/jobs/{job}")  # → the login form, then back to the job
    for field, value in (("username", user.name), ("password", user.password)):
        page.fill(f"input[name={field}]", value)
    page.click("button[type=submit]")
    page.wait_for_selector("#sim-vs-real")
    until(page, lambda: page.evaluate("document.getElementById('svr-plot').naturalWidth") > 100,
          what="sim_vs_real.png loaded")
    horizons = page.inner_text("#svr-horizons")
    assert "0.25 s" in horizons and "5 s" in horizons and "RMS θ error [rad]" in horizons
    assert "after" in page.inner_text("#svr-diverge")  # a 25 % weaker motor diverges
    refit = page.inner_text("#svr-refit")
    assert "action_gain" in refit and "-25.0 %" in refit, refit
    page.locator("#sim-vs-real").scroll_into_view_if_needed()
    shot(page, "sim-vs-real")
    page.set_viewport_size({"width": 400, "height": 900})
    width = page.evaluate("document.getElementById('sim-vs-real').scrollWidth")
    assert width <= 400, f"the section overflows a 400 px screen ({width} px)"
    shot(page, "sim-vs-real-phone")
    assert not errors, errors
    context.close()
