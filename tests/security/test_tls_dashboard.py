"""The dashboard over HTTPS: Debian's nginx with the site configuration we ship
(dashboard/proxy/nginx-site.conf) in front of waitress, which believes the proxy's forwarded
client address and scheme and nobody else's."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import requests

from dashboard.app import create_app
from dashboard.proxy import render_site
from dashboard.server import BackgroundServer
from tests.conftest import free_port, wait_port
from tests.dashboard.dashboard_helpers import csrf_from, make_config, make_user
from tests.security.tls_helpers import make_ca_and_cert, network_address, old_tls_context

STANDALONE = """\
# nginx as an ordinary process: everything under one folder
{user}
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    default_type application/octet-stream;
    include {site};
}}
"""


class Proxy:
    """nginx serving the rendered site, on free ports."""

    def __init__(self, folder: Path, cert: Path, key: Path, upstream_port: int,
                 max_upload_bytes: int) -> None:
        self.https_port, self.http_port = free_port(), free_port()
        site = folder / "raas-site.conf"
        site.write_text(render_site("localhost", cert, key, upstream_port=upstream_port,
                                    max_upload_bytes=max_upload_bytes,
                                    https_port=self.https_port, http_port=self.http_port))
        # as root, nginx would run its workers as nobody, who cannot use this folder
        user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
        conf = folder / "nginx.conf"
        conf.write_text(STANDALONE.format(user=user, prefix=folder, site=site))
        self.folder = folder
        self.process = subprocess.Popen(["nginx", "-p", str(folder), "-c", str(conf)],
                                        stderr=subprocess.PIPE)
        try:
            wait_port("127.0.0.1", self.https_port)
        except TimeoutError:
            self.stop()
            raise AssertionError(f"nginx did not start: {self.process.stderr.read()!r}")
        self.url = f"https://localhost:{self.https_port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stderr.close()


def https_session(ca: Path) -> requests.Session:
    """A session trusting ``ca`` alone (REQUESTS_CA_BUNDLE in the environment would override a
    session's ``verify``)."""
    web = requests.Session()
    web.trust_env = False
    web.verify = str(ca)
    return web


@pytest.fixture
def site(tmp_path):
    """(proxy, app, CA, user): the dashboard behind nginx, logins limited to 3 per address."""
    if not shutil.which("nginx"):
        pytest.skip("nginx is not installed (make test installs it)")
    ca, cert, key = make_ca_and_cert(tmp_path / "tls")
    cfg = make_config(tmp_path, secure_cookies=True, trusted_proxy="127.0.0.1",
                      login_limit_per_address="3/minute", sse_keepalive_s=0.3)
    app = create_app({"TESTING": True, "RAAS_CONFIG": cfg})
    user = make_user(app, "alice")
    with BackgroundServer(app, threads=8, trusted_proxy=cfg.trusted_proxy) as server:
        proxy = Proxy(tmp_path, cert, key, server.port, cfg.max_upload_bytes)
        try:
            yield proxy, app, ca, user
        finally:
            proxy.stop()


def test_the_dashboard_is_served_over_https_with_secure_cookies(site):
    proxy, _, ca, user = site
    web = https_session(ca)
    r = web.get(f"{proxy.url}/login")
    assert r.status_code == 200 and r.url.startswith("https://")
    assert r.headers["Strict-Transport-Security"].startswith("max-age=")
    assert r.headers["X-Frame-Options"] == "DENY"  # the app's own headers come through
    form = {"username": user.name, "password": user.password, "csrf_token": csrf_from(r.text)}
    # the app knows the request came over HTTPS: Flask-WTF then insists on a same-site Referer
    refused = web.post(f"{proxy.url}/login", data=form, allow_redirects=False)
    assert refused.status_code == 400 and "referrer" in refused.text.lower()
    r = web.post(f"{proxy.url}/login", data=form, allow_redirects=False,
                 headers={"Referer": f"{proxy.url}/login"})
    assert r.status_code == 302
    cookie = r.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie
    assert user.name in web.get(f"{proxy.url}/account").text


def test_plain_http_only_redirects_and_old_tls_is_refused(site, tmp_path):
    proxy, _, ca, _ = site
    r = requests.get(f"http://localhost:{proxy.http_port}/account", allow_redirects=False)
    assert r.status_code == 301
    assert r.headers["Location"] == f"https://localhost:{proxy.https_port}/account"
    r = requests.get(f"http://localhost:{proxy.https_port}/login")  # plain text on the TLS port
    assert r.status_code == 400 and "Set-Cookie" not in r.headers
    other_ca, _, _ = make_ca_and_cert(tmp_path / "other")
    with pytest.raises(requests.exceptions.SSLError):
        https_session(other_ca).get(f"{proxy.url}/login")
    for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with socket.create_connection(("127.0.0.1", proxy.https_port), 5) as raw:
            with pytest.raises(ssl.SSLError) as refused:
                old_tls_context(ca, version).wrap_socket(raw, server_hostname="localhost")
        assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"


def test_live_streams_are_not_buffered_by_the_proxy(site):
    proxy, _, ca, user = site
    started = time.monotonic()
    with https_session(ca).get(f"{proxy.url}/stream?jobs=1", headers=user.headers,
                               stream=True, timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        chunks = r.iter_content(chunk_size=None)
        assert next(chunks).startswith(b"retry:")
        # each event as it is written (a buffering proxy would hold these few bytes back),
        # down to the keep-alive comment that follows 0.3 s of silence
        while not next(chunks).startswith(b":"):
            pass
    assert time.monotonic() - started < 3.0


def test_login_limits_count_each_clients_own_address(site):
    """Through the proxy, waitress sees each client's address (X-Forwarded-For from nginx, which
    overwrites whatever a client sends), so one address exhausting its limit leaves others be."""
    proxy, _, ca, _ = site
    address = network_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to be a second client from")
    outside = f"https://{address}:{proxy.https_port}"  # the certificate names this address too

    def attempt(base: str, name: str, spoof: str) -> int:
        web = https_session(ca)
        token = csrf_from(web.get(f"{base}/login").text)
        return web.post(f"{base}/login", allow_redirects=False,
                        data={"username": name, "password": "wrong", "csrf_token": token},
                        headers={"Referer": f"{base}/login", "X-Forwarded-For": spoof}).status_code

    # a different user name each time: only the per-address limit (3/minute) applies
    codes = [attempt(outside, f"nobody{i}", f"10.0.0.{i}") for i in range(4)]
    assert codes == [401, 401, 401, 429]  # the spoofed header changed nothing
    assert attempt(proxy.url, "nobody9", "10.0.0.9") == 401  # 127.0.0.1: its own count
