"""The dashboard's settings (``DashboardConfig``), read from ``RAAS_*`` environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from limits import parse_many

from gym_raas_mqtt.config import read_secret, setting
from gym_raas_mqtt.errors import ConfigError
from raas_platform.settings import (CENTRAL_CA_FILE, CENTRAL_MQTT_URL, CODE_MAX_BYTES,
                                     CODE_MAX_FILES, DATABASE_URL, GIT_SCHEMES, STORE_URL)
from raas_platform.submission import check_schemes

WEAK_SECRETS = frozenset({"dev", "development", "secret", "changeme", "change-me", "test",
                          "insecure", "please-change", "default"})
MIN_SECRET_CHARS = 32


@dataclass(frozen=True)
class DashboardConfig:
    """Everything the dashboard process needs; nothing here connects at import."""

    host: str = setting("RAAS_DASHBOARD_HOST", "127.0.0.1", "address the web server binds to")
    port: int = setting("RAAS_DASHBOARD_PORT", 8080, "TCP port of the web server")
    threads: int = setting("RAAS_DASHBOARD_THREADS", 24,
                           "waitress worker threads; every open live stream holds one")
    secret_key: str | None = setting(
        "RAAS_SECRET_KEY", None, "session-signing key (>= 32 chars), literal or file:/path",
        secret=True)
    secret_key_file: str | None = setting(
        "RAAS_SECRET_KEY_FILE", None, "file holding the session-signing key (wins over "
        "RAAS_SECRET_KEY)")
    database_url: str = DATABASE_URL.field()
    store_url: str = STORE_URL.field()
    broker_url: str | None = CENTRAL_MQTT_URL.field()  # empty: no live updates
    # verifies mqtts:// broker URLs; shown on the account page for the users' mosquitto_sub
    broker_ca_file: str | None = CENTRAL_CA_FILE.field()
    broker_username: str | None = setting("RAAS_DASHBOARD_MQTT_USERNAME", "dashboard",
                                          "the dashboard's central-broker user (read-only ACL)")
    broker_password_file: str | None = setting("RAAS_DASHBOARD_MQTT_PASSWORD_FILE", None,
                                               "file holding that user's password")
    broker_admin_url: str | None = setting(
        "RAAS_DASHBOARD_BROKER_ADMIN_URL", None,
        "broker admin address (mqtt://admin@host:port) used to issue per-user read-only MQTT "
        "logins; empty = users ask the operator")
    broker_admin_password_file: str | None = setting(
        "RAAS_DASHBOARD_BROKER_ADMIN_PASSWORD_FILE", None, "file holding that admin's password")
    public_broker_url: str | None = setting(
        "RAAS_PUBLIC_BROKER_URL", None,
        "broker address shown to users for mosquitto_sub (default: the dashboard's broker)")
    trusted_proxy: str | None = setting(
        "RAAS_DASHBOARD_TRUSTED_PROXY", None,
        "address of the HTTPS reverse proxy in front of the dashboard (e.g. 127.0.0.1): only its "
        "X-Forwarded-For and X-Forwarded-Proto are believed (client address for the login "
        "limits, https scheme)")
    secure_cookies: bool = setting("RAAS_SECURE_COOKIES", True,
                                   "mark session cookies Secure (HTTPS only); off for plain HTTP")
    session_lifetime_s: int = setting("RAAS_SESSION_LIFETIME_S", 12 * 3600,
                                      "how long a login lasts", unit="s")
    max_upload_bytes: int = setting("RAAS_MAX_UPLOAD_BYTES", 20 * 1024 * 1024,
                                    "largest archive upload (the request is refused above it)",
                                    unit="bytes")
    # the limits and schemes nodes apply too (one declaration each, raas_platform.settings)
    max_unpacked_bytes: int = CODE_MAX_BYTES.field()
    max_archive_members: int = CODE_MAX_FILES.field()
    git_schemes: tuple[str, ...] = GIT_SCHEMES.field()
    git_check: bool = setting(
        "RAAS_SUBMIT_GIT_CHECK", True,
        "resolve a git submission's ref with git ls-remote: refuse a repository that does not "
        "exist or answer and an unknown ref (400), and pin the job to the commit")
    git_check_timeout_s: float = setting("RAAS_SUBMIT_GIT_TIMEOUT_S", 20.0,
                                         "time limit of that git ls-remote", unit="s")
    max_json_bytes: int = setting("RAAS_MAX_JSON_BYTES", 1024 * 1024,
                                  "largest JSON request body (413 above it)", unit="bytes")
    max_json_depth: int = setting("RAAS_MAX_JSON_DEPTH", 32,
                                  "deepest nesting of arrays and objects in a JSON request body "
                                  "(400 beyond it)")
    login_limit_per_account: str = setting(
        "RAAS_LOGIN_LIMIT_PER_ACCOUNT", "5/minute;20/hour",
        "failed logins allowed per user name, known or not (login form and POST /api/v1/tokens "
        "together; 429 beyond); `N/second|minute|hour|day`, `;` between limits")
    login_limit_per_address: str = setting(
        "RAAS_LOGIN_LIMIT_PER_ADDRESS", "30/minute",
        "login attempts allowed per client address (form and API together; 429 beyond)")
    token_lifetime_s: int = setting("RAAS_TOKEN_LIFETIME_S", 90 * 24 * 3600,
                                    "how long a new API token is valid", unit="s")
    sse_max_streams: int = setting("RAAS_SSE_MAX_STREAMS", 16,
                                   "open live streams per process (503 beyond it)")
    sse_max_streams_per_user: int = setting("RAAS_SSE_MAX_STREAMS_PER_USER", 6,
                                            "open live streams per user (503 beyond it)")
    sse_queue_size: int = setting("RAAS_SSE_QUEUE_SIZE", 256,
                                  "events buffered per stream; the oldest are dropped beyond it")
    sse_keepalive_s: float = setting("RAAS_SSE_KEEPALIVE_S", 15.0,
                                     "interval of keep-alive comments on idle streams", unit="s")
    sse_max_duration_s: float = setting("RAAS_SSE_MAX_DURATION_S", 600.0,
                                        "a stream is closed after this long (the browser "
                                        "reconnects), freeing threads of vanished clients",
                                        unit="s")

    def resolved_secret_key(self) -> str | None:
        """The session key from RAAS_SECRET_KEY_FILE or RAAS_SECRET_KEY, or None."""
        if self.secret_key_file:
            return read_secret("file:" + self.secret_key_file)
        return read_secret(self.secret_key)

    def check(self) -> None:
        """Refuse inconsistent settings.

        Raises:
            ConfigError: more streams allowed than threads to serve them, non-positive sizes or
            lifetimes, a login limit that is not a rate, an unsupported git URL scheme, or a
            missing CA file.
            (Time-limit bounds are the queue's and checked by DispatcherConfig.)
        """
        if self.sse_max_streams > self.threads - 4:
            raise ConfigError(f"RAAS_SSE_MAX_STREAMS={self.sse_max_streams} leaves fewer than 4 "
                              f"of RAAS_DASHBOARD_THREADS={self.threads} for ordinary requests")
        if self.max_upload_bytes <= 0 or self.sse_queue_size <= 0:
            raise ConfigError("RAAS_MAX_UPLOAD_BYTES and RAAS_SSE_QUEUE_SIZE must be positive")
        check_schemes(self.git_schemes)
        if self.broker_ca_file and not Path(self.broker_ca_file).is_file():
            raise ConfigError(f"RAAS_CENTRAL_CA_FILE={self.broker_ca_file}: no such file")
        if min(self.max_json_bytes, self.max_json_depth, self.token_lifetime_s) <= 0:
            raise ConfigError("RAAS_MAX_JSON_BYTES, RAAS_MAX_JSON_DEPTH and RAAS_TOKEN_LIFETIME_S "
                              "must be positive")
        for env, value in (("RAAS_LOGIN_LIMIT_PER_ACCOUNT", self.login_limit_per_account),
                           ("RAAS_LOGIN_LIMIT_PER_ADDRESS", self.login_limit_per_address)):
            try:
                parse_many(value)
            except ValueError as e:
                raise ConfigError(f"{env}={value!r} is not a rate such as '5/minute;20/hour': "
                                  f"{e}") from None


def check_secret_key(key: str | None) -> str:
    """Return ``key`` if it is fit to sign sessions in production.

    Raises:
        ConfigError: missing, a well-known development value, or shorter than 32 characters.
    """
    if not key:
        raise ConfigError("no session secret: set RAAS_SECRET_KEY_FILE (or RAAS_SECRET_KEY) to "
                          f">= {MIN_SECRET_CHARS} random characters, e.g. "
                          "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`")
    if key.strip().lower() in WEAK_SECRETS or len(key) < MIN_SECRET_CHARS:
        raise ConfigError(f"the session secret is a development value or shorter than "
                          f"{MIN_SECRET_CHARS} characters; refusing to start")
    return key
