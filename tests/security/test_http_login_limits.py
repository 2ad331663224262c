"""Login throttling against the real dashboard (waitress) on a real database, SQLite and
PostgreSQL (issue 10, item 5).

Finding covered: "No brute-force protection: 50 wrong passwords at the login form and
POST /api/v1/tokens, no throttling". Before the change every attempt below was answered 401 (or
201 for a correct password), never 429.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from dashboard.app import create_app
from dashboard.server import BackgroundServer
from tests.conftest import ROOT, free_port, wait_port
from tests.dashboard.dashboard_helpers import PASSWORD, make_config, make_user

ATTEMPTS = 50
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def served(tmp_path: Path, db_url: str) -> Iterator[Any]:
    """The dashboard on ``db_url`` (default limits: 5/min and 20/h per account, 30/min per
    address), served by waitress; users alice and bob."""
    cfg = make_config(tmp_path, database_url=db_url, threads=8, sse_max_streams=2)
    app = create_app({"TESTING": True, "RAAS_CONFIG": cfg})
    with BackgroundServer(app, threads=cfg.threads) as server:
        server.alice, server.bob = make_user(app, "alice"), make_user(app, "bob")
        yield server


def form_login(session: requests.Session, url: str, name: str, password: str
               ) -> requests.Response:
    """One login through the form, with the CSRF token of a freshly loaded login page."""
    token = CSRF_RE.search(session.get(url + "/login").text).group(1)
    return session.post(url + "/login", data={"username": name, "password": password,
                                              "csrf_token": token}, allow_redirects=False)


def api_login(url: str, name: str, password: str, timeout_s: float = 10) -> requests.Response:
    """One token request (what `raas login` sends)."""
    return requests.post(url + "/api/v1/tokens", json={"username": name, "password": password},
                         timeout=timeout_s)


def assert_throttled(r: requests.Response, page: bool) -> None:
    """429 with Retry-After in whole seconds within the window, and the reason in the page or
    in the JSON error."""
    assert r.status_code == 429, (r.status_code, r.text[:200])
    assert 1 <= int(r.headers["Retry-After"]) <= 3600
    if page:
        assert r.headers["Content-Type"].startswith("text/html")
        assert "Too many" in r.text and 'id="login-form"' in r.text
    else:
        body = r.json()
        assert body["error"] == "too_many_requests" and "try again in" in body["reason"]


def test_fifty_wrong_passwords_at_the_form_are_throttled(served: Any) -> None:
    """Finding: 50 wrong passwords at the login form, no throttling."""
    s = requests.Session()
    codes = [form_login(s, served.url, "alice", f"guess-{i}").status_code
             for i in range(ATTEMPTS)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429] * (ATTEMPTS - 5)
    assert_throttled(form_login(s, served.url, "alice", f"guess-{ATTEMPTS}"), page=True)
    # the right password does not get through while the account is throttled...
    assert_throttled(form_login(s, served.url, "alice", PASSWORD), page=True)
    # ...and neither does another account's right password from the same address (50 > 30)
    r = form_login(requests.Session(), served.url, "bob", PASSWORD)
    assert_throttled(r, page=True)
    assert "from your address" in r.text


def test_fifty_wrong_passwords_at_the_token_api_are_throttled(served: Any) -> None:
    """Finding: 50 wrong passwords at POST /api/v1/tokens, no throttling."""
    answers = [api_login(served.url, "alice", f"guess-{i}") for i in range(ATTEMPTS)]
    assert [r.status_code for r in answers[:5]] == [401] * 5
    for r in answers[5:]:
        assert_throttled(r, page=False)
    assert_throttled(api_login(served.url, "alice", PASSWORD), page=False)
    r = api_login(served.url, "bob", PASSWORD)
    assert_throttled(r, page=False)
    assert "from your address" in r.json()["reason"]


def test_form_and_api_share_the_account_limit(served: Any) -> None:
    """Alternating between the form and the API gains an attacker nothing."""
    s = requests.Session()
    for i in range(5):
        r = (form_login(s, served.url, "alice", "wrong-password") if i % 2
             else api_login(served.url, "alice", "wrong-password"))
        assert r.status_code == 401
    assert_throttled(form_login(s, served.url, "alice", PASSWORD), page=True)
    assert api_login(served.url, "bob", PASSWORD).status_code == 201  # 7 attempts: under 30


def test_unknown_accounts_are_counted_and_answered_alike(served: Any) -> None:
    """No user enumeration: an unknown user name is throttled exactly like a real one, with the
    same answers."""
    real = [api_login(served.url, "alice", "wrong-password") for _ in range(7)]
    unknown = [api_login(served.url, "mallory", "wrong-password") for _ in range(7)]
    expected = [401] * 5 + [429] * 2
    assert [r.status_code for r in real] == [r.status_code for r in unknown] == expected

    def answers(rs: list[requests.Response]) -> list[str]:  # the seconds to wait may differ
        return [re.sub(r"\d+", "N", r.text) for r in rs]

    assert answers(real) == answers(unknown)


def test_many_user_names_from_one_address_hit_the_address_limit(served: Any) -> None:
    """Trying one password on many accounts: the address limit (30/min) stops it."""
    codes = [api_login(served.url, f"user{i}", "Winter2026!").status_code
             for i in range(ATTEMPTS)]
    assert codes == [401] * 30 + [429] * (ATTEMPTS - 30)


def test_the_address_limit_holds_across_waitress_threads(served: Any) -> None:
    """50 attempts at once on 8 server threads: exactly 30 get through (one atomic counter)."""
    codes: list[int] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        # 50 password checks queue on 8 threads: on a loaded 2-CPU machine the last wait > 10 s
        code = api_login(served.url, f"user{i}", "wrong-password", timeout_s=120).status_code
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(ATTEMPTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    assert sorted(codes) == [401] * 30 + [429] * (ATTEMPTS - 30)


@pytest.fixture
def two_dashboards(tmp_path: Path, db_url: str) -> Iterator[list[str]]:
    """Two `raas dashboard` processes on one database (users alice and bob made first)."""
    app = create_app({"TESTING": True, "RAAS_CONFIG": make_config(tmp_path, database_url=db_url)})
    make_user(app, "alice")
    make_user(app, "bob")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAAS_")}
    env.update({"RAAS_DATABASE_URL": db_url, "RAAS_STORE_URL": str(tmp_path / "store"),
                "RAAS_SECRET_KEY": "s" * 16 + "0123456789abcdefghij", "RAAS_SECURE_COOKIES": "0",
                "RAAS_CENTRAL_MQTT_URL": "", "RAAS_DASHBOARD_THREADS": "8",
                "RAAS_SSE_MAX_STREAMS": "2"})
    ports = [free_port(), free_port()]
    procs = []
    for port in ports:
        with open(tmp_path / f"{port}.log", "w") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "gym_raas_mqtt.cli", "dashboard", "--host", "127.0.0.1",
                 "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log))
    try:
        for port in ports:
            wait_port("127.0.0.1", port, timeout_s=30)
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


def test_limits_are_shared_by_two_dashboard_processes(two_dashboards: list[str]) -> None:
    """Two dashboard processes on one database count together, per account and per address."""
    a, b = two_dashboards
    codes = [api_login((a, b)[i % 2], "alice", "wrong-password").status_code for i in range(6)]
    assert codes == [401] * 5 + [429]  # five failures spread over both, the sixth refused
    assert_throttled(api_login(a, "alice", PASSWORD), page=False)
    # per address: attempts 8..30 (23 fresh user names) pass, the 31st is refused by either
    codes = [api_login((a, b)[i % 2], f"user{i}", "wrong-password").status_code
             for i in range(24)]
    assert codes == [401] * 23 + [429]
    assert_throttled(api_login(b, "bob", PASSWORD), page=False)
