"""Webhooks in the dashboard (SQLite and PostgreSQL): the API (add, list, delete, new secret,
delivery log), refusals with reasons, and the account page's section (secret shown once)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dashboard.app import create_app
from dashboard_helpers import csrf_from, login, make_user, run_job_to_end
from dispatcher import queue
from dispatcher.models import database
from dispatcher.webhooks import WebhookConfig
from gym_raas_mqtt.protocol import JobSource, JobState, SourceKind

LOCAL = WebhookConfig(allow_http=True, allow_private=True, max_per_user=3)
HOOK = "http://127.0.0.1:9/hooks/raas"


@pytest.fixture
def local_app(dash_config: Any) -> Any:
    """A dashboard whose policy lets tests add loopback http URLs."""
    return create_app({"TESTING": True, "RAAS_CONFIG": dash_config, "RAAS_WEBHOOKS": LOCAL})


def post_json(client: Any, user: Any, path: str, body: Any) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json",
                       headers=user.headers)


def test_add_list_delete_and_secret_once(local_app: Any) -> None:
    client, alice, bob = local_app.test_client(), make_user(local_app, "alice"), \
        make_user(local_app, "bob")
    r = post_json(client, alice, "/api/v1/webhooks", {"url": HOOK})
    assert r.status_code == 201, r.get_json()
    first = r.get_json()
    assert first["url"] == HOOK and len(first["secret"]) == 64
    r = post_json(client, alice, "/api/v1/webhooks", {"url": HOOK + "/2"})
    assert r.status_code == 201 and r.get_json()["secret"] is None  # shown once only
    listed = client.get("/api/v1/webhooks", headers=alice.headers).get_json()
    assert [w["url"] for w in listed["webhooks"]] == [HOOK, HOOK + "/2"]
    assert listed["has_secret"] is True
    assert all("secret" not in w for w in listed["webhooks"])
    assert client.get("/api/v1/webhooks", headers=bob.headers).get_json() == {
        "webhooks": [], "has_secret": False}
    assert client.delete(f"/api/v1/webhooks/{first['id']}", headers=bob.headers).status_code \
        == 404  # someone else's
    r = client.delete(f"/api/v1/webhooks/{first['id']}", headers=alice.headers)
    assert r.status_code == 200 and r.get_json()["url"] == HOOK
    assert client.delete(f"/api/v1/webhooks/{first['id']}", headers=alice.headers).status_code \
        == 404
    assert client.delete("/api/v1/webhooks/x1", headers=alice.headers).status_code == 404
    r = client.post("/api/v1/webhooks/secret", headers=alice.headers)
    assert r.status_code == 201 and r.get_json()["secret"] != first["secret"]


def test_refusals_have_reasons(local_app: Any) -> None:
    client, alice = local_app.test_client(), make_user(local_app, "alice")
    for body, status, reason in [
        ({"url": "ftp://x.org/"}, 400, "must start with https://"),
        ({"url": 5}, 400, "non-empty string"),
        ({"url": HOOK, "secret": "mine"}, 400, 'the body must be {"url"'),
        ([HOOK], 400, 'the body must be {"url"'),
        ({"url": "https://no-such-host.invalid/"}, 400, "does not resolve"),
    ]:
        r = post_json(client, alice, "/api/v1/webhooks", body)
        assert (r.status_code, r.get_json()["error"]) == (status, "invalid"), r.get_json()
        assert reason in r.get_json()["reason"]
    r = client.post("/api/v1/webhooks", data="url=x", headers=alice.headers)
    assert r.status_code == 415
    for i in range(3):
        assert post_json(client, alice, "/api/v1/webhooks", {"url": f"{HOOK}/{i}"}).status_code \
            == 201
    r = post_json(client, alice, "/api/v1/webhooks", {"url": HOOK})
    assert r.status_code == 409 and "3 webhooks already" in r.get_json()["reason"]
    r = post_json(client, alice, "/api/v1/webhooks/x", {"url": HOOK})
    assert r.status_code in (404, 405)
    assert client.get("/api/v1/webhooks/deliveries?limit=0", headers=alice.headers).status_code \
        == 400
    assert client.get("/api/v1/webhooks/deliveries?limit=abc",
                      headers=alice.headers).status_code == 400


def test_default_policy_refuses_http_and_private_addresses(client: Any, alice: Any) -> None:
    for url, reason in [(HOOK, "plain http:// webhooks are not allowed"),
                        ("https://127.0.0.1/h", "127.0.0.1 is a loopback address"),
                        ("https://169.254.169.254/", "is a link-local address"),
                        ("https://10.0.0.8/h", "is a private address")]:
        r = post_json(client, alice, "/api/v1/webhooks", {"url": url})
        assert r.status_code == 400 and reason in r.get_json()["reason"], r.get_json()


def test_changes_need_a_token(local_app: Any) -> None:
    client, alice = local_app.test_client(), make_user(local_app, "alice")
    assert client.get("/api/v1/webhooks").status_code == 401
    login(client, alice)
    assert client.get("/api/v1/webhooks").status_code == 200  # a session may read
    r = client.post("/api/v1/webhooks", data=json.dumps({"url": HOOK}),
                    content_type="application/json")
    assert r.status_code == 401


def test_delivery_log_lists_a_finished_job(local_app: Any, dash_config: Any, tmp_path: Any) -> None:
    client, alice = local_app.test_client(), make_user(local_app, "alice")
    hook = post_json(client, alice, "/api/v1/webhooks", {"url": HOOK}).get_json()
    with database.connection_context():
        jid = queue.enqueue("alice", JobSource(SourceKind.GIT, url="https://e.org/r.git"), 10,
                            limits=queue.QueueLimits()).id
        run_job_to_end(jid, dash_config.store_url, tmp_path, state=JobState.FAILED)
    [d] = client.get("/api/v1/webhooks/deliveries", headers=alice.headers).get_json()[
        "deliveries"]
    assert (d["job_id"], d["webhook_id"], d["state"], d["status"], d["attempts"],
            d["event"]) == (jid, hook["id"], "failed", "pending", 0, "job.ended")
    login(client, alice)
    page = client.get("/account").get_data(as_text=True)
    assert f'data-delivery-id="{d["id"]}"' in page and "pending" in page


def test_account_page_adds_and_deletes_with_secret_shown_once(local_app: Any) -> None:
    client, alice = local_app.test_client(), make_user(local_app, "alice")
    login(client, alice)
    page = client.get("/account").get_data(as_text=True)
    assert 'id="webhooks"' in page and 'id="webhook-secret"' not in page
    r = client.post("/account/webhooks", data={"csrf_token": csrf_from(page), "url": HOOK})
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert 'id="webhook-secret"' in html and f"<code>{HOOK}</code>" in html
    again = client.get("/account").get_data(as_text=True)
    assert 'id="webhook-secret"' not in again  # shown once
    r = client.post("/account/webhooks", data={"csrf_token": csrf_from(again),
                                               "url": "gopher://x"})
    assert r.status_code == 400 and "must start with https://" in r.get_data(as_text=True)
    assert client.post("/account/webhooks", data={"url": HOOK + "/x"}).status_code == 400  # CSRF
    [hook] = client.get("/api/v1/webhooks").get_json()["webhooks"]
    r = client.post(f"/account/webhooks/{hook['id']}/delete",
                    data={"csrf_token": csrf_from(again)})
    assert r.status_code == 302
    assert client.get("/api/v1/webhooks").get_json()["webhooks"] == []
    r = client.post("/account/webhooks/secret", data={"csrf_token": csrf_from(again)})
    assert 'id="webhook-secret"' in r.get_data(as_text=True)
