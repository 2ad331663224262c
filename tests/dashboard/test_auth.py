"""Accounts in the browser: login, CSRF on every form, cookie flags, the secret-key guard, and the
server-rendered pages (submit form validation, cancel button)."""

from __future__ import annotations

import io
from typing import Any

import pytest

from dashboard.app import create_app
from dashboard_helpers import csrf_from, login, make_config, make_user, tgz
from gym_raas_mqtt.errors import ConfigError


def test_pages_redirect_to_login(client: Any) -> None:
    for path in ("/jobs", "/submit", "/fleet", "/account", "/jobs/abc"):
        r = client.get(path)
        assert r.status_code == 302 and "/login?next=" in r.headers["Location"], path


def test_login_logout_and_cookie_flags(tmp_path: Any) -> None:
    app = create_app({"TESTING": True,
                      "RAAS_CONFIG": make_config(tmp_path, secure_cookies=True)})
    alice = make_user(app, "alice")
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    r = client.post("/login?next=/fleet", data={"username": "alice", "password": alice.password,
                                                "csrf_token": token})
    assert r.status_code == 302 and r.headers["Location"] == "/fleet"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    page = client.get("/jobs").get_data(as_text=True)
    assert "alice" in page
    client.post("/logout", data={"csrf_token": csrf_from(page)})
    assert client.get("/jobs").status_code == 302


def test_wrong_password_is_401_and_no_session(client: Any, alice: Any) -> None:
    token = csrf_from(client.get("/login").get_data(as_text=True))
    r = client.post("/login", data={"username": "alice", "password": "wrong-password",
                                    "csrf_token": token})
    assert r.status_code == 401 and "Wrong user name or password" in r.get_data(as_text=True)
    r = client.post("/login", data={"username": "nobody", "password": "x", "csrf_token": token})
    assert r.status_code == 401
    assert client.get("/jobs").status_code == 302


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil"])
def test_login_never_redirects_off_site(client: Any, alice: Any, target: str) -> None:
    token = csrf_from(client.get("/login").get_data(as_text=True))
    r = client.post(f"/login?next={target}", data={"username": "alice",
                                                  "password": alice.password, "csrf_token": token})
    assert r.headers["Location"] == "/jobs"


def test_forms_without_csrf_token_are_refused(client: Any, alice: Any) -> None:
    r = client.post("/login", data={"username": "alice", "password": alice.password})
    assert r.status_code == 400 and "CSRF" in r.get_data(as_text=True)
    login(client, alice)
    for path in ("/submit", "/logout", "/account/tokens", "/jobs/abc/cancel"):
        r = client.post(path, data={"url": "https://x.org/r"})
        assert r.status_code == 400, path
    r = client.post("/submit", data={"url": "https://x.org/r", "csrf_token": "forged"})
    assert r.status_code == 400


def test_submit_form_validation_and_success(client: Any, alice: Any) -> None:
    login(client, alice)
    page = client.get("/submit").get_data(as_text=True)
    token = csrf_from(page)
    r = client.post("/submit", data={"csrf_token": token, "mode": "git",
                                     "url": "--upload-pack=evil", "ref": ""})
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert "must not start with" in html and 'class="bad"' in html
    r = client.post("/submit", data={"csrf_token": token, "mode": "archive",
                                     "archive": (io.BytesIO(b"x"), "c.rar")},
                    content_type="multipart/form-data")
    assert r.status_code == 415 and ".tar.gz" in r.get_data(as_text=True)
    r = client.post("/submit", data={"csrf_token": token, "mode": "archive",
                                     "time_limit_s": "15",
                                     "archive": (io.BytesIO(tgz({"run.py": b"1"})), "c.tgz")},
                    content_type="multipart/form-data")
    assert r.status_code == 302 and r.headers["Location"].startswith("/jobs/")
    job_page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "queued" in job_page and "Cancel job" in job_page
    r = client.post(r.headers["Location"] + "/cancel", data={"csrf_token": csrf_from(job_page)})
    assert r.status_code == 302
    assert "canceled" in client.get(r.headers["Location"]).get_data(as_text=True)


def test_account_page_issues_tokens(client: Any, alice: Any) -> None:
    login(client, alice)
    page = client.get("/account").get_data(as_text=True)
    assert "raas/v1/jobs/alice/+/#" in page and "mosquitto_sub" in page
    r = client.post("/account/tokens", data={"csrf_token": csrf_from(page), "name": "laptop"})
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and 'id="new-token"' in html and "laptop" in html


def test_other_users_job_page_is_403(client: Any, alice: Any, bob: Any) -> None:
    job = client.post("/api/v1/jobs", json={"url": "https://x.org/r"},
                      headers=alice.headers).get_json()
    login(client, bob)
    assert client.get(f"/jobs/{job['id']}").status_code == 403


def test_security_headers(client: Any) -> None:
    r = client.get("/login")
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("key", [None, "", "dev", "changeme", "short-but-not-weak"])
def test_refuses_to_start_with_a_development_or_missing_secret(tmp_path: Any,
                                                               key: str | None) -> None:
    cfg = make_config(tmp_path, secret_key=key)
    with pytest.raises(ConfigError, match="secret"):
        create_app({"RAAS_CONFIG": cfg})


def test_starts_with_a_strong_secret_from_a_file(tmp_path: Any) -> None:
    key = tmp_path / "key"
    key.write_text("k" * 20 + "0123456789abcdefghij\n")
    app = create_app({"RAAS_CONFIG": make_config(tmp_path, secret_key_file=str(key))})
    assert app.config["SECRET_KEY"] == "k" * 20 + "0123456789abcdefghij"
    assert not app.testing


def test_config_refuses_more_streams_than_threads(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="RAAS_SSE_MAX_STREAMS"):
        create_app({"TESTING": True, "RAAS_CONFIG": make_config(tmp_path, threads=8,
                                                                sse_max_streams=6)})


@pytest.mark.parametrize("field,value", [("login_limit_per_account", "five a minute"),
                                         ("login_limit_per_address", ""),
                                         ("token_lifetime_s", 0), ("max_json_depth", 0)])
def test_config_refuses_bad_login_limits_and_lifetimes(tmp_path: Any, field: str,
                                                       value: Any) -> None:
    with pytest.raises(ConfigError):
        create_app({"TESTING": True, "RAAS_CONFIG": make_config(tmp_path, **{field: value})})
