"""The OpenAPI pieces of run metadata and the runs table, merged into :mod:`dashboard.openapi`:
the job's metadata and figures, the submission fields, and ``GET /jobs``'s query parameters."""

from __future__ import annotations

from typing import Any

from dashboard.runs import (DEFAULT_PER_PAGE, DEFAULT_SORT, MAX_PER_PAGE, MAX_QUERY_CHARS,
                           SORT_COLUMNS)
from raas_platform.submission import metadata as rules

_NAME = {"type": "string", "pattern": rules.NAME_PATTERN.pattern}
_TAG = {"type": "string", "pattern": rules.TAG_PATTERN.pattern}
_NUMBER = {"type": "number", "nullable": True}
_INTEGER = {"type": "integer", "nullable": True}

JOB_FIELDS: dict[str, Any] = {
    "name": _NAME | {"nullable": True, "description": "the run's short name"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "notes": {"type": "string", "nullable": True},
    "args": {"type": "array", "items": {"type": "string"},
             "description": "arguments of run.py (python run.py ARGS...)"},
    "env": {"type": "object", "additionalProperties": {"type": "string"},
            "description": "environment variables set for run.py"},
    "return": _NUMBER | {"description": "Σ reward of the run (from its summary)"},
    "seconds_upright": _NUMBER | {"description": "longest upright stretch [s]"},
    "steps": _INTEGER, "episodes": _INTEGER,
    "duration_s": _NUMBER | {"description": "wall-clock duration of the run [s]"},
    "deadline_misses": _INTEGER,
}
"""Properties of the ``Job`` schema: run metadata and the summary's figures (null before)."""

SUBMISSION_FIELDS: dict[str, Any] = {
    "name": _NAME | {"nullable": True},
    "tags": {"type": "array", "nullable": True, "maxItems": rules.MAX_TAGS, "items": _TAG},
    "notes": {"type": "string", "nullable": True, "maxLength": rules.MAX_NOTES_CHARS},
    "args": {"type": "array", "nullable": True, "maxItems": rules.MAX_ARGS,
             "items": {"type": "string", "maxLength": rules.MAX_ARG_CHARS},
             "description": "arguments of run.py"},
    "env": {"type": "object", "nullable": True, "maxProperties": rules.MAX_ENV_VARS,
            "additionalProperties": {"type": "string", "maxLength": rules.MAX_ENV_VALUE_CHARS},
            "description": "environment variables for run.py: names ^[A-Z_][A-Z0-9_]*$, not "
                           "RAAS_*, LD_*, PATH, HOME, PYTHONPATH and the like"},
}
"""Properties of a JSON (git) submission."""

FORM_FIELDS: dict[str, Any] = {
    "name": {"type": "string"},
    "tags": {"type": "string", "description": "tags separated by commas or spaces"},
    "notes": {"type": "string"},
    "args": {"type": "string", "description": "arguments of run.py as shell words"},
    "env": {"type": "string", "description": "NAME=value lines"},
}
"""Properties of a multipart (archive) submission: the submit form's text fields."""

LIST_FIELDS: dict[str, Any] = {
    "total": {"type": "integer", "description": "jobs matching the filters"},
    "page": {"type": "integer"}, "pages": {"type": "integer"}, "per_page": {"type": "integer"},
    "sort": {"type": "string"},
}
"""Properties of ``JobList`` besides ``jobs``."""

_SORTS = [k for key in SORT_COLUMNS for k in (key, "-" + key)]


def list_parameters() -> list[dict[str, Any]]:
    """Query parameters of ``GET /jobs`` (the runs table)."""
    def q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "schema": schema, "description": description}

    return [
        q("sort", {"type": "string", "enum": _SORTS, "default": DEFAULT_SORT},
          "column to sort by, - first for descending; jobs without the figure come last"),
        q("tag", _TAG, "only jobs with this tag"),
        q("node", {"type": "string", "maxLength": 64}, "only jobs on this node"),
        q("owner", {"type": "string", "maxLength": 64},
          "only this user's jobs (admins; 403 for anyone else's)"),
        q("q", {"type": "string", "maxLength": MAX_QUERY_CHARS},
          "search: name or notes containing it (any case), or a job id prefix"),
        q("page", {"type": "integer", "minimum": 1, "maximum": 10**6, "default": 1},
          "1-based page number"),
        q("per_page", {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE,
                       "default": DEFAULT_PER_PAGE}, "jobs per page"),
    ]
