"""The result bundle of a job execution: its layout, how it is built, and how it is read back.

A bundle is the folder (or object-store prefix) ``results/<job_id>/`` holding:

==================  ==========================================================================
``summary.json``    outcome and key numbers (see :func:`build_summary`); schema ``SUMMARY_SCHEMA``
``telemetry.csv``   per-step samples recorded by the **motor node** (never by user code): columns
                    ``episode_id`` (optional) + :data:`~gym_raas_mqtt.protocol.TELEMETRY_COLUMNS`
``stdout.log``      the job's stdout/stderr as captured by the node (capped)
``plot.png``        θ, θ̇, desired/applied action and reward against time
``sim_vs_real.*``   the applied actions replayed in the simulator: report (``.json``) and overlay
                    (``.png``), with ``calibration.toml``, the calibration replayed
                    (:mod:`gym_raas_mqtt.calibration.sim_vs_real`)
``manifest.*``      SHA-256 of every file, signed by the node (:mod:`gym_raas_mqtt.bundle_signature`)
==================  ==========================================================================

Researchers load a downloaded bundle with :func:`load_summary` and :func:`load_telemetry`; the
dashboard and the demo use :func:`summarize_telemetry`; the node builds bundles with
:mod:`fleet_node.bundle`. Only numpy is needed here.
"""

from __future__ import annotations

import csv
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.protocol import TELEMETRY_COLUMNS, check_id

SUMMARY_SCHEMA = 1
SUMMARY_FILE = "summary.json"
TELEMETRY_FILE = "telemetry.csv"
STDOUT_FILE = "stdout.log"
PLOT_FILE = "plot.png"
UPRIGHT_RAD = 0.3
"""|θ| below which the pendulum counts as upright for ``seconds_upright`` (rad)."""
DEFAULT_DT_S = 0.05
"""Control period assumed when the telemetry has too few samples to measure it (s)."""
MAX_TELEMETRY_ROWS = 2_000_000
"""Rows read at most from a telemetry file (a 120 s job at 20 Hz has 2 400)."""


class ResultError(RaasError):
    """A bundle or telemetry file is missing or malformed."""


def result_prefix(job_id: str) -> str:
    """Object-store prefix of a job's bundle: ``results/<job_id>/``.

    Raises:
        ProtocolError: ``job_id`` is not a valid id.
    """
    return f"results/{check_id(job_id, 'job_id')}/"


# ------------------------------------------------------------------------------------------------
# Telemetry
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Telemetry:
    """Per-step telemetry as column arrays of equal length N.

    Attributes:
        episode_id: int64 (N,); inferred from ``seq`` restarts when the file has no such column.
        seq: int64 (N,) step number within the episode.
        t: float64 (N,) s since the episode started (motor clock).
        theta: float64 (N,) rad, 0 = upright, unwrapped.
        theta_dot: float64 (N,) rad/s.
        u_desired: float64 (N,) action asked for by the controller (N·m-equivalent).
        u_applied: float64 (N,) action the motor got after clamping and safety.
        reward: float64 (N,).
        deadline_miss: bool (N,) the control tick missed its deadline.
        theta_next: float64 (N,) rad observed after the step (what the controller saw), or None
            in files recorded without it (then ``theta`` of the next row stands in).
    """

    episode_id: np.ndarray
    seq: np.ndarray
    t: np.ndarray
    theta: np.ndarray
    theta_dot: np.ndarray
    u_desired: np.ndarray
    u_applied: np.ndarray
    reward: np.ndarray
    deadline_miss: np.ndarray
    theta_next: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.t)

    @classmethod
    def empty(cls) -> "Telemetry":
        """A record with no samples."""
        i, f = np.zeros(0, np.int64), np.zeros(0, np.float64)
        return cls(i, i, f, f, f, f, f, f, np.zeros(0, bool))


def _parse_bool(s: str) -> bool:
    return s.strip().lower() in ("1", "true", "yes")


