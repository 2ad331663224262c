"""API tokens expire and their owner can list and revoke them — through the API, the `raas`
command and the account page — against the real dashboard (waitress, SQLite) (issue 10, item 5).

Finding covered: "tokens never expire and cannot be revoked by the user". Before the change a
token had no expiry, GET/DELETE /api/v1/tokens and `raas tokens` did not exist, and the account
page deleted rows (so a revoked token was merely "unknown").
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from dashboard import accounts
from dashboard.app import create_app
from dashboard.server import BackgroundServer
from dispatcher.models import ApiToken, database, init_db
from tests.dashboard.dashboard_helpers import PASSWORD, make_config, make_user
from tests.gym_raas_mqtt.test_cli_client import raas

DAY_S = 86400
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The dashboard (default token lifetime: 90 days) with users alice and bob; the `raas`
    command's config file in the test's folder."""
    for var in ("RAAS_API_URL", "RAAS_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RAAS_CLIENT_CONFIG", str(tmp_path / "home" / "config.toml"))
    cfg = make_config(tmp_path, threads=8, sse_max_streams=2)
    app = create_app({"TESTING": True, "RAAS_CONFIG": cfg})
    with BackgroundServer(app, threads=8) as server:
        server.alice, server.bob = make_user(app, "alice"), make_user(app, "bob")
        server.tmp = tmp_path
        yield server


def call(server: Any, method: str, path: str, token: str | None = None,
         **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, server.url + path, headers=headers, timeout=10, **kw)


def new_token(server: Any, name: str = "laptop") -> dict:
    r = call(server, "POST", "/api/v1/tokens",
             json={"username": "alice", "password": PASSWORD, "name": name})
    assert r.status_code == 201
    return r.json()


def expire(token_id: int) -> None:
    """Move a token's expiry into the past (as if its 90 days had gone by)."""
    with database.connection_context():
        ApiToken.update(expires_at=time.time() - 1).where(ApiToken.id == token_id).execute()


def test_new_tokens_expire_after_the_configured_lifetime(served: Any) -> None:
    before = time.time()
    answer = new_token(served)
    assert before + 90 * DAY_S <= answer["expires_at"] <= time.time() + 90 * DAY_S
    assert call(served, "GET", "/api/v1/me", answer["token"]).status_code == 200
    expire(answer["id"])
    r = call(served, "GET", "/api/v1/me", answer["token"])
    assert r.status_code == 401 and "has expired" in r.json()["reason"]
    assert call(served, "GET", "/stream?fleet=1", answer["token"]).status_code == 401


def test_the_lifetime_is_a_setting(tmp_path: Path) -> None:
    app = create_app({"TESTING": True, "RAAS_CONFIG": make_config(tmp_path,
                                                                  token_lifetime_s=3600)})
    alice = make_user(app, "alice")
    with database.connection_context():
        row = ApiToken.get()
    assert row.expires_at == pytest.approx(row.created_at + 3600)
    assert app.test_client().get("/api/v1/me", headers=alice.headers).status_code == 200


