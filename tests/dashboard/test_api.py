"""The JSON API through Flask's test client: auth, submission, listing, cancel, results, errors."""

from __future__ import annotations

import io
from typing import Any

import pytest

from dashboard_helpers import login, make_config, make_user, run_job_to_end, tgz
from dispatcher.models import ApiToken, JobEvent, Owner, database

GIT = {"url": "https://example.org/me/ctrl.git", "ref": "main", "time_limit_s": 30}


def submit(client: Any, user: Any, body: dict | None = None) -> dict:
    r = client.post("/api/v1/jobs", json=body or GIT, headers=user.headers)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def test_requests_without_or_with_a_wrong_token_get_401(client: Any, alice: Any) -> None:
    for path in ("/api/v1/jobs", "/api/v1/me", "/api/v1/nodes", "/api/v1/jobs/abc"):
        r = client.get(path)
        assert r.status_code == 401 and r.get_json()["error"] == "unauthorized"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        r = client.get(path, headers={"Authorization": "Bearer raas_wrong"})
        assert r.status_code == 401
    assert client.get("/api/v1/me", headers=alice.headers).get_json()["name"] == "alice"


def test_token_is_stored_only_as_its_sha256(app: Any, alice: Any) -> None:
    import hashlib

    with database.connection_context():
        rows = list(ApiToken.select())
        owner = Owner.get_by_id("alice")
    assert [r.token_hash for r in rows] == [hashlib.sha256(alice.token.encode()).hexdigest()]
    assert owner.password_hash.startswith(("scrypt:", "pbkdf2:"))
    assert alice.password not in owner.password_hash


def test_login_endpoint_issues_a_working_token(client: Any, alice: Any) -> None:
    r = client.post("/api/v1/tokens", json={"username": "alice", "password": "nope"})
    assert r.status_code == 401
    r = client.post("/api/v1/tokens", json={"username": "alice", "password": alice.password})
    assert r.status_code == 201
    token = r.get_json()["token"]
    r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.get_json()["name"] == "alice"
    assert r.get_json()["broker"]["topic_filter"] == "raas/v1/jobs/alice/+/#"
    assert r.get_json()["broker"]["username"] == "user-alice"


def test_submit_git_job_goes_through_the_queue(app: Any, client: Any, alice: Any) -> None:
    job = submit(client, alice)
    assert job["state"] == "queued" and job["queue_position"] == 1
    assert job["source"] == {"kind": "git", "url": GIT["url"], "ref": "main", "archive_key": None}
    with database.connection_context():
        assert [e.to_state for e in JobEvent.select().where(JobEvent.job == job["id"])] == [
            "queued"]
    second = submit(client, alice, {"url": "git@github.com:me/c.git"})
    assert second["time_limit_s"] == 120.0 and second["queue_position"] == 2
    listed = client.get("/api/v1/jobs", headers=alice.headers).get_json()["jobs"]
    assert [j["id"] for j in listed] == [second["id"], job["id"]]


@pytest.mark.parametrize("body,field", [
    ({"url": "--upload-pack=x"}, "url"), ({"url": "http://insecure/x"}, "url"),
    ({"url": "https://x.org/r", "ref": "-b"}, "ref"), ({}, "url"),
    ({"url": "https://x.org/r", "time_limit_s": 100000}, "time_limit_s"),
    ({"url": "https://x.org/r", "time_limit_s": "soon"}, "time_limit_s"),
    ({"url": ["https://x.org/r"]}, "url"),
])
def test_invalid_git_submissions_get_400_with_the_field(client: Any, alice: Any, body: dict,
                                                        field: str) -> None:
    r = client.post("/api/v1/jobs", json=body, headers=alice.headers)
    assert r.status_code == 400
    assert r.get_json()["error"] == "invalid" and r.get_json()["field"] == field
    assert r.get_json()["reason"]


def test_unknown_fields_and_non_objects_are_400(client: Any, alice: Any) -> None:
    r = client.post("/api/v1/jobs", json={"url": "https://x.org/r", "owner": "bob"},
                    headers=alice.headers)
    assert r.status_code == 400 and "owner" in r.get_json()["reason"]
    for raw in (b"[1,2]", b"{", b"null", b"\xff"):
        r = client.post("/api/v1/jobs", data=raw, content_type="application/json",
                        headers=alice.headers)
        assert r.status_code == 400, raw


def test_wrong_content_type_is_415(client: Any, alice: Any) -> None:
    r = client.post("/api/v1/jobs", data="url=https://x", content_type="text/plain",
                    headers=alice.headers)
    assert r.status_code == 415 and r.get_json()["error"] == "unsupported_media_type"


def test_archive_upload(app: Any, client: Any, alice: Any, dash_config: Any) -> None:
    data = tgz({"run.py": b"print('hi')\n"})
    r = client.post("/api/v1/jobs", headers=alice.headers, content_type="multipart/form-data",
                    data={"archive": (io.BytesIO(data), "ctrl.tar.gz"), "time_limit_s": "20"})
    assert r.status_code == 201, r.get_json()
    job = r.get_json()
    key = job["source"]["archive_key"]
    assert job["source"]["kind"] == "archive" and key.startswith("uploads/alice/")
    from raas_platform.storage import open_store

    assert open_store(dash_config.store_url).get_bytes(key) == data


@pytest.mark.parametrize("name,data,status", [
    ("ctrl.rar", b"Rar!", 415), ("ctrl.tar.gz", b"not gzip", 415),
    ("ctrl.tar.gz", tgz({"../x.py": b""}), 400)])
