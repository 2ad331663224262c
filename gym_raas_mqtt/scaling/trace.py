"""The fleet trace CSV: its columns and events, one reader that validates and one writer.

A trace records what the platform saw over a period so the env can replay it. One row per event,
columns :data:`TRACE_COLUMNS`; times in seconds since the ``since`` of the ``meta`` row:

| event    | t_s                  | duration_s                              | job_id | node_id |
|----------|----------------------|-----------------------------------------|--------|---------|
| meta     | 0                    | empty                                   | empty  | empty   |
| arrival  | submission time      | run time of its successful execution (empty: never ran) | yes | optional |
| boot     | node birth           | birth → first idle                      | empty  | yes     |
| reset    | reset start          | reset time                              | optional | yes   |
| selftest | self-test start      | self-test time                          | empty  | yes     |
| failure  | job execution ended by a platform fault | empty                | optional | yes     |

The ``meta`` row is the first row; its ``detail`` is ``since=<ISO 8601>;until=<ISO 8601>``.
Other rows may carry free text in ``detail`` (no newlines).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, TextIO

import numpy as np

from gym_raas_mqtt.errors import RaasError

TRACE_COLUMNS = ("event", "t_s", "duration_s", "job_id", "node_id", "detail")
"""The CSV header, in order."""
EVENTS = ("meta", "arrival", "boot", "reset", "selftest", "failure")
"""The event names a trace may contain."""
LATENCY_EVENTS = ("boot", "reset", "selftest")
"""Events whose ``duration_s`` is a station latency (required)."""


class TraceError(RaasError, ValueError):
    """A trace file that does not follow the format; the message names the line."""


class TraceRow(NamedTuple):
    """One row of a trace (what :func:`write_trace` takes; mappings and sequences work too).

    Attributes:
        event: one of :data:`EVENTS`.
        t_s: seconds since the trace's ``since`` [s], ≥ 0.
        duration_s: [s] ≥ 0, or None (empty).
        job_id: the job, or "".
        node_id: the node, or "".
        detail: free text ("" for most rows; ``since=…;until=…`` for ``meta``).
    """

    event: str
    t_s: float
    duration_s: float | None = None
    job_id: str = ""
    node_id: str = ""
    detail: str = ""


def meta_row(since: datetime, until: datetime) -> TraceRow:
    """The first row of a trace covering ``since`` .. ``until`` (timezone-aware datetimes)."""
    return TraceRow("meta", 0.0, detail=f"since={since.isoformat()};until={until.isoformat()}")


@dataclass
class Trace:
    """A validated trace: arrivals (sorted by time) and station latencies.

    Attributes:
        since: start of the period (t_s = 0).
        until: end of the period.
        arrival_t_s: float64 (n,) submission times [s], ascending.
        arrival_duration_s: float64 (n,) run times [s]; NaN where the job never ran.
        job_ids: the arrivals' job ids, in the same order.
        boot_s, reset_s, selftest_s: float64 latencies observed [s].
        failure_t_s: float64 times of platform faults that ended a job execution [s].
        failure_node_ids: the node of each failure.
    """

    since: datetime
    until: datetime
    arrival_t_s: np.ndarray
    arrival_duration_s: np.ndarray
    job_ids: list[str] = field(default_factory=list)
    boot_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    reset_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    selftest_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    failure_t_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    failure_node_ids: list[str] = field(default_factory=list)

    @property
    def span_s(self) -> float:
        """Length of the period [s]."""
        return (self.until - self.since).total_seconds()

    @property
    def durations_s(self) -> np.ndarray:
        """The run times of the jobs that ran [s] (NaNs dropped)."""
        d = self.arrival_duration_s
        return d[~np.isnan(d)]


def _parse_time(text: str, what: str, line: int) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as e:
        raise TraceError(f"line {line}: {what} is not an ISO 8601 time: {text!r}") from e
    if value.tzinfo is None:
        raise TraceError(f"line {line}: {what} needs a timezone: {text!r}")
    return value


def _parse_meta(detail: str, line: int) -> tuple[datetime, datetime]:
    parts = dict(p.partition("=")[::2] for p in detail.split(";") if p)
    if set(parts) != {"since", "until"}:
        raise TraceError(f"line {line}: meta detail must be 'since=<ISO>;until=<ISO>', "
                         f"got {detail!r}")
    since = _parse_time(parts["since"], "since", line)
    until = _parse_time(parts["until"], "until", line)
    if until < since:
        raise TraceError(f"line {line}: until is before since")
    return since, until


def _number(text: str, column: str, line: int, required: bool) -> float | None:
    if text == "":
        if required:
            raise TraceError(f"line {line}: {column} is required")
        return None
    try:
        value = float(text)
    except ValueError as e:
        raise TraceError(f"line {line}: {column} is not a number: {text!r}") from e
    if not math.isfinite(value) or value < 0:
        raise TraceError(f"line {line}: {column} must be finite and ≥ 0, got {text!r}")
    return value


def _parse_row(cells: list[str], line: int) -> TraceRow:
    if len(cells) != len(TRACE_COLUMNS):
        raise TraceError(f"line {line}: expected {len(TRACE_COLUMNS)} columns, got {len(cells)}")
    event, t_text, d_text, job_id, node_id, detail = cells
    if event not in EVENTS:
        raise TraceError(f"line {line}: unknown event {event!r} (expected one of {EVENTS})")
    t_s = _number(t_text, "t_s", line, required=True)
    duration = _number(d_text, "duration_s", line, required=event in LATENCY_EVENTS)
    if event == "arrival" and not job_id:
        raise TraceError(f"line {line}: an arrival needs a job_id")
    if event in LATENCY_EVENTS + ("failure",) and not node_id:
        raise TraceError(f"line {line}: a {event} row needs a node_id")
    return TraceRow(event, t_s, duration, job_id, node_id, detail)  # type: ignore[arg-type]


def _rows_of(source: Iterable[list[str]]) -> Iterable[tuple[int, TraceRow]]:
    lines = iter(source)
    header = next(lines, None)
    if header is None or tuple(header) != TRACE_COLUMNS:
        raise TraceError(f"line 1: the header must be {','.join(TRACE_COLUMNS)}")
    for line, cells in enumerate(lines, start=2):
        yield line, _parse_row(cells, line)


def _build(rows: Iterable[tuple[int, TraceRow]]) -> Trace:
    since = until = None
    arrivals: list[tuple[float, float, str]] = []
    latencies: dict[str, list[float]] = {e: [] for e in LATENCY_EVENTS}
    failures: list[tuple[float, str]] = []
    for line, row in rows:
        if (row.event == "meta") != (since is None):
            raise TraceError(f"line {line}: the meta row must be the first row, and only it")
        if row.event == "meta":
            since, until = _parse_meta(row.detail, line)
            span = (until - since).total_seconds()
            continue
        if row.t_s > span + 1e-6:
            raise TraceError(f"line {line}: t_s {row.t_s} is after the trace's until")
        if row.event == "arrival":
            duration = math.nan if row.duration_s is None else row.duration_s
            arrivals.append((row.t_s, duration, row.job_id))
        elif row.event == "failure":
            failures.append((row.t_s, row.node_id))
        else:
            latencies[row.event].append(row.duration_s)  # type: ignore[arg-type]
    if since is None or until is None:
        raise TraceError("line 2: the trace has no meta row")
    arrivals.sort(key=lambda a: a[0])
    return Trace(since=since, until=until,
                 arrival_t_s=np.array([a[0] for a in arrivals], dtype=np.float64),
                 arrival_duration_s=np.array([a[1] for a in arrivals], dtype=np.float64),
                 job_ids=[a[2] for a in arrivals],
                 boot_s=np.array(latencies["boot"], dtype=np.float64),
                 reset_s=np.array(latencies["reset"], dtype=np.float64),
                 selftest_s=np.array(latencies["selftest"], dtype=np.float64),
                 failure_t_s=np.array([f[0] for f in failures], dtype=np.float64),
                 failure_node_ids=[f[1] for f in failures])


def read_trace(path: str | os.PathLike[str]) -> Trace:
    """Read and validate a trace CSV.

    Args:
        path: the file.

    Returns:
        The trace, arrivals sorted by time.

    Raises:
        TraceError: the file is unreadable or malformed (the message names the line).
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return _build(_rows_of(csv.reader(f)))
    except (OSError, UnicodeDecodeError) as e:
        raise TraceError(f"cannot read trace {os.fspath(path)!r}: {e}") from e
    except csv.Error as e:
        raise TraceError(f"malformed CSV: {e}") from e


