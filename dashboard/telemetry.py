"""A finished job's telemetry as chart columns: reading the bundle's telemetry.csv, decimating it.

The chart component (``static/chart.js``) draws θ, θ̇, action and reward against one time axis
with episodes laid end to end (:func:`~gym_raas_mqtt.results.end_to_end_time`, as plot.png does).
Long records are cut down to a point budget with :func:`decimate_minmax`, which keeps every
bucket's minimum and maximum so that a one-sample spike still shows.
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from dashboard import jobs
from dispatcher.models import Job
from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.protocol import JobState
from gym_raas_mqtt.results import (TELEMETRY_FILE, UPRIGHT_RAD, ResultError, Telemetry,
                                   end_to_end_time, read_telemetry_csv, wrap_angle)
from raas_platform.storage import ObjectNotFound, StorageError

VALUE_COLUMNS = ("theta", "theta_dot", "u_desired", "u_applied", "reward")
"""Columns a chart may ask for (``t`` always comes along): θ wrapped to [-π, π) [rad], θ̇ [rad/s],
desired and applied action (N·m-equivalent), reward."""
DEFAULT_MAX_POINTS = 4000
MAX_POINTS_RANGE = (16, 50_000)
MAX_MARKERS = 10_000
"""Deadline-miss and episode-start markers sent at most (the first ones)."""
DECIMALS = 6  # µrad, µs: far below what a chart can show, and a third of the JSON
CACHED_CHARTS = 32
"""Chart payloads kept in memory: a finished job's bundle does not change, and parsing its CSV
costs ~40 ms per 1 000 rows (the compare page asks for up to eight at once)."""
_cache: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
_cache_lock = threading.Lock()


class TelemetryUnavailable(RaasError):
    """The job has no telemetry to chart (yet); ``status`` and ``error`` say which HTTP answer."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason = status, error, reason


def parse_columns(raw: str | None) -> tuple[str, ...]:
    """The value columns named in a ``columns=a,b`` query (all of them when absent).

    Raises:
        ValueError: an unknown or repeated column, or an empty list.
    """
    if raw is None:
        return VALUE_COLUMNS
    names = tuple(c.strip() for c in raw.split(",") if c.strip())
    unknown = [c for c in names if c not in VALUE_COLUMNS and c != "t"]
    if unknown:
        raise ValueError(f"unknown column {unknown[0][:40]!r}; choose from t, "
                         + ", ".join(VALUE_COLUMNS))
    names = tuple(c for c in names if c != "t")
    if not names:
        raise ValueError("name at least one column besides t")
    if len(set(names)) != len(names):
        raise ValueError("a column is named twice")
    return names


def decimate_minmax(x: np.ndarray, columns: dict[str, np.ndarray],
                    max_points: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Cut aligned columns down to at most ``max_points`` rows, keeping each bucket's extremes.

    The rows are split into ``max_points // 2`` buckets of consecutive samples (each holds at
    least two, as N > ``max_points``). Each bucket becomes two rows at its first and last ``x``;
    for every column, the first row holds whichever of its minimum and maximum occurs first in
    the bucket, the second row the other one. So every column's global minimum and maximum
    survive, in their order, while ``x`` moves by less than a bucket.

    Args:
        x: float64 (N,) strictly increasing (s).
        columns: name → float64 (N,) values aligned with ``x``.
        max_points: the row budget (≥ 2).

    Returns:
        ``(x, columns)`` unchanged when N ≤ ``max_points``, else with ``max_points // 2 * 2`` rows.
    """
    n = len(x)
    if n <= max_points:
        return x, columns
    edges = np.linspace(0, n, max_points // 2 + 1).astype(np.int64)
    starts, stops = edges[:-1], edges[1:]
    out_x = _interleave(x[starts], x[stops - 1])
    out: dict[str, np.ndarray] = {}
    for name, values in columns.items():
        imin = _bucket_arg(values, starts, stops, np.fmin)
        imax = _bucket_arg(values, starts, stops, np.fmax)
        out[name] = _interleave(values[np.minimum(imin, imax)], values[np.maximum(imin, imax)])
    return out_x, out


def _bucket_arg(values: np.ndarray, starts: np.ndarray, stops: np.ndarray,
                extreme_of: Any) -> np.ndarray:
    """Index (into ``values``) of the first sample in each bucket equal to the bucket's extreme.

    ``extreme_of`` is ``np.fmin`` or ``np.fmax`` (they skip NaN); a bucket of NaN only points at
    its first sample. The buckets tile ``values`` from index 0 to the end.
    """
    extreme = extreme_of.reduceat(values, starts)
    bucket = np.repeat(np.arange(len(starts)), stops - starts)
    hits = np.flatnonzero(values == extreme[bucket])
    found = np.minimum(np.searchsorted(hits, starts), max(len(hits) - 1, 0))
    first = hits[found] if len(hits) else starts.copy()
    return np.where((first >= starts) & (first < stops), first, starts)


def _interleave(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a0, b0, a1, b1, ...`` for equally long ``a`` and ``b``."""
    return np.stack([a, b], axis=1).reshape(-1)


