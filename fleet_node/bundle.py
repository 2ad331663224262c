"""Building a job execution's result bundle on the node: summary, telemetry, output and plot.

The layout and the readers are :mod:`gym_raas_mqtt.results` (what researchers use on a downloaded
bundle); this module writes bundles and uploads them. matplotlib (Agg, no pyplot) is imported only
by :func:`render_plot`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import raas_platform

from gym_raas_mqtt.results import (PLOT_FILE, STDOUT_FILE, SUMMARY_FILE, SUMMARY_SCHEMA,
                                   TELEMETRY_FILE, UPRIGHT_RAD, ResultError, Telemetry,
                                   end_to_end_time, read_telemetry_csv, result_prefix,
                                   summarize_telemetry, wrap_angle)


def build_summary(*, job_id: str, owner: str, node_id: str, state: str, reason: str | None,
                  telemetry: Telemetry, execution: int = 1, duration_s: float | None = None,
                  time_limit_s: float | None = None, started_at: float | None = None,
                  finished_at: float | None = None, commit_sha: str | None = None,
                  image_digest: str | None = None, calibration_id: str | None = None,
                  calibration_sha256: str | None = None, exit_code: int | None = None,
                  output_truncated: bool = False, extra: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
    """The content of ``summary.json``: the job's identity and outcome — with what ran it: the
    commit, the runner image, the platform's version, the calibration's id and file hash — plus
    :func:`summarize_telemetry`'s numbers. Times in s since the epoch; durations in s."""
    summary: dict[str, Any] = {
        "schema": SUMMARY_SCHEMA,
        "job_id": job_id, "owner": owner, "node_id": node_id, "execution": execution,
        "state": state, "reason": reason,
        "commit_sha": commit_sha, "image_digest": image_digest, "calibration_id": calibration_id,
        "calibration_sha256": calibration_sha256, "platform_version": raas_platform.__version__,
        "time_limit_s": time_limit_s, "duration_s": duration_s,
        "started_at": started_at, "finished_at": finished_at,
        "exit_code": exit_code, "output_truncated": output_truncated,
    }
    summary.update(summarize_telemetry(telemetry))
    if extra:
        summary.update(extra)
    return summary


def build_bundle(out_dir: str | Path, *, telemetry_path: str | Path | None,
                 stdout_path: str | Path | None, plot: bool = True,
                 extras: Sequence[Callable[[Path, Telemetry], Mapping[str, Any]]] = (),
                 **summary_fields: Any) -> dict[str, Any]:
    """Write a bundle folder: summary.json, telemetry.csv, stdout.log and (if possible) plot.png.

    Args:
        out_dir: the bundle folder (created; existing files are replaced).
        telemetry_path: the motor node's CSV for this job, or None when nothing was recorded.
        stdout_path: the captured output, or None.
        plot: render plot.png (skipped with a note in the summary if matplotlib is missing).
        extras: hooks called with (the folder, the telemetry) when there is telemetry: each
            writes its own files and returns fields for the summary
            (e.g. :func:`fleet_node.sim_report.sim_vs_real_extra`).
        **summary_fields: keyword arguments of :func:`build_summary` except ``telemetry``.

    Returns:
        The summary written. A malformed telemetry file does not stop the bundle: the summary
        then says so in ``telemetry_error`` and the raw file is still included.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tel, tel_error = Telemetry.empty(), None
    if telemetry_path is not None and Path(telemetry_path).is_file():
        shutil.copyfile(telemetry_path, out / TELEMETRY_FILE)
        try:
            tel = read_telemetry_csv(out / TELEMETRY_FILE)
        except ResultError as e:
            tel_error = str(e)
    else:
        tel_error = "no telemetry recorded"
    if stdout_path is not None and Path(stdout_path).is_file():
        shutil.copyfile(stdout_path, out / STDOUT_FILE)
    else:
        (out / STDOUT_FILE).write_bytes(b"")
    extra = dict(summary_fields.pop("extra", None) or {})
    if tel_error:
        extra["telemetry_error"] = tel_error
    if plot and len(tel):
        try:
            render_plot(tel, out / PLOT_FILE, title=f"job {summary_fields.get('job_id', '')}")
        except ImportError:
            extra["plot_error"] = "matplotlib is not installed"
    for add in extras if len(tel) else ():
        extra.update(add(out, tel))
    summary = build_summary(telemetry=tel, extra=extra, **summary_fields)
    _write_json_atomic(out / SUMMARY_FILE, summary)
    return summary


def _write_json_atomic(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, allow_nan=False, default=str)
        f.write("\n")
    os.replace(tmp, path)


_CONTENT_TYPES = {SUMMARY_FILE: "application/json", TELEMETRY_FILE: "text/csv",
                  STDOUT_FILE: "text/plain; charset=utf-8", PLOT_FILE: "image/png"}
_SUFFIX_TYPES = {".json": "application/json", ".png": "image/png", ".sig": "text/plain",
                 ".toml": "text/plain; charset=utf-8"}  # files the bundle hooks add


def upload_bundle(store: Any, job_id: str, folder: str | Path) -> str:
    """Upload a bundle folder to ``store`` (an :class:`~raas_platform.storage.ObjectStore`).

    summary.json goes last, so a reader who finds it finds the whole bundle.

    Returns:
        The bundle's key prefix (``results/<job_id>/``).

    Raises:
        StorageError: an upload failed.
    """
    prefix = result_prefix(job_id)
    files = sorted(Path(folder).iterdir(), key=lambda p: (p.name == SUMMARY_FILE, p.name))
    for path in files:
        if path.is_file() and not path.name.startswith("."):
            ctype = _CONTENT_TYPES.get(path.name) or _SUFFIX_TYPES.get(path.suffix)
            store.put_file(prefix + path.name, path, content_type=ctype)
    return prefix


def render_plot(tel: Telemetry, path: str | Path, title: str = "") -> Path:
    """Draw θ (wrapped), θ̇, desired/applied action and reward against time into a PNG.

    Episodes are laid end to end; dotted lines mark where a new one starts.

    Raises:
        ImportError: matplotlib is not installed.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # no pyplot: no global state, thread-safe

    time_axis, starts = end_to_end_time(tel)
    fig = Figure(figsize=(9, 8), dpi=100)
    axes = fig.subplots(4, 1, sharex=True)
    axes[0].plot(time_axis, wrap_angle(tel.theta), lw=0.8)
    axes[0].axhspan(-UPRIGHT_RAD, UPRIGHT_RAD, color="tab:green", alpha=0.15, lw=0)
    axes[0].set_ylabel("θ [rad]")
    axes[1].plot(time_axis, tel.theta_dot, lw=0.8)
    axes[1].set_ylabel("θ̇ [rad/s]")
    axes[2].plot(time_axis, tel.u_desired, lw=0.8, label="desired")
    axes[2].plot(time_axis, tel.u_applied, lw=0.8, label="applied")
    axes[2].set_ylabel("action u")
    axes[2].legend(loc="upper right", fontsize="small")
    axes[3].plot(time_axis, tel.reward, lw=0.8, color="tab:red")
    axes[3].set_ylabel("reward")
    axes[3].set_xlabel("time [s] (episodes end to end)")
    for ax in axes:
        ax.grid(alpha=0.3)
        for x in starts[1:]:
            ax.axvline(x, ls=":", color="grey", lw=0.8)
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path
