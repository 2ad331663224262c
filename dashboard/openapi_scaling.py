"""The scaling part of the OpenAPI document (:mod:`dashboard.openapi` merges it in): the fleet
samples of the scaling panel and the operators' standby / wake, served by :mod:`dashboard.scaling`."""

from __future__ import annotations

from typing import Any

from dashboard import openapi_refs as refs


SCHEMA = "#/components/schemas/"
"""Where the document's schemas live (``$ref`` prefix)."""


def _responses(schema: str, description: str, *errors: int) -> dict[str, Any]:
    """A 200 answer of ``schema`` plus the document's shared error responses ``errors``."""
    return {"200": refs.ok(schema, description), **refs.errors(*errors)}


_COUNT = {"type": "integer", "minimum": 0}
_STATIONS = {"type": "integer", "minimum": 0, "description": "stations"}
_NODE_ID = {"name": "node_id", "in": "path", "required": True, "schema": {"type": "string"}}

SCHEMAS: dict[str, Any] = {
    "FleetSample": {"type": "object", "required": ["t", "arrivals", "queued", "idle", "busy",
                                                   "booting", "standby", "online"], "properties": {
        "t": {"type": "number", "description": "s since the epoch"},
        "arrivals": {**_COUNT, "description": "jobs submitted since the previous sample"},
        "queued": {**_COUNT, "description": "jobs waiting"}, "idle": _STATIONS,
        "busy": _STATIONS, "booting": {**_STATIONS, "description": "woken, not idle yet"},
        "standby": _STATIONS, "online": {**_STATIONS, "description": "idle + busy + booting"}}},
    "ScalingDecision": {"type": "object", "required": ["t", "policy", "action", "online",
                                                       "target"], "properties": {
        "t": {"type": "number", "description": "s since the epoch"},
        "policy": {"type": "string"}, "action": {"type": "integer"},
        "online": _STATIONS, "target": _STATIONS,
        "woke": {"type": "array", "items": {"type": "string"}},
        "slept": {"type": "array", "items": {"type": "string"},
                  "description": "nodes put in standby"},
        "reason": {"type": "string", "nullable": True,
                   "description": "why it did less than the target asked"}}},
    "FleetSamples": {"type": "object", "required": ["window_s", "now", "samples"], "properties": {
        "window_s": {"type": "integer"}, "now": {"type": "number"},
        "samples": {"type": "array", "items": {"$ref": SCHEMA + "FleetSample"}},
        "last_decision": {"nullable": True, "allOf": [{"$ref": SCHEMA + "ScalingDecision"}]}}},
}

PATHS: dict[str, Any] = {
    "/fleet/samples": {"get": {
        "operationId": "getFleetSamples", "tags": ["fleet"],
        "summary": "The scaling panel: fleet samples of a rolling window and the autoscaler's "
                   "last decision",
        "parameters": [{"name": "window_s", "in": "query", "schema": {
            "type": "integer", "minimum": 60, "maximum": 604800, "default": 3600}}],
        "responses": _responses("FleetSamples", "samples, oldest first", 400, 401)}},
    **{f"/nodes/{{node_id}}/{action}": {"post": {
        "operationId": f"{action}Node", "tags": ["fleet"], "parameters": [_NODE_ID],
        "summary": summary,
        "responses": _responses("Node", "the node", 401, 403, 404)}}
       for action, summary in (
           ("standby", "Put a node in standby (admins): once idle its motor is off; no job"),
           ("wake", "Wake a node (admins): it resets and self-tests, then gets jobs again"))},
}
