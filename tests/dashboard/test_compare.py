"""The compare page through Flask's test client: who sees which runs, the metrics side by side,
and refused addresses (SQLite and PostgreSQL). The charts themselves: test_browser_charts.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dashboard_helpers import login, run_job_to_end

GIT = {"url": "https://example.org/me/ctrl.git", "ref": "main", "time_limit_s": 30}


def submit(client: Any, user: Any) -> str:
    r = client.post("/api/v1/jobs", json=GIT, headers=user.headers)
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


def metric(html: str, name: str) -> list[str]:
    row = re.search(rf'<tr data-metric="{name}">(.*?)</tr>', html, re.S)
    assert row, name
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>",
                                                                  row.group(1), re.S)]


def test_two_runs_side_by_side(client: Any, alice: Any, dash_config: Any,
                               tmp_path: Path) -> None:
    done, queued = submit(client, alice), submit(client, alice)
    run_job_to_end(done, dash_config.store_url, tmp_path)
    url = f"/compare?jobs={done},%20{queued},{done}"  # spaces and repeats are dropped
    r = client.get(url)
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    login(client, alice)
    r = client.get(url)
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert re.findall(r'<th data-job="([0-9a-f]+)"', html) == [done, queued]
    assert metric(html, "state") == ["succeeded", "queued"]
    assert metric(html, "steps") == ["60", "—"] and metric(html, "episodes") == ["1", "—"]
    assert metric(html, "duration_s") == ["3.0", "—"]
    assert metric(html, "node_id") == ["node-a", "—"]
    assert metric(html, "commit_sha")[0] == "c0ffeec0ffee"
    assert re.match(r"^-?\d+\.\d{3}$", metric(html, "return")[0])
    assert f'data-runs=\'["{done}", "{queued}"]\'' in html
    assert "uPlot.iife.min.js" in html and "compare.js" in html


def test_only_runs_the_viewer_may_see(client: Any, alice: Any, bob: Any, admin: Any) -> None:
    mine, theirs = submit(client, alice), submit(client, bob)
    login(client, alice)
    r = client.get(f"/compare?jobs={mine},{theirs}")
    assert r.status_code == 403 and theirs not in r.get_data(as_text=True).split("</header>")[1]
    assert client.get(f"/compare?jobs={mine},0123456789abcdef").status_code == 404
    login(client, admin)
    assert client.get(f"/compare?jobs={mine},{theirs}").status_code == 200


@pytest.mark.parametrize("query,status,words", [
    ("", 400, "name the runs"), ("jobs=", 400, "name the runs"),
    ("jobs=%s", 400, "at least two"), ("jobs=%s,,%s", 400, "at least two"),
    ("jobs=" + ",".join(f"{i:016x}" for i in range(9)), 400, "at most 8"),
    ("jobs=%s,../../etc", 404, "no job"), ("jobs=%s,%%3Cscript%%3E", 404, "no job"),
    ("jobs=%s," + "a" * 5000, 404, "no job"),
])
def test_refused_addresses_say_why(client: Any, alice: Any, query: str, status: int,
                                   words: str) -> None:
    job = submit(client, alice)
    login(client, alice)
    r = client.get("/compare?" + query.replace("%s", job).replace("%%", "%"))
    assert r.status_code == status and words in r.get_data(as_text=True)
    assert "<script>" not in r.get_data(as_text=True).split("</header>")[1]
