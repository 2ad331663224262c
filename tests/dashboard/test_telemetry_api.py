"""``GET /api/v1/jobs/{id}/telemetry``: who may read it, what it answers before a bundle exists,
min/max decimation that keeps spikes, and refused parameters (SQLite and PostgreSQL)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dashboard.telemetry import decimate_minmax
from dashboard_helpers import login, run_job_to_end
from gym_raas_mqtt.results import UPRIGHT_RAD

GIT = {"url": "https://example.org/me/ctrl.git", "ref": "main", "time_limit_s": 30}
HEADER = "episode_id,seq,t,theta,theta_dot,u_desired,u_applied,reward,deadline_miss"
EPISODE_ROWS = 5000
DT = 0.05
SPIKES = {1234: ("theta_dot", 99.0), 7777: ("theta_dot", -77.0), 4321: ("reward", -500.0)}
MISSES = (10, 6000)


def submit(client: Any, user: Any) -> str:
    r = client.post("/api/v1/jobs", json=GIT, headers=user.headers)
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


def telemetry_url(job: str, **params: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/api/v1/jobs/{job}/telemetry" + (f"?{query}" if query else "")


def write_long_telemetry(path: Path) -> None:
    """Two episodes of 5000 steps at 20 Hz: a slow swing (θ unwrapped past 2π), three one-sample
    spikes and two deadline misses."""
    rows = [HEADER]
    for i in range(2 * EPISODE_ROWS):
        episode, seq = divmod(i, EPISODE_ROWS)
        theta = 0.002 * seq + 2 * math.pi * episode
        values = {"theta_dot": math.sin(seq / 50), "reward": -theta % 1.0}
        if i in SPIKES:
            name, value = SPIKES[i]
            values[name] = value
        rows.append(f"{episode + 1},{seq},{seq * DT:.2f},{theta!r},{values['theta_dot']!r},0.5,"
                    f"0.4,{values['reward']!r},{int(i in MISSES)}")
    path.write_text("\n".join(rows) + "\n")


def test_owner_and_admin_read_it_others_and_anonymous_do_not(app: Any, client: Any, alice: Any,
                                                          bob: Any, admin: Any, dash_config: Any,
                                                          tmp_path: Path) -> None:
    job = submit(client, alice)
    run_job_to_end(job, dash_config.store_url, tmp_path)
    assert client.get(telemetry_url(job)).status_code == 401
    r = client.get(telemetry_url(job), headers=bob.headers)
    assert r.status_code == 403 and r.get_json()["error"] == "forbidden"
    for user in (alice, admin):
        r = client.get(telemetry_url(job), headers=user.headers)
        assert r.status_code == 200 and r.get_json()["job_id"] == job
    r = client.get(telemetry_url("0123456789abcdef"), headers=alice.headers)
    assert r.status_code == 404 and "no job" in r.get_json()["reason"]
    assert client.get(telemetry_url("..%2Fx"), headers=alice.headers).status_code == 404
    login(client, alice)  # the page's script reads it with the session
    assert client.get(telemetry_url(job)).status_code == 200


def test_a_small_record_comes_back_whole_on_one_time_axis(client: Any, alice: Any,
                                                         dash_config: Any, tmp_path: Path) -> None:
    job = submit(client, alice)
    run_job_to_end(job, dash_config.store_url, tmp_path)
    d = client.get(telemetry_url(job), headers=alice.headers).get_json()
    assert d["samples"] == d["points"] == 60 and d["decimated"] is False
    cols = d["columns"]
    assert list(cols) == ["t", "theta", "theta_dot", "u_desired", "u_applied", "reward"]
    assert cols["t"][:3] == [0.0, 0.05, 0.1] and cols["t"][-1] == pytest.approx(59 * DT)
    assert cols["theta"][0] == pytest.approx(-math.pi, abs=1e-4)  # π wrapped to [-π, π)
    assert cols["theta"][1] == pytest.approx(math.pi * (1 - 1 / 60), abs=1e-4)
    assert cols["reward"][1] == pytest.approx(-(math.pi * (1 - 1 / 60)) ** 2, abs=1e-3)
    assert d["episode_starts"] == [0.0] and d["deadline_misses"] == []
    assert d["upright_rad"] == UPRIGHT_RAD
    d = client.get(telemetry_url(job, columns="t,theta"), headers=alice.headers).get_json()
    assert list(d["columns"]) == ["t", "theta"]


def test_decimation_keeps_every_spike_and_marker(client: Any, alice: Any, dash_config: Any,
                                                 tmp_path: Path) -> None:
    job = submit(client, alice)
    tel = tmp_path / "long.csv"
    write_long_telemetry(tel)
    run_job_to_end(job, dash_config.store_url, tmp_path, telemetry=tel)
    d = client.get(telemetry_url(job, max_points=200), headers=alice.headers).get_json()
    assert d["samples"] == 2 * EPISODE_ROWS and d["decimated"] is True
    assert d["points"] == 200
    cols = d["columns"]
    assert all(len(v) == d["points"] for v in cols.values())
    t = np.asarray(cols["t"])
    assert np.all(np.diff(t) > 0) and t[0] == 0.0
    end = (2 * EPISODE_ROWS - 1) * DT  # episode 2 starts one period after episode 1's last sample
    assert t[-1] == pytest.approx(end)
    assert max(cols["theta_dot"]) == 99.0 and min(cols["theta_dot"]) == -77.0
    assert min(cols["reward"]) == -500.0
    assert max(cols["u_applied"]) == min(cols["u_applied"]) == 0.4
    assert all(-math.pi <= v < math.pi for v in cols["theta"])
    assert d["episode_starts"] == [0.0, pytest.approx(EPISODE_ROWS * DT)]
    assert d["deadline_misses"] == [pytest.approx(10 * DT), pytest.approx(6000 * DT)]
    assert d["deadline_miss_count"] == 2
    # each spike keeps (nearly) its time: within one bucket of where it happened
    bucket_s = end / (200 // 2)
    spike_t = t[int(np.argmax(cols["theta_dot"]))]
    assert abs(spike_t - 1234 * DT) <= bucket_s
    full = client.get(telemetry_url(job, max_points=50000), headers=alice.headers).get_json()
    assert full["points"] == 2 * EPISODE_ROWS and not full["decimated"]


def test_decimate_minmax_keeps_the_order_of_each_buckets_extremes() -> None:
    x = np.arange(7) * 0.1
    out_x, cols = decimate_minmax(x, {"a": np.array([1, 5, 2, -3, 0, 0, 9.0]),
                                      "b": np.array([3, 2, 1, 0, 1, 2, 3.0])}, 4)
    assert out_x.tolist() == pytest.approx([0.0, 0.2, 0.3, 0.6])
    assert cols["a"].tolist() == [1, 5, -3, 9]  # bucket [1 5 2], bucket [-3 0 0 9]
    assert cols["b"].tolist() == [3, 1, 0, 3]  # max first in bucket 1: the order survives
    same_x, same = decimate_minmax(x, {"a": np.ones(7)}, 8)
    assert same_x is x and same["a"].tolist() == [1.0] * 7


def test_before_a_bundle_exists_and_without_telemetry(app: Any, client: Any, alice: Any,
                                                      dash_config: Any, tmp_path: Path) -> None:
    job = submit(client, alice)
    r = client.get(telemetry_url(job), headers=alice.headers)
    assert r.status_code == 409 and r.get_json()["error"] == "conflict"
    assert "queued" in r.get_json()["reason"] and "once it ended" in r.get_json()["reason"]
    assert client.post(f"/api/v1/jobs/{job}/cancel", headers=alice.headers).status_code == 202
    r = client.get(telemetry_url(job), headers=alice.headers)
    assert r.status_code == 404 and "without recorded telemetry" in r.get_json()["reason"]
    broken = submit(client, alice)
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "\n1,0,0.0,not-a-number,0,0,0,0,0\n")
    run_job_to_end(broken, dash_config.store_url, tmp_path, telemetry=bad)
    r = client.get(telemetry_url(broken), headers=alice.headers)
    assert r.status_code == 422 and "malformed" in r.get_json()["reason"]
    assert "Traceback" not in r.get_data(as_text=True)


@pytest.mark.parametrize("params,words", [
    ({"columns": "bogus"}, "unknown column"), ({"columns": ""}, "at least one"),
    ({"columns": "t"}, "at least one"), ({"columns": "theta,theta"}, "twice"),
    ({"columns": "theta,%3Cscript%3E"}, "unknown column"),
    ({"max_points": "many"}, "integer"), ({"max_points": "0"}, "between"),
    ({"max_points": "15"}, "between"), ({"max_points": str(10**12)}, "between"),
    ({"max_points": "-4"}, "between"),
])
def test_bad_parameters_get_400_with_a_reason(client: Any, alice: Any, dash_config: Any,
                                              tmp_path: Path, params: dict,
                                              words: str) -> None:
    job = submit(client, alice)
    run_job_to_end(job, dash_config.store_url, tmp_path)
    r = client.get(telemetry_url(job, **params), headers=alice.headers)
    assert r.status_code == 400 and r.get_json()["error"] == "invalid"
    assert words in r.get_json()["reason"]
