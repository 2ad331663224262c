"""The fleet's health in the API and on the fleet page: run hours, self-tests newest first with
their residual, drain / maintenance, "last seen" from heartbeats, and the operators' (admins')
drain / resume button and API."""

from __future__ import annotations

import time
from typing import Any

from dashboard_helpers import csrf_from, login
from dispatcher import nodes
from dispatcher.models import Node, database
from gym_raas_mqtt import protocol
from gym_raas_mqtt.protocol import TopicKind


def add_node(node_id: str = "pi-3", **presence: Any) -> None:
    """A node row as the dispatcher writes it (dispatcher.nodes is the only writer)."""
    with database.connection_context():
        reg = nodes.NodeRegistry()
        reg.note(node_id, state="idle", session=1, last_seen=1000.0, **presence)
        reg.flush()


def test_nodes_api_shows_health_newest_selftest_first(app: Any, client: Any, alice: Any) -> None:
    add_node()
    with database.connection_context():
        nodes.add_run_seconds("pi-3", 5400.0)
        nodes.record_selftest("pi-3", True, {"samples": 40}, at=10.0, duration_s=4.2,
                              max_error_rad=0.012, rms_error_rad=0.004)
        nodes.record_selftest("pi-3", False, {"stage": "reset"}, at=20.0, duration_s=30.0,
                              reason="reset timed out")
        nodes.set_maintenance("pi-3", "3 consecutive job executions ended with a platform error",
                              at=30.0)
    body = client.get("/api/v1/nodes", headers=alice.headers).get_json()
    (n,) = body["nodes"]
    assert (n["id"], n["run_hours"], n["draining"], n["error_streak"]) == ("pi-3", 1.5, False, 0)
    assert n["maintenance"].startswith("3 consecutive") and n["last_seen"] == 1000.0
    assert [(t["at"], t["ok"], t["duration_s"], t["max_error_rad"], t["rms_error_rad"],
             t["reason"]) for t in n["selftests"]] == [
        (20.0, False, 30.0, None, None, "reset timed out"), (10.0, True, 4.2, 0.012, 0.004, None)]
    assert n["selftests"][1]["details"] == {"samples": 40}


def test_drain_and_resume_are_for_admins(app: Any, client: Any, alice: Any, admin: Any) -> None:
    add_node()
    r = client.post("/api/v1/nodes/pi-3/drain", headers=alice.headers)
    assert r.status_code == 403 and r.get_json()["error"] == "forbidden"
    r = client.post("/api/v1/nodes/pi-3/drain", headers=admin.headers)
    assert r.status_code == 200 and r.get_json()["draining"] is True
    with database.connection_context():
        assert Node.get_by_id("pi-3").draining and nodes.draining_nodes() == {"pi-3"}
    assert client.get("/api/v1/nodes", headers=alice.headers).get_json()["nodes"][0]["draining"]
    r = client.post("/api/v1/nodes/pi-3/resume", headers=admin.headers)
    assert r.status_code == 200 and r.get_json()["draining"] is False
    for bad in ("nobody", "a%2Fb", "-x"):
        r = client.post(f"/api/v1/nodes/{bad}/drain", headers=admin.headers)
        assert r.status_code == 404 and r.get_json()["error"] == "not_found", bad
    # changes need a token: a logged-in session alone is refused
    login(client, admin)
    assert client.post("/api/v1/nodes/pi-3/drain").status_code == 401


def test_fleet_page_shows_health_and_the_button_only_to_admins(app: Any, client: Any, alice: Any,
                                                               admin: Any) -> None:
    add_node(reason="self-test failed: stuck")
    with database.connection_context():
        nodes.record_selftest("pi-3", True, {}, at=10.0, duration_s=4.25, max_error_rad=0.0123,
                              rms_error_rad=0.0042)
        nodes.add_run_seconds("pi-3", 1800.0)
    login(client, alice)
    page = client.get("/fleet").get_data(as_text=True)
    assert "0.500" in page and "0.0123" in page and "0.0042" in page and "4.2" in page
    assert "self-test failed: stuck" in page and 'data-action="drain"' not in page
    assert client.post("/fleet/pi-3/drain", data={"csrf_token": csrf_from(page)}).status_code == 403
    client.post("/logout", data={"csrf_token": csrf_from(page)})
    login(client, admin)
    page = client.get("/fleet").get_data(as_text=True)
    assert 'data-action="drain"' in page
    r = client.post("/fleet/pi-3/drain", data={"csrf_token": csrf_from(page)})
    assert r.status_code == 302
    page = client.get("/fleet").get_data(as_text=True)
    assert 'data-field="draining"' in page and 'data-action="resume"' in page
    assert client.post("/fleet/pi-3/resume").status_code == 400  # no CSRF token
    client.post("/fleet/pi-3/resume", data={"csrf_token": csrf_from(page)})
    with database.connection_context():
        assert not Node.get_by_id("pi-3").draining


def test_last_seen_follows_heartbeats(app: Any, client: Any, alice: Any) -> None:
    add_node()
    hub = app.extensions["raas_hub"]
    beat = protocol.NodeHeartbeat(session=1, ts=time.time())
    assert hub.publish_message(protocol.topic(TopicKind.NODE_HEARTBEAT, node="pi-3"),
                               beat.to_bytes()).name == "heartbeat"
    (n,) = client.get("/api/v1/nodes", headers=alice.headers).get_json()["nodes"]
    assert n["last_seen"] == beat.ts
    stream = hub.open("alice", fleet=True)  # a fleet page opened now starts with it
    assert "heartbeat" in {e.name for e in stream.get(0)}
    hub.close(stream)
