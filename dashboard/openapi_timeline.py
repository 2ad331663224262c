"""The OpenAPI schemas of a job's live facts and event timeline (:mod:`dashboard.timeline`),
merged into :mod:`dashboard.openapi`."""

from __future__ import annotations

from typing import Any

from gym_raas_mqtt.protocol import ID_PATTERN, JobState

_NUMBER = {"type": "number", "nullable": True}
_INTEGER = {"type": "integer", "nullable": True}
KINDS = ["queued", "assigned", "started", "cancel_requested", "requeued", "finished"]
"""What a timeline entry records (dashboard.timeline.job_timeline)."""

SCHEMAS: dict[str, Any] = {
    "JobFacts": {"type": "object", "required": ["attempt", "time_limit_s"], "properties": {
        "started_at": _NUMBER | {"description": "first start [s since the epoch]"},
        "attempt": {"type": "integer", "description": "executions so far (the current one)"},
        "max_attempts": _INTEGER,
        "node_id": {"type": "string", "nullable": True},
        "episode_id": _INTEGER | {"description": "live: the episode running (from 1 per job)"},
        "step": _INTEGER | {"description": "live: the step within it"},
        "elapsed_s": _NUMBER | {"description": "since the start, to now or the end [s]; null "
                                               "while queued"},
        "time_limit_s": {"type": "number", "description": "wall-clock limit [s]"},
        "estimated_wait_s": _NUMBER | {"description": "while queued: a rough wait [s] from "
                                                      "recent runs' durations (null without)"}}},
    "JobEvent": {"type": "object", "required": ["at", "kind", "state"], "properties": {
        "at": {"type": "number", "description": "s since the epoch"},
        "kind": {"type": "string", "enum": KINDS},
        "state": {"type": "string", "enum": [s.value for s in JobState],
                  "description": "the state entered"},
        "execution": _INTEGER | {"description": "the attempt it belongs to"},
        "actor": {"type": "string"},
        "reason": {"type": "string", "nullable": True,
                   "description": "why (a requeue: why its execution ended in error)"}}},
    "JobTimeline": {"type": "object", "required": ["job_id", "state", "events", "facts"],
                    "properties": {
        "job_id": {"type": "string", "pattern": ID_PATTERN.pattern},
        "state": {"type": "string", "enum": [s.value for s in JobState]},
        "events": {"type": "array", "items": {"$ref": "#/components/schemas/JobEvent"}},
        "facts": {"$ref": "#/components/schemas/JobFacts"}}},
}
"""Merged into the document's ``components.schemas``."""
