"""The dashboard's settings (``DashboardConfig``), read from ``RAAS_*`` environment variables."""

from __future__ import annotations

from dataclasses import dataclass

from gym_raas_mqtt.config import read_secret, setting
from gym_raas_mqtt.errors import ConfigError
from raas_platform.settings import CENTRAL_MQTT_URL, DATABASE_URL, STORE_URL

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
    secure_cookies: bool = setting("RAAS_SECURE_COOKIES", True,
                                   "mark session cookies Secure (HTTPS only); off for plain HTTP")
    session_lifetime_s: int = setting("RAAS_SESSION_LIFETIME_S", 12 * 3600,
                                      "how long a login lasts", unit="s")
    max_upload_bytes: int = setting("RAAS_MAX_UPLOAD_BYTES", 20 * 1024 * 1024,
                                    "largest archive upload (the request is refused above it)",
                                    unit="bytes")
    max_unpacked_bytes: int = setting("RAAS_MAX_UNPACKED_BYTES", 200 * 1024 * 1024,
                                      "largest total size of an archive's contents", unit="bytes")
    max_archive_members: int = setting("RAAS_MAX_ARCHIVE_MEMBERS", 5000,
                                       "most files in an uploaded archive")
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
            ConfigError: more streams allowed than threads to serve them, or non-positive sizes.
            (Time-limit bounds are the queue's and checked by DispatcherConfig.)
        """
        if self.sse_max_streams > self.threads - 4:
            raise ConfigError(f"RAAS_SSE_MAX_STREAMS={self.sse_max_streams} leaves fewer than 4 "
                              f"of RAAS_DASHBOARD_THREADS={self.threads} for ordinary requests")
        if self.max_upload_bytes <= 0 or self.sse_queue_size <= 0:
            raise ConfigError("RAAS_MAX_UPLOAD_BYTES and RAAS_SSE_QUEUE_SIZE must be positive")


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