def test_bad_archives_are_refused(client: Any, alice: Any, name: str, data: bytes,
                                  status: int) -> None:
    r = client.post("/api/v1/jobs", headers=alice.headers, content_type="multipart/form-data",
                    data={"archive": (io.BytesIO(data), name)})
    assert r.status_code == status, r.get_json()


def test_oversized_upload_is_413(tmp_path: Any) -> None:
    from dashboard.app import create_app

    app = create_app({"TESTING": True, "RAAS_CONFIG": make_config(tmp_path,
                                                                  max_upload_bytes=2000)})
    user = make_user(app, "alice")
    client = app.test_client()
    big = b"\x1f\x8b" + b"\0" * 100_000  # beyond the request cap: refused before parsing
    r = client.post("/api/v1/jobs", headers=user.headers, content_type="multipart/form-data",
                    data={"archive": (io.BytesIO(big), "ctrl.tar.gz")})
    assert r.status_code == 413 and r.get_json()["error"] == "request_entity_too_large"
    medium = b"\x1f\x8b" + b"\0" * 10_000  # within request overhead, beyond the archive cap
    r = client.post("/api/v1/jobs", headers=user.headers, content_type="multipart/form-data",
                    data={"archive": (io.BytesIO(medium), "ctrl.tar.gz")})
    assert r.status_code == 413 and r.get_json()["error"] == "too_large"


def test_other_users_jobs_are_403_and_unknown_404(client: Any, alice: Any, bob: Any,
                                                  admin: Any) -> None:
    job = submit(client, alice)
    for path in (f"/api/v1/jobs/{job['id']}", f"/api/v1/jobs/{job['id']}/results"):
        assert client.get(path, headers=bob.headers).status_code == 403
        assert client.get(path, headers=admin.headers).status_code == 200
    assert client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=bob.headers).status_code == 403
    assert client.get("/api/v1/jobs", headers=bob.headers).get_json()["jobs"] == []
    assert len(client.get("/api/v1/jobs", headers=admin.headers).get_json()["jobs"]) == 1
    r = client.get("/api/v1/jobs/0123456789abcdef", headers=alice.headers)
    assert r.status_code == 404 and r.get_json()["error"] == "not_found"
    assert client.get("/api/v1/jobs/..%2F..", headers=alice.headers).status_code == 404
    assert client.get("/api/v1/nope", headers=alice.headers).get_json()["error"] == "not_found"


def test_cancel_then_409(client: Any, alice: Any) -> None:
    job = submit(client, alice)
    r = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    assert r.status_code == 202 and r.get_json()["state"] == "canceled"
    r = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    assert r.status_code == 409 and r.get_json()["error"] == "conflict"


def test_changes_need_a_token_not_a_session_cookie(client: Any, alice: Any) -> None:
    login(client, alice)
    assert client.get("/api/v1/jobs").status_code == 200  # pages' scripts read with the session
    r = client.post("/api/v1/jobs", json=GIT)
    assert r.status_code == 401 and "bearer token" in r.get_json()["reason"]


def test_results_list_and_download(app: Any, client: Any, alice: Any, dash_config: Any,
                                   tmp_path: Any) -> None:
    job = submit(client, alice)
    assert client.get(f"/api/v1/jobs/{job['id']}/results",
                      headers=alice.headers).get_json()["files"] == []
    summary = run_job_to_end(job["id"], dash_config.store_url, tmp_path)
    got = client.get(f"/api/v1/jobs/{job['id']}", headers=alice.headers).get_json()
    assert got["state"] == "succeeded" and got["summary"]["steps"] == 60
    assert got["commit_sha"] == summary["commit_sha"] and got["terminal"]
    files = client.get(f"/api/v1/jobs/{job['id']}/results", headers=alice.headers).get_json()
    names = {f["name"] for f in files["files"]}
    assert names == {"summary.json", "telemetry.csv", "stdout.log", "plot.png"}
    r = client.get(f"/api/v1/jobs/{job['id']}/results/plot.png", headers=alice.headers)
    assert r.status_code == 200 and r.mimetype == "image/png" and r.data[:4] == b"\x89PNG"
    r = client.get(f"/api/v1/jobs/{job['id']}/results/stdout.log", headers=alice.headers)
    assert b"return -12.3" in r.data and "attachment" in r.headers["Content-Disposition"]
    for bad in ("nothere.txt", ".hidden", "..%2Fx"):
        assert client.get(f"/api/v1/jobs/{job['id']}/results/{bad}",
                          headers=alice.headers).status_code == 404
    r = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    assert r.status_code == 409


def test_nodes_from_the_database(app: Any, client: Any, alice: Any) -> None:
    from dispatcher.models import Node, SelfTest

    with database.connection_context():
        Node.create(id="node-a", state="idle", run_seconds=7200.0, calibration_id="cal-1",
                    last_seen=1.0)
        SelfTest.create(node="node-a", ok=True, details={"friction": 0.1})
    nodes = client.get("/api/v1/nodes", headers=alice.headers).get_json()["nodes"]
    assert nodes[0]["id"] == "node-a" and nodes[0]["run_hours"] == 2.0
    assert nodes[0]["selftests"][0]["ok"] is True


def test_broker_credentials_unavailable_without_admin_config(client: Any, alice: Any) -> None:
    r = client.post("/api/v1/me/broker-credentials", headers=alice.headers)
    assert r.status_code == 503 and r.get_json()["error"] == "unavailable"


def test_list_parameters_are_validated(client: Any, alice: Any) -> None:
    for q in ("state=bogus", "limit=0", "limit=x", "offset=-1"):
        assert client.get(f"/api/v1/jobs?{q}", headers=alice.headers).status_code == 400, q
    assert client.get("/api/v1/jobs?state=queued&limit=5",
                      headers=alice.headers).status_code == 200
