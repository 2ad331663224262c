"""The HTTPS reverse proxy in front of the dashboard: nginx's site configuration, rendered.

``nginx-site.conf`` beside this module is the configuration (tested as shipped by
``tests/security/test_tls_dashboard.py``); :func:`render_site` fills in its ``@NAME@``
placeholders. From the command line::

    python -m dashboard.proxy --server-name raas.lab.example \\
        --cert /etc/raas/tls/dashboard.crt --key /etc/raas/tls/dashboard.key \\
        > /etc/nginx/sites-available/raas

The upstream port and the upload limit come from the dashboard's settings (``raas config``).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from dashboard.config import DashboardConfig
from gym_raas_mqtt.config import load

SITE_TEMPLATE = Path(__file__).with_name("nginx-site.conf")
MULTIPART_SLACK_BYTES = 1024 * 1024
"""Allowance above the upload limit for multipart framing, so the dashboard (not nginx) refuses
an archive that is too large, with its own message."""
_PLACEHOLDER = re.compile(r"@[A-Z_]+@")


def render_site(server_name: str, cert: Path, key: Path, *, upstream_port: int,
                max_upload_bytes: int, https_port: int = 443, http_port: int = 80) -> str:
    """nginx's ``server`` blocks for the dashboard: HTTPS on ``https_port`` (TLS 1.2 and 1.3,
    HSTS), forwarding to waitress on ``127.0.0.1:upstream_port``; plain HTTP on ``http_port``
    only redirects.

    Args:
        server_name: the host name(s) users type, space-separated.
        cert: certificate chain (PEM) naming ``server_name``.
        key: its private key (PEM).
        upstream_port: the dashboard's port (``RAAS_DASHBOARD_PORT``).
        max_upload_bytes: the dashboard's upload limit (``RAAS_MAX_UPLOAD_BYTES``) [bytes].
        https_port: TLS port.
        http_port: redirecting port.
    """
    values = {"SERVER_NAME": server_name, "CERT": str(cert), "KEY": str(key),
              "UPSTREAM_PORT": str(upstream_port), "HTTPS_PORT": str(https_port),
              "HTTP_PORT": str(http_port),
              "MAX_BODY_BYTES": str(max_upload_bytes + MULTIPART_SLACK_BYTES)}
    return _PLACEHOLDER.sub(lambda m: values[m.group(0).strip("@")], SITE_TEMPLATE.read_text())


def main(argv: list[str] | None = None) -> int:
    """``python -m dashboard.proxy``: print the nginx site for this dashboard."""
    p = argparse.ArgumentParser(prog="python -m dashboard.proxy", description=__doc__.split(
        "\n")[0])
    p.add_argument("--server-name", required=True, help="host name(s) users type")
    p.add_argument("--cert", type=Path, required=True, help="certificate chain (PEM)")
    p.add_argument("--key", type=Path, required=True, help="its private key (PEM)")
    p.add_argument("--https-port", type=int, default=443)
    p.add_argument("--http-port", type=int, default=80)
    args = p.parse_args(argv)
    cfg = load(DashboardConfig)
    sys.stdout.write(render_site(args.server_name, args.cert.resolve(), args.key.resolve(),
                                 upstream_port=cfg.port, max_upload_bytes=cfg.max_upload_bytes,
                                 https_port=args.https_port, http_port=args.http_port))
    return 0
