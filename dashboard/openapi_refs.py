"""The building blocks every part of the OpenAPI document shares: references to its components."""

from __future__ import annotations

from typing import Any


def ref(name: str, kind: str = "schemas") -> dict[str, str]:
    """A ``$ref`` to the document's component ``name`` of ``kind`` (schemas, responses...)."""
    return {"$ref": f"#/components/{kind}/{name}"}


def errors(*codes: int) -> dict[str, Any]:
    """References to the shared error responses ``E<code>`` for ``codes`` (plus a default)."""
    out: dict[str, Any] = {str(c): ref(f"E{c}", "responses") for c in codes}
    out["default"] = ref("Error", "responses")
    return out


def ok(schema: str, description: str) -> dict[str, Any]:
    """A JSON answer whose body is the document's schema ``schema``."""
    return {"description": description,
            "content": {"application/json": {"schema": ref(schema)}}}
