"""Run metadata (name, tags, notes, args, env) through the API and the form, and the runs table:
server-side sort, filter, search and pagination on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from typing import Any

import pytest

from dashboard_helpers import (QUEUE_LIMITS, csrf_from, figures, login, make_run, make_user,
                               tgz)
from dispatcher import queue
from dispatcher.models import Job, JobTag, database
from gym_raas_mqtt.protocol import JobState

GIT = {"url": "https://example.org/me/ctrl.git", "ref": "main"}


@pytest.fixture
def table(app: Any, alice: Any, bob: Any) -> dict[str, str]:
    """Six of alice's runs (four finished with figures, one queued, one failed early) and one
    of bob's."""
    ids = {
        "a": make_run("alice", "swingup-v1", ("lqr",), "first try", figures(-300.5, 1.2, 400, 2,
                                                                           20.0, 3), t=1000),
        "b": make_run("alice", "swingup-v2", ("lqr", "energy"), "Gain 1.5",
                      figures(-120.0, 6.5, 600, 1, 30.0, 0), node="node-b", t=1010),
        "c": make_run("alice", "swingup-v3", ("energy",), None,
                      figures(-80.25, 9.0, 500, 3, 25.0, 1), t=1020),
        "d": make_run("alice", "pd-hold", (), "SWING notes", figures(-90.0, 2.0, 100, 1, 5.0, 0),
                      node="node-b", t=1030),
        "q": make_run("alice", "queued-one", ("lqr",), t=1040),
        "f": make_run("alice", None, (), None, {"per_episode": []}, state=JobState.FAILED,
                      t=1050),
        "bob": make_run("bob", "bobs-run", ("lqr",), None, figures(-1.0, 20.0, 999), t=1060),
    }
    return ids


def ids_of(client: Any, user: Any, query: str) -> list[str]:
    r = client.get("/api/v1/jobs?" + query, headers=user.headers)
    assert r.status_code == 200, r.get_json()
    return [j["id"] for j in r.get_json()["jobs"]]


def test_summary_figures_are_columns_written_with_the_summary(table: dict[str, str]) -> None:
    with database.connection_context():
        b = Job.get_by_id(table["b"])
        f = Job.get_by_id(table["f"])
        q = Job.get_by_id(table["q"])
        tags = sorted(t.tag for t in JobTag.select().where(JobTag.job == table["b"]))
    assert (b.total_return, b.seconds_upright, b.steps, b.episodes, b.duration_s,
            b.deadline_misses) == (-120.0, 6.5, 600, 1, 30.0, 0)
    assert (b.name, b.tags, b.notes) == ("swingup-v2", ["lqr", "energy"], "Gain 1.5")
    assert tags == ["energy", "lqr"]
    assert f.total_return is None and f.steps is None  # no figures in that summary
    assert q.total_return is None and q.summary is None


@pytest.mark.parametrize("sort,expected", [
    ("-return", ["c", "d", "b", "a", ("q", "f")]),  # no figures: last, either way
    ("return", ["a", "b", "d", "c", ("q", "f")]),
    ("-seconds_upright", ["c", "b", "d", "a", ("q", "f")]),
    ("steps", ["d", "a", "c", "b", ("q", "f")]),
    ("-episodes", ["c", "a", ("b", "d"), ("q", "f")]),  # a tie: the job id decides, same way
    ("episodes", [("b", "d"), "a", "c", ("q", "f")]),
    ("duration_s", ["d", "a", "c", "b", ("q", "f")]),
    ("-deadline_misses", ["a", "c", ("b", "d"), ("q", "f")]),
    ("-submitted", ["f", "q", "d", "c", "b", "a"]),
    ("name", ["d", "q", "a", "b", "c", "f"]),
])
def test_sort_by_every_figure_both_ways(client: Any, alice: Any, table: dict[str, str],
                                        sort: str, expected: list) -> None:
    want: list[str] = []
    for item in expected:
        tie = [table[k] for k in item] if isinstance(item, tuple) else [table[item]]
        want += sorted(tie, reverse=sort.startswith("-"))
    assert ids_of(client, alice, f"sort={sort}") == want