def test_list_and_revoke_through_the_api(served: Any) -> None:
    laptop = new_token(served, "laptop")
    r = call(served, "GET", "/api/v1/tokens", served.alice.token)
    tokens = {t["name"]: t for t in r.json()["tokens"]}
    assert set(tokens) == {"cli", "laptop"}  # alice's only, never a value or hash
    assert tokens["cli"]["current"] and not tokens["laptop"]["current"]
    assert tokens["laptop"]["state"] == "active" and "token" not in tokens["laptop"]
    assert tokens["cli"]["last_used_at"] is not None  # the request itself used it
    # bob neither sees nor revokes alice's tokens
    assert call(served, "DELETE", f"/api/v1/tokens/{laptop['id']}",
                served.bob.token).status_code == 404
    assert [t["name"] for t in call(served, "GET", "/api/v1/tokens",
                                    served.bob.token).json()["tokens"]] == ["cli"]
    assert call(served, "GET", "/api/v1/me", laptop["token"]).status_code == 200
    r = call(served, "DELETE", f"/api/v1/tokens/{laptop['id']}", served.alice.token)
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    r = call(served, "GET", "/api/v1/me", laptop["token"])
    assert r.status_code == 401 and "was revoked" in r.json()["reason"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert call(served, "DELETE", "/api/v1/tokens/999", served.alice.token).status_code == 404


def test_list_and_revoke_from_the_cli(served: Any, capsys: pytest.CaptureFixture) -> None:
    pw = served.tmp / "pw"
    pw.write_text(PASSWORD + "\n")
    code, out, _ = raas(capsys, "login", "--url", served.url, "--user", "alice",
                        "--password-file", str(pw))
    assert code == 0 and "logged in as alice" in out and "valid until" in out
    code, out, _ = raas(capsys, "tokens")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATE", "CREATED", "LAST", "USED", "EXPIRES"]
    mine = [line for line in lines[1:] if line.startswith("*")]
    assert len(mine) == 1 and " active " in mine[0]  # the token `raas login` stored
    other = next(line.split()[0] for line in lines[1:] if not line.startswith("*"))
    code, out, _ = raas(capsys, "tokens", "revoke", other)
    assert code == 0 and f"token {other} (cli): revoked" in out
    assert call(served, "GET", "/api/v1/me", served.alice.token).status_code == 401
    own = mine[0].split()[0].lstrip("*")
    code, out, _ = raas(capsys, "tokens", "revoke", own)
    assert code == 0 and "run `raas login` again" in out
    code, _, err = raas(capsys, "jobs")
    assert code == 1 and "HTTP 401" in err and "was revoked" in err


def test_list_and_revoke_on_the_account_page(served: Any) -> None:
    s = requests.Session()
    token = CSRF_RE.search(s.get(served.url + "/login").text).group(1)
    s.post(served.url + "/login", data={"username": "alice", "password": PASSWORD,
                                        "csrf_token": token})
    laptop = new_token(served, "laptop")
    page = s.get(served.url + "/account").text
    row = re.search(rf'<tr data-token-id="{laptop["id"]}">(.*?)</tr>', page, re.S).group(1)
    expires = time.strftime("%Y-%m-%d", time.gmtime(laptop["expires_at"]))
    assert "laptop" in row and "t-active" in row and expires in row and "revoke" in row
    r = s.post(served.url + f"/account/tokens/{laptop['id']}/revoke",
               data={"csrf_token": CSRF_RE.search(page).group(1)})
    assert r.status_code == 200 and f"Token {laptop['id']} revoked." in r.text
    row = re.search(rf'<tr data-token-id="{laptop["id"]}">(.*?)</tr>', r.text, re.S).group(1)
    assert "t-revoked" in row and "revoke</button>" not in row
    assert call(served, "GET", "/api/v1/me", laptop["token"]).status_code == 401
    # another user's token id: not found, and nothing changes
    r = s.post(served.url + "/account/tokens/2/revoke",
               data={"csrf_token": CSRF_RE.search(page).group(1)})
    assert r.status_code == 404
    assert call(served, "GET", "/api/v1/me", served.bob.token).status_code == 200


def test_tokens_of_an_older_database_are_refused_after_the_upgrade(db_url: str) -> None:
    """A database from before expiry gains the columns at start-up (SQLite and PostgreSQL); its
    tokens, which have no expiry, are refused."""
    db = init_db(db_url)
    with db.connection_context():
        for column in ("expires_at", "revoked_at"):
            db.execute_sql(f"ALTER TABLE apitoken DROP COLUMN {column}")
        accounts.create_user("alice", None)
        db.execute_sql("INSERT INTO apitoken (owner_id, token_hash, name, created_at) "
                       f"VALUES ('alice', '{accounts.hash_token('raas_old')}', 'cli', 0)")
    db.close()
    db = init_db(db_url)
    with db.connection_context():
        assert {"expires_at", "revoked_at"} <= {c.name for c in db.get_columns("apitoken")}
        with pytest.raises(accounts.TokenRefused, match="has expired"):
            accounts.check_token("raas_old")
    db.close()