def read_telemetry_csv(path: str | Path) -> Telemetry:
    """Read a telemetry CSV with a header row (extra columns are ignored).

    Raises:
        ResultError: the file is missing, lacks a column, or has a malformed row.
    """
    path = Path(path)
    try:
        f = open(path, newline="")
    except OSError as e:
        raise ResultError(f"cannot read telemetry {path}: {e}") from e
    with f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in TELEMETRY_COLUMNS if c not in header]
        if missing:
            raise ResultError(f"{path}: telemetry lacks column(s) {missing}")
        has_episode = "episode_id" in header
        has_next = "theta_next" in header
        cols: dict[str, list[Any]] = {c: [] for c in ("episode_id", "theta_next")
                                      + TELEMETRY_COLUMNS}
        for n, row in enumerate(reader, start=2):
            if n > MAX_TELEMETRY_ROWS + 1:
                raise ResultError(f"{path}: more than {MAX_TELEMETRY_ROWS} rows")
            try:
                cols["episode_id"].append(int(row["episode_id"]) if has_episode else 0)
                cols["seq"].append(int(row["seq"]))
                for c in ("t", "theta", "theta_dot", "u_desired", "u_applied", "reward"):
                    cols[c].append(float(row[c]))
                cols["deadline_miss"].append(_parse_bool(row["deadline_miss"]))
                if has_next:
                    cols["theta_next"].append(float(row["theta_next"]))
            except (TypeError, ValueError) as e:
                raise ResultError(f"{path}:{n}: malformed telemetry row ({e})") from None
    seq = np.asarray(cols["seq"], np.int64)
    episode = np.asarray(cols["episode_id"], np.int64)
    if not has_episode and len(seq):
        # A new episode starts wherever the step number goes back.
        episode = np.concatenate([[1], 1 + np.cumsum(np.diff(seq) <= 0)]).astype(np.int64)
    return Telemetry(
        episode_id=episode, seq=seq,
        **{c: np.asarray(cols[c], np.float64)
           for c in ("t", "theta", "theta_dot", "u_desired", "u_applied", "reward")},
        deadline_miss=np.asarray(cols["deadline_miss"], bool),
        theta_next=np.asarray(cols["theta_next"], np.float64) if has_next else None,
    )


def wrap_angle(theta: np.ndarray) -> np.ndarray:
    """θ normalised to [-π, π) (rad), element-wise."""
    return (np.asarray(theta) + np.pi) % (2 * np.pi) - np.pi


def episode_slices(tel: Telemetry) -> list[tuple[int, slice]]:
    """``(episode_id, slice of the samples)`` per episode, in recording order."""
    if len(tel) == 0:
        return []
    cuts = np.flatnonzero(np.diff(tel.episode_id) != 0) + 1
    bounds = np.concatenate([[0], cuts, [len(tel)]])
    return [(int(tel.episode_id[a]), slice(int(a), int(b))) for a, b in zip(bounds, bounds[1:])]


def control_period(tel: Telemetry) -> float:
    """The median interval between consecutive samples within episodes (s)."""
    diffs = [np.diff(tel.t[s]) for _, s in episode_slices(tel)]
    diffs = [d for d in diffs if len(d)]
    if not diffs:
        return DEFAULT_DT_S
    dt = float(np.median(np.concatenate(diffs)))
    return dt if dt > 0 and math.isfinite(dt) else DEFAULT_DT_S


def end_to_end_time(tel: Telemetry) -> tuple[np.ndarray, list[float]]:
    """One time axis for the whole record, episodes laid end to end (what plots show).

    Each episode's ``t`` restarts near 0; here episode k+1 starts one control period after
    episode k's last sample.

    Returns:
        ``(time, starts)``: float64 (N,) s since the first episode started, and the start of
        each episode on that axis (s), in recording order.
    """
    dt = control_period(tel)
    time_axis = np.empty(len(tel))
    starts: list[float] = []
    offset = 0.0
    for _, s in episode_slices(tel):
        t = tel.t[s] - tel.t[s][0]
        time_axis[s] = t + offset
        starts.append(offset)
        offset += float(t[-1]) + dt
    return time_axis, starts


def longest_upright_s(theta: np.ndarray, dt: float, threshold_rad: float = UPRIGHT_RAD) -> float:
    """Longest continuous time with |wrap(θ)| < ``threshold_rad`` within one episode (s).

    Counted as a controller counts it: the longest run of consecutive upright observations
    times the control period ``dt`` [s] (the motor clock's jitter does not enter).

    Args:
        theta: float64 (N,) rad, the observations after each step, in order.
    """
    best = run = 0
    for flag in np.abs(wrap_angle(theta)) < threshold_rad:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best * dt