def test_filters_search_and_visibility(client: Any, alice: Any, bob: Any, admin: Any,
                                       table: dict[str, str]) -> None:
    t = table
    assert set(ids_of(client, alice, "tag=lqr")) == {t["a"], t["b"], t["q"]}
    assert set(ids_of(client, alice, "tag=energy&node=node-b")) == {t["b"]}
    assert set(ids_of(client, alice, "state=queued")) == {t["q"]}
    assert set(ids_of(client, alice, "node=node-b")) == {t["b"], t["d"]}
    assert set(ids_of(client, alice, "q=SWINGUP")) == {t["a"], t["b"], t["c"]}  # any case
    assert set(ids_of(client, alice, "q=swing")) == {t["a"], t["b"], t["c"], t["d"]}  # + notes
    assert ids_of(client, alice, "q=" + t["f"][:6]) == [t["f"]]  # a job id prefix
    assert ids_of(client, alice, "q=50%25") == []  # LIKE wildcards are literal
    assert table["bob"] not in ids_of(client, alice, "tag=lqr")
    assert set(ids_of(client, admin, "tag=lqr")) == {t["a"], t["b"], t["q"], t["bob"]}
    assert ids_of(client, admin, "owner=bob") == [t["bob"]]
    assert ids_of(client, bob, "owner=bob") == [t["bob"]]
    r = client.get("/api/v1/jobs?owner=alice", headers=bob.headers)
    assert r.status_code == 403 and r.get_json()["error"] == "forbidden"


def test_pages_cover_every_job_once(client: Any, alice: Any, table: dict[str, str]) -> None:
    seen, page = [], 1
    while True:
        r = client.get(f"/api/v1/jobs?sort=-return&per_page=4&page={page}",
                       headers=alice.headers).get_json()
        assert (r["total"], r["pages"], r["page"], r["per_page"]) == (6, 2, page, 4)
        seen += [j["id"] for j in r["jobs"]]
        if page == r["pages"]:
            break
        page += 1
    assert seen == ids_of(client, alice, "sort=-return") and len(set(seen)) == 6
    assert ids_of(client, alice, "sort=-return&per_page=4&page=9") == []
    # the older limit/offset form still works
    assert ids_of(client, alice, "sort=-return&limit=2&offset=4") == seen[4:]


@pytest.mark.parametrize("query,reason", [
    ("sort=-colour", "sort must be one of"), ("sort=reward;drop", "sort must be one of"),
    ("state=done", "state must be one of"), ("tag=a%20b", "tag must be"),
    ("per_page=0", "per_page must be between"), ("per_page=x", "per_page must be an integer"),
    ("page=0", "page must be between"), ("q=" + "x" * 101, "q is longer than"),
])
def test_bad_queries_are_400_with_a_reason(client: Any, alice: Any, query: str,
                                           reason: str) -> None:
    r = client.get("/api/v1/jobs?" + query, headers=alice.headers)
    assert r.status_code == 400 and r.get_json()["error"] == "invalid"
    assert reason in r.get_json()["reason"]


def test_submit_with_metadata_json_and_multipart(client: Any, alice: Any) -> None:
    body = GIT | {"name": "swingup-v3", "tags": ["lqr", "x", "lqr"], "notes": "try\nagain",
                  "args": ["600", "--gain=1.5"], "env": {"GAIN": "1.5"}}
    r = client.post("/api/v1/jobs", json=body, headers=alice.headers)
    assert r.status_code == 201, r.get_json()
    job = r.get_json()
    assert (job["name"], job["tags"], job["notes"], job["args"], job["env"]) == (
        "swingup-v3", ["lqr", "x"], "try\nagain", ["600", "--gain=1.5"], {"GAIN": "1.5"})
    with database.connection_context():
        a = queue.assignment(queue.get_job(job["id"]),
                             queue.assign(job["id"], "node-a", limits=QUEUE_LIMITS))
    assert (a.name, a.tags, a.args, a.env) == ("swingup-v3", ("lqr", "x"), ("600", "--gain=1.5"),
                                               {"GAIN": "1.5"})
    data = tgz({"run.py": b"print('hi')\n"})
    r = client.post("/api/v1/jobs", headers=alice.headers, content_type="multipart/form-data",
                    data={"archive": (io.BytesIO(data), "c.tar.gz"), "name": "up-1",
                          "tags": "a, b", "args": "600 'two words'", "env": "A=1\nB=x=y\n"})
    assert r.status_code == 201, r.get_json()
    job = r.get_json()
    assert (job["name"], job["tags"], job["args"], job["env"]) == (
        "up-1", ["a", "b"], ["600", "two words"], {"A": "1", "B": "x=y"})
    shown = client.get(f"/api/v1/jobs/{job['id']}", headers=alice.headers).get_json()
    assert shown["name"] == "up-1" and shown["return"] is None


