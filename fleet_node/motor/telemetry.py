"""Per-step telemetry of a job: the CSV file the result bundle is built from, and live batches.

The motor node records every step it serves while a job is bound (never the user's code): one CSV
row per step in ``${RAAS_DATA_DIR}/telemetry/<job_id>.csv`` with the columns
:data:`gym_raas_mqtt.protocol.TELEMETRY_COLUMNS` plus ``episode_id`` (plus, in a job's file,
:data:`NEXT_COLUMNS`: the observation after the step, which the controller saw), and a
:class:`~gym_raas_mqtt.protocol.TelemetryBatch` every ``batch`` steps for live display.
Floats are written with ``repr`` so :func:`read_telemetry` gives back the exact float64 values.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gym_raas_mqtt.protocol import TELEMETRY_COLUMNS, TelemetryBatch, check_id

log = logging.getLogger(__name__)

FILE_COLUMNS = TELEMETRY_COLUMNS + ("episode_id",)
"""Header of a telemetry file, in order."""
NEXT_COLUMNS = ("theta_next", "theta_dot_next")
"""Appended to :data:`FILE_COLUMNS` in a job's file: θ [rad] and θ̇ [rad/s] observed after the
step. The row's own θ is the state before it (what the reward is computed from); the controller
judges "upright" by the observation it gets back, so the platform's figures need both."""
_INT_COLUMNS = {"seq", "episode_id"}
_BOOL_COLUMNS = {"deadline_miss"}

Row = tuple[Any, ...]
"""One step: seq, t [s], θ [rad], θ̇ [rad/s], desired u, applied u, reward, deadline miss, and
with ``next_observation`` the θ [rad], θ̇ [rad/s] observed after the step."""


def telemetry_path(data_dir: Path, job_id: str) -> Path:
    """Where the telemetry of ``job_id`` is written (``<data_dir>/telemetry/<job_id>.csv``)."""
    return Path(data_dir) / "telemetry" / f"{check_id(job_id, 'job_id')}.csv"


class TelemetryRecorder:
    """Writes one job's steps to its file and hands out batches; owned by the control loop thread.

    Args:
        path: the CSV file; appended to if it exists (a restarted motor node keeps the rows).
        job_id, owner, node_id: identify the job (the batch topic needs the owner).
        publish: called with each full :class:`TelemetryBatch` (must not block).
        batch: rows per batch and per file flush.
        next_observation: rows carry the observation after the step (:data:`NEXT_COLUMNS`).
    """

    def __init__(self, path: Path, job_id: str, owner: str, node_id: str,
                 publish: Callable[[TelemetryBatch], None], batch: int = 10,
                 next_observation: bool = False) -> None:
        self.path = Path(path)
        self.job_id = job_id
        self.owner = owner
        self.node_id = node_id
        self._publish = publish
        self._batch = batch
        self._columns = FILE_COLUMNS + (NEXT_COLUMNS if next_observation else ())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", newline="")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(self._columns)
            self._file.flush()
        self._rows: list[Row] = []
        self._episode: int | None = None
        self.rows_written = 0

    def record(self, episode_id: int, row: Row) -> None:
        """Add one step; a full batch (or a new episode) flushes the file and publishes."""
        if self._episode is not None and episode_id != self._episode:
            self.flush()
        self._episode = episode_id
        self._rows.append(row)
        if len(self._rows) >= self._batch:
            self.flush()

    def flush(self) -> None:
        """Write and publish what is buffered (no-op when empty)."""
        rows, self._rows = self._rows, []
        if not rows:
            return
        ep = self._episode or 0
        self._csv.writerows([(*(repr(v) if isinstance(v, float) else v for v in r[:7]),
                              int(r[7]), ep, *map(repr, r[8:])) for r in rows])
        self._file.flush()
        self.rows_written += len(rows)
        cols = list(zip(*rows))
        try:
            self._publish(TelemetryBatch(
                job_id=self.job_id, node_id=self.node_id, episode_id=ep,
                seq=cols[0], t=cols[1], theta=cols[2], theta_dot=cols[3], u_desired=cols[4],
                u_applied=cols[5], reward=cols[6], deadline_miss=tuple(bool(x) for x in cols[7])))
        except Exception:  # live telemetry is best effort; the file is the record
            log.exception("telemetry batch for job %s not published", self.job_id)

    def close(self) -> None:
        """Flush and close the file; idempotent."""
        if self._file.closed:
            return
        self.flush()
        self._file.close()


