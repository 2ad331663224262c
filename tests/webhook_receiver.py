"""A real HTTP server for webhook tests: records every POST and answers with scripted statuses."""

from __future__ import annotations

import hashlib
import hmac
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """An HTTP server on a free loopback port that records every POST ``(headers, body)`` and
    answers with the next status of ``answers`` (then 200), after ``delay_s``."""

    def __init__(self, answers: list[int] | None = None, delay_s: float = 0.0) -> None:
        self.requests: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        self.answers = list(answers or [])
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                rec.requests.put((dict(self.headers), body))
                time.sleep(delay_s)
                status = rec.answers.pop(0) if rec.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/raas?x=1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def get(self, timeout_s: float = 5.0) -> tuple[dict[str, str], bytes]:
        """The next request received (raises queue.Empty after ``timeout_s``)."""
        return self.requests.get(timeout=timeout_s)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def signed_by(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Whether ``X-Raas-Signature-256`` is ``body``'s HMAC-SHA256 with ``secret``."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get("X-Raas-Signature-256", ""))