@pytest.mark.parametrize("changes,field,reason", [
    ({"name": "no spaces please"}, "name", "name must be"),
    ({"name": "x" * 65}, "name", "name must be"),
    ({"tags": ["ok", "bad tag"]}, "tags", "tag 'bad tag' is invalid"),
    ({"tags": [f"t{i}" for i in range(9)]}, "tags", "at most 8 tags"),
    ({"tags": "lqr"}, "tags", "list of strings"),
    ({"notes": "x" * 4001}, "notes", "longer than 4000"),
    ({"notes": "bell\x07"}, "notes", "control characters"),
    ({"args": "600"}, "args", "list of strings"),
    ({"args": [str(i) for i in range(33)]}, "args", "at most 32 arguments"),
    ({"args": ["x" * 257]}, "args", "longer than 256"),
    ({"args": ["a\x00b"]}, "args", "control characters"),
    ({"env": {"RAAS_MQTT_PASSWORD": "x"}}, "env", "reserved by the platform"),
    ({"env": {"LD_PRELOAD": "/tmp/x.so"}}, "env", "reserved by the platform"),
    ({"env": {"PYTHONPATH": "/job"}}, "env", "reserved by the platform"),
    ({"env": {"PATH": "/tmp"}}, "env", "reserved by the platform"),
    ({"env": {"lower": "x"}}, "env", "upper-case"),
    ({"env": {"1X": "x"}}, "env", "upper-case"),
    ({"env": {"K": 1}}, "env", "string values"),
    ({"env": ["K=V"]}, "env", "object of string names"),
    ({"env": {"K": "x" * 1025}}, "env", "at most 1024"),
    ({"env": {f"K{i}": "v" for i in range(33)}}, "env", "at most 32 environment"),
])
def test_invalid_metadata_is_400_naming_the_field(client: Any, alice: Any, changes: dict,
                                                  field: str, reason: str) -> None:
    r = client.post("/api/v1/jobs", json=GIT | changes, headers=alice.headers)
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["error"] == "invalid" and r.get_json()["field"] == field
    assert reason in r.get_json()["reason"]
    with database.connection_context():
        assert Job.select().count() == 0


def test_bad_multipart_metadata_is_400(client: Any, alice: Any) -> None:
    data = tgz({"run.py": b"print('hi')\n"})
    for fields, field in (({"args": "'unbalanced"}, "args"), ({"env": "NOEQUALS"}, "env")):
        r = client.post("/api/v1/jobs", headers=alice.headers,
                        content_type="multipart/form-data",
                        data={"archive": (io.BytesIO(data), "c.tar.gz")} | fields)
        assert r.status_code == 400 and r.get_json()["field"] == field, r.get_json()


def test_form_submission_and_job_page_show_the_metadata(app: Any, client: Any) -> None:
    user = make_user(app, "carol")
    login(client, user)
    token = csrf_from(client.get("/submit").get_data(as_text=True))
    form = {"csrf_token": token, "mode": "git", "url": GIT["url"], "ref": "", "name": "form-run",
            "tags": "lqr energy", "args": "600 --x='a b'", "env": "GAIN=2\n", "notes": "hello"}
    bad = client.post("/submit", data=form | {"env": "PATH=/tmp"})
    assert bad.status_code == 400 and "reserved by the platform" in bad.get_data(as_text=True)
    r = client.post("/submit", data=form)
    assert r.status_code == 302, r.get_data(as_text=True)[:400]
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert 'id="job-name">form-run<' in page and "python run.py 600 &#39;--x=a b&#39;" in page
    assert ">lqr</a>" in page and "GAIN=2" in page and "hello" in page
    jobs_page = client.get("/jobs?tag=lqr&sort=-return").get_data(as_text=True)
    assert "form-run" in jobs_page and 'aria-sort="descending"' in jobs_page
    assert client.get("/jobs?sort=bogus").status_code == 400
