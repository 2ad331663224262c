"""Limits on JSON request bodies (size and nesting depth), checked before anything parses them.

Python's JSON parser recurses once per nested array or object, so a body of 100 000 ``[``
would end in a ``RecursionError`` (a 500) wherever it is parsed — including the login throttle's
look-up of the user name, which runs before the view. Every JSON request is therefore measured
first, without parsing: larger than ``RAAS_MAX_JSON_BYTES`` is 413, nested deeper than
``RAAS_MAX_JSON_DEPTH`` is 400 ``bad_request`` with the reason.
"""

from __future__ import annotations

import itertools
import re

from flask import Flask, abort, request

# A JSON string, or an unterminated one up to the end (so a scan never backtracks): a quote, then
# any characters with a backslash escaping the next one, then a quote or the end of the text.
_STRING = re.compile(rb'"(?:[^"\\]|\\.?)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # as signed bytes: +1 opens, -1 closes


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text, without parsing it.

    Brackets inside strings are skipped; for malformed text the answer is an upper bound.
    Linear in ``len(data)``.

    Args:
        data: the request body (UTF-8 JSON).

    Returns:
        0 for a scalar, 1 for ``[]`` or ``{}``, 2 for ``[[]]``, ...
    """
    steps = _STRING.sub(b"", data).translate(_STEP, _NOT_BRACKETS)
    return max(itertools.accumulate(memoryview(steps).cast("b"), initial=0))


def register_json_limits(app: Flask, max_bytes: int, max_depth: int) -> None:
    """Refuse JSON bodies larger than ``max_bytes`` (413) or nested deeper than ``max_depth``
    (400) in ``app``, before any view or extension reads them."""

    @app.before_request
    def check_json_body() -> None:
        if not request.is_json:
            return
        # the declared length first, so an oversized body is not even read
        if ((request.content_length or 0) > max_bytes
                or len(request.get_data(cache=True)) > max_bytes):
            abort(413, description=f"JSON bodies are limited to {max_bytes} bytes")
        if json_depth(request.get_data(cache=True)) > max_depth:  # the copy get_json() parses
            abort(400, description=f"the JSON body is nested deeper than {max_depth} levels "
                                   "of arrays and objects")
