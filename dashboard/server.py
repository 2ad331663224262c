"""Serving the dashboard with waitress (a production WSGI server; never Flask's dev server).

Off the machine the dashboard is reached over HTTPS through a reverse proxy (nginx:
``dashboard/proxy/``) that terminates TLS and forwards to waitress on loopback. waitress believes
``X-Forwarded-For`` and ``X-Forwarded-Proto`` from that proxy's address only
(``RAAS_DASHBOARD_TRUSTED_PROXY``), so the login limits see each client's own address and the app
knows the request came over HTTPS; from any other peer those headers are removed.
"""

from __future__ import annotations

import threading
import time
from typing import Any


PROXY_HEADERS = frozenset({"x-forwarded-for", "x-forwarded-proto"})
"""The headers a trusted reverse proxy sets (and the only ones believed from it)."""


def make_server(app: Any, host: str, port: int, threads: int,
                trusted_proxy: str | None = None) -> Any:
    """A bound (not yet running) waitress server; ``.run()`` serves, ``.close()`` stops.

    Each open live stream holds one of ``threads`` for its lifetime, so the config check keeps
    ``RAAS_SSE_MAX_STREAMS`` at most ``threads - 4``.

    Args:
        trusted_proxy: address of the reverse proxy whose :data:`PROXY_HEADERS` are believed
            (one hop); None believes nobody's.
    """
    from waitress.server import create_server

    proxy: dict[str, Any] = {}
    if trusted_proxy:
        proxy = dict(trusted_proxy=trusted_proxy, trusted_proxy_count=1,
                     trusted_proxy_headers=set(PROXY_HEADERS))
    return create_server(app, host=host, port=port, threads=threads, ident="raas-dashboard",
                         channel_timeout=60, connection_limit=max(100, threads * 4),
                         asyncore_use_poll=True, clear_untrusted_proxy_headers=True,
                         # lets a live stream learn that its client disconnected
                         channel_request_lookahead=5, **proxy)


class BackgroundServer:
    """The dashboard served from a daemon thread (tests and benchmarks).

    Args:
        app: the WSGI app.
        host: bind address.
        port: TCP port (0 = a free one; see :attr:`url`).
        threads: waitress worker threads.
        trusted_proxy: see :func:`make_server`.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, threads: int = 24,
                 trusted_proxy: str | None = None) -> None:
        self.app = app
        self.server = make_server(app, host, port, threads, trusted_proxy)
        self.port = self.server.effective_port
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._run, name="waitress", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run()
        except OSError:  # closed while polling
            pass

    def __enter__(self) -> "BackgroundServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """End open live streams, stop accepting, and wait for the serving thread."""
        hub = getattr(self.app, "extensions", {}).get("raas_hub")
        if hub is not None:
            hub.shutdown()
            deadline = time.monotonic() + 2.0
            while hub.open_streams and time.monotonic() < deadline:
                time.sleep(0.01)
        self.server.task_dispatcher.shutdown(timeout=2)
        for channel in list(self.server._map.values()):  # idle keep-alive connections
            if channel is not self.server:
                channel.will_close = True
        self.server.close()
        self._thread.join(5)