def observed_theta(tel: Telemetry, s: slice) -> np.ndarray:
    """θ [rad] the controller observed after each step of the episode ``s`` (float64 (n,)).

    Files recorded without ``theta_next`` have only the state before each step, which stands in
    (one sample early).
    """
    return (tel.theta if tel.theta_next is None else tel.theta_next)[s]


def summarize_telemetry(tel: Telemetry) -> dict[str, Any]:
    """Key numbers of a telemetry record, as the controller saw them: the rewards it got, and
    upright time from the observation after each step (:func:`observed_theta`).

    Returns:
        ``{"return": Σ reward, "steps", "episodes", "deadline_misses", "seconds_upright"`` (the
        longest continuous |θ| < :data:`UPRIGHT_RAD` of any episode, s, rounded to 1 ms),
        ``"control_period_s"``,
        ``"max_abs_u_applied"``, ``"per_episode": [{episode_id, steps, return, seconds_upright}]}``.
    """
    dt = control_period(tel)
    per_episode = []
    for episode_id, s in episode_slices(tel):
        per_episode.append({
            "episode_id": episode_id,
            "steps": int(s.stop - s.start),
            "return": float(np.sum(tel.reward[s])),
            "seconds_upright": round(longest_upright_s(observed_theta(tel, s), dt), 3),
        })
    return {
        "return": float(np.sum(tel.reward)) if len(tel) else 0.0,
        "steps": len(tel),
        "episodes": len(per_episode),
        "deadline_misses": int(np.sum(tel.deadline_miss)),
        "seconds_upright": max((e["seconds_upright"] for e in per_episode), default=0.0),
        "control_period_s": round(dt, 6),
        "max_abs_u_applied": float(np.max(np.abs(tel.u_applied))) if len(tel) else 0.0,
        "per_episode": per_episode[:1000],
    }


# ------------------------------------------------------------------------------------------------
# Reading a bundle
# ------------------------------------------------------------------------------------------------
def _local_file(source: str | Path, name: str) -> Path:
    path = Path(source)
    return path / name if path.is_dir() else path


def load_summary(source: str | Path | Any, job_id: str | None = None) -> dict[str, Any]:
    """Read a bundle's summary.

    Args:
        source: a bundle folder, a summary.json path, or an object store (then give ``job_id``).

    Raises:
        ResultError: missing or not a JSON object.
        StorageError: the store failed (ObjectNotFound when there is no such bundle).
    """
    try:
        if job_id is not None:
            where = f"{source.url}{result_prefix(job_id)}{SUMMARY_FILE}"
            data = json.loads(source.get_bytes(result_prefix(job_id) + SUMMARY_FILE))
        else:
            where = str(_local_file(source, SUMMARY_FILE))
            data = json.loads(Path(where).read_text())
    except (OSError, ValueError) as e:
        raise ResultError(f"cannot read summary: {e}") from e
    if not isinstance(data, dict):
        raise ResultError(f"{where}: summary is not a JSON object")
    return data


def load_telemetry(source: str | Path | Any, job_id: str | None = None) -> Telemetry:
    """Read a bundle's telemetry (folder, CSV path, or object store + ``job_id``).

    Raises:
        ResultError: missing or malformed.
        StorageError: the store failed (ObjectNotFound when there is no such bundle).
    """
    if job_id is None:
        return read_telemetry_csv(_local_file(source, TELEMETRY_FILE))
    with tempfile.TemporaryDirectory(prefix="raas-bundle-") as tmp:
        path = source.get_file(result_prefix(job_id) + TELEMETRY_FILE, Path(tmp) / TELEMETRY_FILE)
        return read_telemetry_csv(path)


__all__ = ["Telemetry", "ResultError", "read_telemetry_csv", "summarize_telemetry",
           "load_summary", "load_telemetry", "result_prefix", "longest_upright_s", "wrap_angle",
           "observed_theta",
           "episode_slices", "control_period", "end_to_end_time", "UPRIGHT_RAD"]
