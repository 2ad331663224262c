"""Fleet keys through the API: ``GET /api/v1/fleet/keys`` serves what the dispatcher enrolled, a
signed bundle downloaded through the API verifies offline with them, and only admins reset a
node's key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dashboard_helpers import QUEUE_LIMITS, login, write_telemetry_csv
from dispatcher import nodes, queue
from dispatcher.models import database
from fleet_node.bundle import build_bundle, upload_bundle
from fleet_node.node_key import NodeKey
from fleet_node.sim_report import sim_vs_real_extra
from gym_raas_mqtt.bundle_signature import load_fleet_keys, verify_bundle
from gym_raas_mqtt.physics import DEFAULT_PARAMS
from gym_raas_mqtt.protocol import JobSource, JobState, SourceKind
from raas_platform.storage import open_store


def signed_job(app: Any, owner: str, node: str, key: NodeKey, tmp: Path,
               telemetry: Path | None = None) -> str:
    """A job of ``owner`` that ran on ``node``: its bundle (with ``telemetry``, default 60 rows
    of a fall) signed by ``key`` and uploaded."""
    cfg = app.extensions["raas_config"]
    with database.connection_context():
        job = queue.enqueue(owner, JobSource(SourceKind.GIT, url="https://example.org/c.git"),
                            limits=QUEUE_LIMITS).id
    tel = telemetry or tmp / "t.csv"
    if telemetry is None:
        write_telemetry_csv(tel)
    out = tmp / "bundle"
    summary = build_bundle(out, telemetry_path=tel, stdout_path=None, job_id=job, owner=owner,
                           node_id=node, state="succeeded", reason=None,
                           extras=[sim_vs_real_extra(DEFAULT_PARAMS)])
    key.sign_bundle(out, node)
    prefix = upload_bundle(open_store(cfg.store_url), job, out)
    with database.connection_context():
        queue.assign(job, node, limits=QUEUE_LIMITS)
        queue.start(job, 1, limits=QUEUE_LIMITS)
        queue.finish(job, 1, JobState.SUCCEEDED, {"result_key": prefix, "summary": summary})
    return job


def test_a_downloaded_bundle_verifies_with_the_served_keys(app: Any, client: Any, alice: Any,
                                                           tmp_path: Path) -> None:
    key = NodeKey.load_or_create(tmp_path / "node_key.pem")
    with database.connection_context():
        assert nodes.enroll_key("pi-s", key.public_key_b64, 5.0) == "enrolled"
    job = signed_job(app, alice.name, "pi-s", key, tmp_path)
    doc = client.get("/api/v1/fleet/keys", headers=alice.headers).get_json()
    assert doc["nodes"] == {"pi-s": {"public_key": key.public_key_b64, "enrolled_at": 5.0}}
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(doc))
    down = tmp_path / "down"
    down.mkdir()
    listing = client.get(f"/api/v1/jobs/{job}/results", headers=alice.headers).get_json()
    names = {f["name"] for f in listing["files"]}
    assert {"manifest.json", "manifest.sig", "sim_vs_real.json", "sim_vs_real.png",
            "calibration.toml"} <= names
    for name in names:
        r = client.get(f"/api/v1/jobs/{job}/results/{name}", headers=alice.headers)
        (down / name).write_bytes(r.data)
    manifest, problems = verify_bundle(down, load_fleet_keys(keys))
    assert problems == [] and manifest["summary"]["job_id"] == job
    assert client.get("/api/v1/fleet/keys").status_code == 401
    # the job page shows the report and its overlay
    login(client, alice)
    html = client.get(f"/jobs/{job}").get_data(as_text=True)
    assert 'id="sim-vs-real"' in html and "sim_vs_real.png" in html


def test_only_admins_reset_a_key(app: Any, client: Any, alice: Any, admin: Any) -> None:
    with database.connection_context():
        nodes.enroll_key("pi-t", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", 1.0)
    assert client.post("/api/v1/fleet/keys/pi-t/reset", headers=alice.headers).status_code == 403
    r = client.post("/api/v1/fleet/keys/pi-t/reset", headers=admin.headers)
    assert r.status_code == 200 and r.get_json() == {"node_id": "pi-t", "public_key": None}
    assert client.get("/api/v1/fleet/keys", headers=alice.headers).get_json()["nodes"] == {}
    for bad in ("nobody", "bad.id!", "x" * 200):
        assert client.post(f"/api/v1/fleet/keys/{bad}/reset",
                           headers=admin.headers).status_code == 404
