"""Server-sent events: ``GET /stream?job=ID&jobs=1&fleet=1`` streams live updates to one client.

Each request opens a :class:`~dashboard.hub.Stream` (bounded queue, capped count) and holds one
server thread while open; it ends after ``RAAS_SSE_MAX_DURATION_S`` (the browser's EventSource
reconnects by itself) or when the client goes away, which the keep-alive comment reveals within
``RAAS_SSE_KEEPALIVE_S``.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Iterator

from flask import Blueprint, Response, current_app, g, request

from dashboard import jobs
from dashboard.errors import json_error
from dashboard.hub import Hub, Stream, TooManyStreams, keepalive_comment

bp = Blueprint("stream", __name__)
RETRY_MS = 3000
DISCONNECT_CHECK_S = 1.0  # how often an idle stream checks whether its client is still there


def _flag(name: str) -> bool:
    return request.args.get(name, "").lower() in ("1", "true", "yes")


@bp.get("/stream")
def events() -> Any:
    """Stream the live updates the user asked for (``job``, ``jobs``, ``fleet``) and may see."""
    if g.user is None:
        return json_error(401, "unauthorized", g.token_refused or "log in first")
    # 404/403 before anything streams; a unique id prefix names the job too
    job_ids = [jobs.load_job(job_id).id for job_id in request.args.getlist("job")[:8]]
    cfg = current_app.extensions["raas_config"]
    hub: Hub = current_app.extensions["raas_hub"]
    try:
        stream = hub.open(g.user.name, admin=g.user.is_admin, jobs=job_ids,
                          all_jobs=_flag("jobs"), fleet=_flag("fleet"))
    except TooManyStreams as e:
        resp = json_error(503, "too_many_streams", str(e))
        resp.headers["Retry-After"] = "10"
        return resp
    # waitress tells us when the browser went away (page closed or navigated), so the stream
    # slot is freed within a second instead of at the next keep-alive write.
    gone = request.environ.get("waitress.client_disconnected") or (lambda: False)
    body = _generate(hub, stream, cfg.sse_keepalive_s, cfg.sse_max_duration_s, gone)
    return Response(body, mimetype="text/event-stream", headers={
        "Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"})


def _generate(hub: Hub, stream: Stream, keepalive_s: float, max_duration_s: float,
              gone: Callable[[], bool] = lambda: False) -> Iterator[bytes]:
    """The response body; runs after the request context is gone (no database use here)."""
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        end = time.monotonic() + max_duration_s
        next_keepalive = time.monotonic() + keepalive_s
        reported_drops = 0
        while not stream.closed:
            now = time.monotonic()
            if now >= end or gone():
                return
            batch = stream.get(min(next_keepalive, end, now + DISCONNECT_CHECK_S) - now)
            if stream.dropped != reported_drops:
                reported_drops = stream.dropped
                data = json.dumps({"dropped": reported_drops})
                yield f"event: dropped\ndata: {data}\n\n".encode()
            if batch:
                yield b"".join(ev.encode() for ev in batch)
                next_keepalive = time.monotonic() + keepalive_s
            elif time.monotonic() >= next_keepalive:
                yield keepalive_comment()
                next_keepalive = time.monotonic() + keepalive_s
    finally:
        hub.close(stream)
