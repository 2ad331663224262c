"""A job's event timeline and live facts (API and page), and job-id prefixes anywhere a job id is
taken (issue 14, item 9: "Started —" and "Attempts 0" while running, no event timeline)."""

from __future__ import annotations

from typing import Any

from dashboard_helpers import QUEUE_LIMITS, login, run_job_to_end
from dispatcher import queue
from dispatcher.models import Job, database

GIT = {"url": "https://example.org/me/ctrl.git", "ref": "main", "time_limit_s": 30}


def submit(client: Any, user: Any) -> str:
    r = client.post("/api/v1/jobs", json=GIT, headers=user.headers)
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


def events(client: Any, user: Any, job_id: str) -> dict:
    r = client.get(f"/api/v1/jobs/{job_id}/events", headers=user.headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def test_timeline_has_each_step_and_each_requeue_with_its_reason(app: Any, client: Any,
                                                                  alice: Any, tmp_path) -> None:
    job_id = submit(client, alice)
    with database.connection_context():
        queue.assign(job_id, "node-a", limits=QUEUE_LIMITS)
        queue.start(job_id, 1, limits=QUEUE_LIMITS)
        queue.error_and_requeue(job_id, 1, "node-a lost its broker")
    with database.connection_context():
        queue.assign(job_id, "node-b", limits=QUEUE_LIMITS)
        queue.start(job_id, 2, limits=QUEUE_LIMITS)
    running = events(client, alice, job_id)
    facts = running["facts"]
    assert running["state"] == "running"
    assert facts["attempt"] == 2 and facts["node_id"] == "node-b" and facts["started_at"]
    assert facts["time_limit_s"] == 30 and 0 <= facts["elapsed_s"] < 30
    kinds = [(e["kind"], e["execution"]) for e in running["events"]]
    assert kinds == [("queued", None), ("assigned", 1), ("started", 1), ("requeued", 1),
                     ("assigned", 2), ("started", 2)]
    requeue = running["events"][3]
    assert requeue["reason"] == "node-a lost its broker" and requeue["state"] == "queued"
    assert running["events"][4]["reason"] == "assigned to node-b"
    login(client, alice)
    page = client.get(f"/jobs/{job_id}")
    html = page.get_data(as_text=True)
    assert 'id="job-attempts">2<' in html and "node-a lost its broker" in html
    assert 'id="timeline-list"' in html and "job_facts.js" in html
    assert "Elapsed / limit" in html and " / 30 s" in html


def test_a_finished_jobs_timeline_ends_with_its_outcome(app: Any, client: Any, alice: Any,
                                                        dash_config, tmp_path) -> None:
    job_id = submit(client, alice)
    run_job_to_end(job_id, dash_config.store_url, tmp_path)
    data = events(client, alice, job_id)
    assert [e["kind"] for e in data["events"]] == ["queued", "assigned", "started", "finished"]
    assert data["events"][-1]["state"] == "succeeded"
    with database.connection_context():
        job = Job.get_by_id(job_id)
    assert data["facts"]["elapsed_s"] == round(job.finished_at - job.started_at, 1)


def test_other_users_get_403_and_unknown_ids_404(client: Any, alice: Any, bob: Any) -> None:
    job_id = submit(client, alice)
    assert client.get(f"/api/v1/jobs/{job_id}/events", headers=bob.headers).status_code == 403
    r = client.get("/api/v1/jobs/nosuchjob/events", headers=alice.headers)
    assert r.status_code == 404 and r.get_json()["error"] == "not_found"
    r = client.get("/api/v1/jobs/%2e%2e/events", headers=alice.headers)
    assert r.status_code == 404


def test_a_unique_prefix_names_a_job_and_an_ambiguous_one_lists_candidates(
        app: Any, client: Any, alice: Any, bob: Any) -> None:
    with database.connection_context():
        for jid in ("abcd1111", "abcd2222", "abce3333"):
            Job.create(id=jid, owner="alice", source_kind="git", source_url=GIT["url"])
    r = client.get("/api/v1/jobs/abce", headers=alice.headers)
    assert r.status_code == 200 and r.get_json()["id"] == "abce3333"
    assert client.get("/api/v1/jobs/abce/events", headers=alice.headers).get_json()[
        "job_id"] == "abce3333"
    r = client.post("/api/v1/jobs/abce/cancel", headers=alice.headers)
    assert r.status_code == 202 and r.get_json()["id"] == "abce3333"
    r = client.get("/api/v1/jobs/abcd", headers=alice.headers)
    assert r.status_code == 400
    reason = r.get_json()["reason"]
    assert "ambiguous" in reason and "abcd1111" in reason and "abcd2222" in reason
    assert client.get("/api/v1/jobs/abc", headers=alice.headers).status_code == 404  # too short
    assert client.get("/api/v1/jobs/abce", headers=bob.headers).status_code == 404  # not bob's
    login(client, alice)
    page = client.get("/jobs/abce")
    assert page.status_code == 302 and page.headers["Location"].endswith("/jobs/abce3333")
