"""The fleet page's scaling panel and the operators' standby / wake: the panel's data endpoint
(window, thinning, last decision, validation), the admin-only API and buttons, the panel's markup
and script (no inline script under the strict CSP)."""

from __future__ import annotations

import time
from typing import Any

from dashboard_helpers import csrf_from, login
from dispatcher import nodes
from dispatcher.models import FleetSample, Node, NodeBoot, ScalingDecision, database


def add_node(node_id: str = "pi-3") -> None:
    """A node row as the dispatcher writes it."""
    with database.connection_context():
        reg = nodes.NodeRegistry()
        reg.note(node_id, state="idle", session=1, last_seen=1000.0)
        reg.flush()


def add_samples(now: float) -> None:
    with database.connection_context():
        for k in range(5):  # one outside a 60 s window
            FleetSample.create(t=now - 90 + 20 * k, arrivals=k, queued=2 * k, idle=1, busy=k,
                               booting=0, standby=3 - min(k, 3), online=1 + k)
        ScalingDecision.create(t=now - 50, policy="threshold", action=2, online=1, target=2,
                               woke=["pi-3"], slept=[], reason=None)
        ScalingDecision.create(t=now - 10, policy="threshold", action=0, online=3, target=2,
                               woke=[], slept=[], reason="hold-off: last wake 40 s ago")


def test_samples_endpoint_gives_the_window_and_the_last_decision(app: Any, client: Any,
                                                                 alice: Any) -> None:
    now = time.time()
    add_samples(now)
    body = client.get("/api/v1/fleet/samples?window_s=60", headers=alice.headers).get_json()
    assert body["window_s"] == 60 and abs(body["now"] - now) < 30
    assert [(s["arrivals"], s["queued"], s["busy"], s["standby"], s["online"])
            for s in body["samples"]] == [(2, 4, 2, 1, 3), (3, 6, 3, 0, 4), (4, 8, 4, 0, 5)]
    assert set(body["samples"][0]) == {"t", "arrivals", "queued", "idle", "busy", "booting",
                                       "standby", "online"}
    assert body["last_decision"] == {"t": body["last_decision"]["t"], "policy": "threshold",
                                     "action": 0, "online": 3, "target": 2, "woke": [],
                                     "slept": [], "reason": "hold-off: last wake 40 s ago"}
    assert len(client.get("/api/v1/fleet/samples", headers=alice.headers)
               .get_json()["samples"]) == 5  # default window: an hour


def test_samples_endpoint_refuses_bad_windows_and_strangers(app: Any, client: Any,
                                                            alice: Any) -> None:
    for bad in ("0", "59", "604801", "-5", "1e3", "abc", "", "３６００"):
        r = client.get(f"/api/v1/fleet/samples?window_s={bad}", headers=alice.headers)
        assert r.status_code == 400 and "window_s" in r.get_json()["reason"], bad
    assert client.get("/api/v1/fleet/samples").status_code == 401
    body = client.get("/api/v1/fleet/samples", headers=alice.headers).get_json()
    assert body["samples"] == [] and body["last_decision"] is None


def test_standby_and_wake_are_for_admins(app: Any, client: Any, alice: Any, admin: Any) -> None:
    add_node()
    r = client.post("/api/v1/nodes/pi-3/standby", headers=alice.headers)
    assert r.status_code == 403 and r.get_json()["error"] == "forbidden"
    r = client.post("/api/v1/nodes/pi-3/standby", headers=admin.headers)
    assert r.status_code == 200 and r.get_json()["standby"] is True
    with database.connection_context():
        assert Node.get_by_id("pi-3").standby and nodes.standby_nodes() == {"pi-3"}
    assert client.post("/api/v1/nodes/pi-3/standby", headers=admin.headers).status_code == 200
    r = client.post("/api/v1/nodes/pi-3/wake", headers=admin.headers)
    assert r.status_code == 200 and r.get_json()["standby"] is False
    with database.connection_context():
        assert nodes.standby_nodes() == set()
        assert [(b.node_id, b.cause) for b in NodeBoot.select()] == [("pi-3", "wake")]
    for bad in ("nobody", "a%2Fb", "-x"):
        r = client.post(f"/api/v1/nodes/{bad}/wake", headers=admin.headers)
        assert r.status_code == 404 and r.get_json()["error"] == "not_found", bad
    login(client, admin)  # changes need a token: a logged-in session alone is refused
    assert client.post("/api/v1/nodes/pi-3/standby").status_code == 401


def test_fleet_page_panel_and_standby_buttons(app: Any, client: Any, alice: Any,
                                              admin: Any) -> None:
    add_node()
    login(client, alice)
    page = client.get("/fleet").get_data(as_text=True)
    assert 'id="scaling"' in page and 'id="scaling-chart"' in page
    assert '<script src="/static/scaling.js"></script>' in page and "<script>" not in page
    assert 'data-action="standby"' not in page
    r = client.post("/fleet/pi-3/power/standby", data={"csrf_token": csrf_from(page)})
    assert r.status_code == 403
    client.post("/logout", data={"csrf_token": csrf_from(page)})
    login(client, admin)
    page = client.get("/fleet").get_data(as_text=True)
    assert 'data-action="standby"' in page
    r = client.post("/fleet/pi-3/power/standby", data={"csrf_token": csrf_from(page)})
    assert r.status_code == 302
    page = client.get("/fleet").get_data(as_text=True)
    assert 'data-action="wake"' in page and "kept in standby" in page
    assert client.post("/fleet/pi-3/power/wake").status_code == 400  # no CSRF token
    assert client.post("/fleet/pi-3/power/reboot",
                       data={"csrf_token": csrf_from(page)}).status_code == 404
    client.post("/fleet/pi-3/power/wake", data={"csrf_token": csrf_from(page)})
    with database.connection_context():
        assert not Node.get_by_id("pi-3").standby
    static = client.get("/static/scaling.js")
    assert static.status_code == 200 and b"/api/v1/fleet/samples" in static.get_data()
    static.close()
