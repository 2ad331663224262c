"""The dashboard's error responses: JSON on API and stream paths, an HTML page elsewhere."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


def wants_json() -> bool:
    """API and stream paths answer errors in JSON; pages answer in HTML."""
    return request.path.startswith("/api/") or request.path.startswith("/stream")


def json_error(status: int, error: str, reason: str) -> Any:
    """A JSON error response ``{"error": ..., "reason": ...}`` with ``status``."""
    resp = jsonify({"error": error, "reason": reason})
    resp.status_code = status
    return resp


def register_error_handlers(app: Flask) -> None:
    """Answer CSRF failures, HTTP errors and unexpected exceptions in the form the path wants
    (an unexpected exception is logged with its traceback and never shown to the user)."""

    @app.errorhandler(CSRFError)
    def csrf_error(e: CSRFError) -> Any:
        if wants_json():
            return json_error(400, "csrf", e.description)
        return render_template("error.html", status=400,
                               reason=f"{e.description} Reload the page and try again."), 400

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Any:
        status = e.code or 500
        name = (e.name or "error").lower().replace(" ", "_")
        if wants_json():
            return json_error(status, name, e.description or name)
        return render_template("error.html", status=status, reason=e.description), status

    @app.errorhandler(RecursionError)
    def too_deep(e: RecursionError) -> Any:
        # JSON bodies are measured before parsing (dashboard.bodies); this is the net behind it
        log.warning("%s %s: input nested too deeply (%s)", request.method, request.path, e)
        reason = "the request is nested too deeply"
        if wants_json():
            return json_error(400, "bad_request", reason)
        return render_template("error.html", status=400, reason=reason), 400

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> Any:
        log.exception("unhandled error on %s %s", request.method, request.path)
        if wants_json():
            return json_error(500, "internal", "internal error; the administrator has the log")
        return render_template("error.html", status=500, reason="Internal error."), 500
