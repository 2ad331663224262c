"""Serving the dashboard with waitress (a production WSGI server; never Flask's dev server)."""

from __future__ import annotations

import threading
import time
from typing import Any


def make_server(app: Any, host: str, port: int, threads: int) -> Any:
    """A bound (not yet running) waitress server; ``.run()`` serves, ``.close()`` stops.

    Each open live stream holds one of ``threads`` for its lifetime, so the config check keeps
    ``RAAS_SSE_MAX_STREAMS`` at most ``threads - 4``.
    """
    from waitress.server import create_server

    return create_server(app, host=host, port=port, threads=threads, ident="raas-dashboard",
                         channel_timeout=60, connection_limit=max(100, threads * 4),
                         asyncore_use_poll=True, clear_untrusted_proxy_headers=True,
                         # lets a live stream learn that its client disconnected
                         channel_request_lookahead=5)


class BackgroundServer:
    """The dashboard served from a daemon thread (tests and benchmarks).

    Args:
        app: the WSGI app.
        host: bind address.
        port: TCP port (0 = a free one; see :attr:`url`).
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, threads: int = 24
                 ) -> None:
        self.app = app
        self.server = make_server(app, host, port, threads)
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