def _cells(row: TraceRow | Mapping[str, Any] | Sequence[Any]) -> list[str]:
    if isinstance(row, Mapping):
        row = TraceRow(**row)
    elif not isinstance(row, TraceRow):
        row = TraceRow(*row)
    duration = "" if row.duration_s is None else repr(float(row.duration_s))
    text = ["" if v is None else str(v) for v in (row.job_id, row.node_id, row.detail)]
    return [row.event, repr(float(row.t_s)), duration, *text]


def write_trace(path: str | os.PathLike[str] | TextIO,
                rows: Iterable[TraceRow | Mapping[str, Any] | Sequence[Any]]) -> int:
    """Write a trace CSV, validating every row as :func:`read_trace` would.

    Args:
        path: a file path, or an open text stream (e.g. ``sys.stdout``).
        rows: :class:`TraceRow` s (or mappings / sequences of the same fields); the first must be
            the ``meta`` row (see :func:`meta_row`).

    Returns:
        The number of rows written (the header excluded).

    Raises:
        TraceError: a row that does not follow the format (nothing is written to a path then).
    """
    table = [list(TRACE_COLUMNS)] + [_cells(r) for r in rows]
    _build(_rows_of(table))  # the same checks as the reader, before anything is written
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(table)
    if isinstance(path, (str, os.PathLike)):
        with open(path, "w", newline="", encoding="utf-8") as f:
            f.write(buffer.getvalue())
    else:
        path.write(buffer.getvalue())
    return len(table) - 1