def load_job_telemetry(job: Job) -> Telemetry:
    """The telemetry of ``job``'s result bundle.

    Raises:
        TelemetryUnavailable: 409 while the job has not ended, 404 when its bundle has no
            telemetry, 422 when the file is malformed, 503 when the store fails.
    """
    if not JobState(job.state).terminal:
        raise TelemetryUnavailable(409, "conflict", f"job {job.id} is {job.state}: its telemetry "
                                   "is charted from the result bundle once it ended (follow it "
                                   "live on /stream meanwhile)")
    key = jobs.result_prefix(job) + TELEMETRY_FILE
    with tempfile.TemporaryDirectory(prefix="raas-chart-") as tmp:
        try:
            path = jobs.store().get_file(key, Path(tmp) / TELEMETRY_FILE)
        except ObjectNotFound:
            raise TelemetryUnavailable(404, "not_found", f"job {job.id} ended ({job.state}) "
                                       "without recorded telemetry") from None
        except StorageError as e:
            raise TelemetryUnavailable(503, "unavailable", f"the result store failed: {e}") from e
        try:
            return read_telemetry_csv(path)
        except ResultError as e:  # named by file, not by this server's temporary path
            raise TelemetryUnavailable(422, "unprocessable", "the bundle's telemetry is "
                                       f"malformed: {str(e).replace(str(path), TELEMETRY_FILE)}"
                                       ) from None


def job_chart(job: Job, names: tuple[str, ...], max_points: int) -> dict[str, Any]:
    """:func:`chart_payload` of ``job``'s bundle, from memory when it was asked for recently.

    Raises:
        TelemetryUnavailable: as :func:`load_job_telemetry` (refusals are not kept).
    """
    key = (jobs.store().url, job.id, job.result_key, job.state, names, max_points)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    payload = chart_payload(job, load_job_telemetry(job), names, max_points)
    with _cache_lock:
        _cache[key] = payload
        while len(_cache) > CACHED_CHARTS:
            _cache.popitem(last=False)
    return payload


def chart_payload(job: Job, tel: Telemetry, names: tuple[str, ...],
                  max_points: int) -> dict[str, Any]:
    """What ``GET /api/v1/jobs/{id}/telemetry`` answers: decimated columns plus markers.

    Args:
        job: the job (for its id).
        tel: its telemetry.
        names: value columns to include (from :func:`parse_columns`).
        max_points: row budget for the columns.

    Returns:
        ``{"job_id", "samples": N recorded, "points": rows sent, "decimated",
        "columns": {"t": [s], name: [...]}, "episode_starts": [s], "deadline_misses": [s],
        "upright_rad"}``; times on the end-to-end axis (s).
    """
    x, starts = end_to_end_time(tel)
    source = {"theta": wrap_angle(tel.theta), "theta_dot": tel.theta_dot,
              "u_desired": tel.u_desired, "u_applied": tel.u_applied, "reward": tel.reward}
    out_x, cols = decimate_minmax(x, {n: source[n] for n in names}, max_points)
    misses = x[tel.deadline_miss]
    return {
        "job_id": job.id, "samples": len(tel), "points": len(out_x),
        "decimated": len(out_x) < len(tel),
        "columns": {"t": _json_floats(out_x)} | {n: _json_floats(v) for n, v in cols.items()},
        "episode_starts": [round(s, DECIMALS) for s in starts[:MAX_MARKERS]],
        "deadline_misses": _json_floats(misses[:MAX_MARKERS]),
        "deadline_miss_count": int(len(misses)),
        "upright_rad": UPRIGHT_RAD,
    }


def _json_floats(values: np.ndarray) -> list[float | None]:
    """Rounded floats for JSON; NaN and ±inf (not JSON) become null (a gap in the chart)."""
    rounded = np.round(np.asarray(values, np.float64), DECIMALS)
    finite = np.isfinite(rounded)
    if finite.all():
        return rounded.tolist()
    return [v if ok else None for v, ok in zip(rounded.tolist(), finite.tolist())]