class JobTelemetry:
    """The job bound to the node (its ENV_JOB binding) and the recorder of that job's steps.

    Args:
        data_dir: where telemetry files go (see :func:`telemetry_path`).
        node_id: this node.
        batch: rows per batch and per file flush.
        publish: ``publish(owner, job_id, batch)`` sends a live batch (must not block).
    """

    def __init__(self, data_dir: Path, node_id: str, batch: int,
                 publish: Callable[[str, str, TelemetryBatch], None]) -> None:
        self.data_dir = data_dir
        self.node_id = node_id
        self.batch = batch
        self._publish = publish
        self.job_id: str | None = None
        self._recorder: TelemetryRecorder | None = None

    def bind(self, job_id: str | None, owner: str | None) -> bool:
        """Record the steps of ``job_id`` from now on (None: of no job).

        Returns:
            Whether the binding changed (the previous job's file is then closed).
        """
        if job_id == self.job_id:
            return False
        self.close()
        self.job_id = job_id
        if job_id is not None:
            self._recorder = TelemetryRecorder(
                telemetry_path(self.data_dir, job_id), job_id, owner or "unknown", self.node_id,
                self._publisher(job_id, owner), self.batch, next_observation=True)
        return True

    def _publisher(self, job_id: str, owner: str | None) -> Callable[[TelemetryBatch], None]:
        if owner is None:
            log.warning("job %s bound without an owner: telemetry recorded, not published", job_id)
            return lambda batch: None
        return lambda batch: self._publish(owner, job_id, batch)

    @property
    def recording(self) -> bool:
        """Whether steps are recorded (a job is bound): skip building rows otherwise."""
        return self._recorder is not None

    def record(self, episode_id: int, row: Row) -> None:
        """Add one step of the bound job (ignored when no job is bound)."""
        if self._recorder is not None:
            self._recorder.record(episode_id, row)

    def flush(self) -> None:
        """Write and publish the buffered steps (end of an episode)."""
        if self._recorder is not None:
            self._recorder.flush()

    def close(self) -> None:
        """Flush and close the bound job's file; the binding is kept."""
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None


def read_telemetry(path: str | Path) -> dict[str, np.ndarray]:
    """Read a telemetry file written by :class:`TelemetryRecorder`.

    Returns:
        One array per column of :data:`FILE_COLUMNS` (and :data:`NEXT_COLUMNS` when the file has
        them), all of length N (rows): ``seq`` and ``episode_id`` int64, ``deadline_miss`` bool,
        the rest float64 (exact values).

    Raises:
        ValueError: the header is neither of those or a row is malformed.
        OSError: the file cannot be read.
    """
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        names = tuple(header or ())
        if names not in (FILE_COLUMNS, FILE_COLUMNS + NEXT_COLUMNS):
            raise ValueError(f"{path}: header {header!r} is not {FILE_COLUMNS!r}")
        columns: list[list[str]] = [[] for _ in names]
        for lineno, row in enumerate(reader, start=2):
            if len(row) != len(names):
                raise ValueError(f"{path}:{lineno}: expected {len(names)} fields")
            for col, value in zip(columns, row):
                col.append(value)
    out: dict[str, np.ndarray] = {}
    for name, values in zip(names, columns):
        if name in _INT_COLUMNS:
            out[name] = np.array([int(v) for v in values], dtype=np.int64)
        elif name in _BOOL_COLUMNS:
            if any(v not in ("0", "1") for v in values):
                raise ValueError(f"{path}: {name} must be 0 or 1")
            out[name] = np.array([v == "1" for v in values], dtype=bool)
        else:
            out[name] = np.array([float(v) for v in values], dtype=np.float64)
    return out
