"""The fleet trace from the dispatcher's database: what ``raas fleet trace`` exports.

The format and its writer are :mod:`gym_raas_mqtt.scaling.trace`'s; this module reads the rows:

* ``arrival``: every job submitted in the period, at its submission; ``duration_s`` is the run
  time (start → end) of the execution that ran its code to the end (succeeded, failed or
  timed_out), empty if none did; ``node_id`` that execution's node, ``detail`` the job's state.
* ``failure``: every execution a platform fault ended (``error``) in the period, at its end.
* ``selftest`` and ``reset``: every self-test (``SelfTest`` row) that started in the period, at
  its start; ``duration_s`` the whole check and its reset (``details.reset_s``).
* ``boot``: every birth (an agent that started with a reset) and wake in the period
  (``NodeBoot``), at that time; ``duration_s`` until the node's next passing self-test ended
  (then it reports ``idle``); boots without one (yet) are left out.
"""

from __future__ import annotations

import json
from datetime import datetime

from dispatcher import db
from gym_raas_mqtt.protocol import JobState
from gym_raas_mqtt.scaling.trace import TraceRow, meta_row


def _detail(text: str | None) -> str:
    return " ".join((text or "").split())[:200]  # one line


def trace_rows(since: datetime, until: datetime) -> list[TraceRow]:
    """The trace of the period ``since`` .. ``until`` (timezone-aware), meta row first, the rest
    by time."""
    t0, t1 = since.timestamp(), until.timestamp()
    S, F, T, E = (JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.TIMED_OUT.value,
                  JobState.ERROR.value)
    rows: list[TraceRow] = []
    for job_id, submitted, started, finished, node_id, state in db.execute(
            'SELECT j."id", j."submitted_at", e."started_at", e."finished_at", e."node_id", '
            'j."state" FROM "job" j LEFT JOIN "execution" e ON e."job_id" = j."id" '
            'AND e."state" IN (?, ?, ?) AND e."started_at" IS NOT NULL '
            'WHERE j."submitted_at" >= ? AND j."submitted_at" < ?', S, F, T, t0, t1):
        ran = started is not None and finished is not None
        rows.append(TraceRow("arrival", submitted - t0, max(finished - started, 0.0) if ran
                             else None, job_id, node_id or "", state))
    for job_id, node_id, finished, reason in db.execute(
            'SELECT "job_id", "node_id", "finished_at", "reason" FROM "execution" '
            'WHERE "state" = ? AND "finished_at" >= ? AND "finished_at" < ?', E, t0, t1):
        rows.append(TraceRow("failure", finished - t0, None, job_id, node_id, _detail(reason)))
    for node_id, at, duration, details in db.execute(
            'SELECT "node_id", "at", "duration_s", "details" FROM "selftest" '
            'WHERE "duration_s" IS NOT NULL AND "at" - "duration_s" >= ? AND "at" < ?', t0, t1):
        start = at - duration - t0
        rows.append(TraceRow("selftest", start, duration, "", node_id))
        reset_s = _reset_s(details)
        if reset_s is not None:
            rows.append(TraceRow("reset", start, reset_s, "", node_id))
    for node_id, at, cause, idle_at in db.execute(
            'SELECT b."node_id", b."at", b."cause", (SELECT MIN(s."at") FROM "selftest" s '
            'WHERE s."node_id" = b."node_id" AND s."ok" = ? AND s."at" >= b."at") '
            'FROM "nodeboot" b WHERE b."at" >= ? AND b."at" < ?', True, t0, t1):
        if idle_at is not None:
            rows.append(TraceRow("boot", at - t0, idle_at - at, "", node_id, cause))
    rows.sort(key=lambda r: (r.t_s, r.event, r.job_id, r.node_id))
    return [meta_row(since, until), *rows]


def _reset_s(details: str | None) -> float | None:
    """``reset_s`` [s] of a self-test's stored details (JSON text), if it is a number ≥ 0."""
    try:
        value = json.loads(details or "{}").get("reset_s")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and value >= 0 else None
