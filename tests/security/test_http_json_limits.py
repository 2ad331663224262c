"""Deeply nested and oversized JSON bodies against the real dashboard (waitress, SQLite)
(issue 10, item 5).

Finding covered: "HTTP 500 on deeply nested JSON (RecursionError)". Before the change a body of
100 000 nested arrays at POST /api/v1/tokens or /api/v1/jobs was answered 500.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from dashboard.app import create_app
from dashboard.config import DashboardConfig
from dashboard.openapi import document
from dashboard.server import BackgroundServer
from gym_raas_mqtt.config import load
from tests.dashboard.dashboard_helpers import make_config, make_user

DEPTH = 100_000
NESTED = {"array": b"[" * DEPTH + b"]" * DEPTH,
          "object": b'{"a":' * DEPTH + b"1" + b"}" * DEPTH}
OPERATIONS = [("/api/v1" + path.replace("{job_id}", "0123456789abcdef")
               .replace("{token_id}", "1").replace("{name}", "summary.json"), method.upper())
              for path, item in document()["paths"].items() for method in item]


def serve(tmp_path: Path, **changes: Any) -> BackgroundServer:
    """The dashboard on a fresh SQLite database, served by waitress (not yet started)."""
    cfg = make_config(tmp_path, threads=8, sse_max_streams=2, **changes)
    server = BackgroundServer(create_app({"TESTING": True, "RAAS_CONFIG": cfg}), threads=8)
    server.alice = make_user(server.app, "alice")
    return server


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Any]:
    with serve(tmp_path) as server:
        yield server


@pytest.mark.parametrize("shape", sorted(NESTED))
def test_deep_json_is_400_at_every_endpoint(served: Any, shape: str) -> None:
    """100 000 nested arrays or objects, to every API operation (with a valid token) and to the
    pages that take a POST: a clear 400, never a 500."""
    headers = dict(served.alice.headers) | {"Content-Type": "application/json"}
    for path, method in OPERATIONS + [("/login", "POST"), ("/stream", "GET")]:
        r = requests.request(method, served.url + path, data=NESTED[shape], headers=headers,
                             timeout=30)
        assert r.status_code == 400, (method, path, r.status_code, r.text[:200])
        if path.startswith(("/api/", "/stream")):
            assert r.json() == {"error": "bad_request", "reason": "the JSON body is nested "
                                "deeper than 32 levels of arrays and objects"}, (method, path)
        else:
            assert "nested deeper than 32" in r.text


def test_nesting_up_to_the_limit_is_parsed(served: Any) -> None:
    """32 levels reach the view (which then says what is wrong with the fields); 33 do not."""
    def token_request(depth: int) -> requests.Response:
        name = "[" * (depth - 1) + "]" * (depth - 1)
        body = b'{"username": "alice", "password": "x", "name": ' + name.encode() + b"}"
        return requests.post(served.url + "/api/v1/tokens", data=body, timeout=10,
                             headers={"Content-Type": "application/json"})

    r = token_request(32)
    assert r.status_code == 400 and r.json()["error"] == "invalid" and "name" in r.json()["reason"]
    r = token_request(33)
    assert r.status_code == 400 and r.json()["error"] == "bad_request"
    # brackets inside strings are text, not nesting
    r = requests.post(served.url + "/api/v1/tokens", timeout=10, json={
        "username": "alice", "password": "[" * 1000, "name": "{" * 60})
    assert r.status_code == 401


def test_oversized_json_is_413(tmp_path: Path) -> None:
    with serve(tmp_path, max_json_bytes=4096) as server:
        r = requests.post(server.url + "/api/v1/tokens", timeout=10, json={
            "username": "alice", "password": "x" * 5000})
    assert r.status_code == 413
    assert r.json()["reason"] == "JSON bodies are limited to 4096 bytes"


def test_a_recursion_error_while_parsing_is_400(tmp_path: Path) -> None:
    """Behind the depth check (turned off here): the parser's own RecursionError is a 400."""
    with serve(tmp_path, max_json_depth=10 * DEPTH) as server:
        r = requests.post(server.url + "/api/v1/tokens", data=NESTED["array"], timeout=30,
                          headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json() == {"error": "bad_request", "reason": "the request is nested too deeply"}


def test_the_limits_are_settings() -> None:
    cfg = load(DashboardConfig, environ={"RAAS_MAX_JSON_DEPTH": "8", "RAAS_MAX_JSON_BYTES": "99"})
    assert (cfg.max_json_depth, cfg.max_json_bytes) == (8, 99)
    assert (DashboardConfig().max_json_depth, DashboardConfig().max_json_bytes) == (32, 1 << 20)
