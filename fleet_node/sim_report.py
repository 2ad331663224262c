"""The sim-vs-real part of a result bundle: sim_vs_real.json, its overlay plot, the calibration used.

:func:`sim_vs_real_extra` makes a hook for :func:`fleet_node.bundle.build_bundle`: it writes
``sim_vs_real.json`` (:func:`gym_raas_mqtt.calibration.sim_vs_real.compare`),
``sim_vs_real.png`` (θ recorded and replayed, and |Δθ| against the threshold) and
``calibration.toml`` (the calibration replayed, so a researcher can run the report again on the
downloaded bundle) and returns the report's digest for ``summary.json``. matplotlib (Agg, no
pyplot) is imported only by :func:`render_overlay`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from gym_raas_mqtt.calibration import dump_calibration
from gym_raas_mqtt.calibration.sim_vs_real import (DIVERGED_RAD, JSON_FILE, PNG_FILE,
                                                   EpisodeReplay, compare, digest, replay)
from gym_raas_mqtt.physics import PendulumParams
from gym_raas_mqtt.results import Telemetry, wrap_angle

BUNDLE_CALIBRATION_FILE = "calibration.toml"
BundleExtra = Callable[[Path, Telemetry], Mapping[str, Any]]
"""A bundle hook: writes its files into the bundle folder, returns fields for summary.json."""


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf) replaced by None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def sim_vs_real_extra(params: PendulumParams | None, calibration_text: str | None = None,
                      why_not: str | None = None) -> BundleExtra:
    """A :func:`~fleet_node.bundle.build_bundle` hook that adds the sim-vs-real report.

    Args:
        params: the calibration the motor node ran the job with; None: no report, the summary
            says ``why_not`` in ``sim_vs_real_error``.
        calibration_text: the calibration file's text for ``calibration.toml`` (default:
            ``params`` rendered).
        why_not: the reason there is no calibration.
    """
    def extra(out: Path, tel: Telemetry) -> Mapping[str, Any]:
        if params is None:
            return {"sim_vs_real_error": why_not or "the node's calibration is unknown"}
        try:
            replays = replay(tel, params)
            report = finite(compare(tel, params, replays))
        except (ValueError, ArithmeticError) as e:  # never lose the bundle over its report
            return {"sim_vs_real_error": f"sim-vs-real report failed: {e}"}
        (out / JSON_FILE).write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
        (out / BUNDLE_CALIBRATION_FILE).write_text(calibration_text or dump_calibration(params))
        fields: dict[str, Any] = {"sim_vs_real": finite(digest(report))}
        try:
            render_overlay(replays, out / PNG_FILE, report["threshold_rad"])
        except ImportError:
            fields["sim_vs_real_plot_error"] = "matplotlib is not installed"
        return fields
    return extra


def render_overlay(replays: Sequence[EpisodeReplay], path: str | Path,
                   threshold_rad: float = DIVERGED_RAD, title: str = "") -> Path:
    """Draw θ recorded vs replayed (wrapped, rad) and |Δθ| (rad, log scale, with the
    divergence threshold) against time, episodes laid end to end, into a PNG.

    Raises:
        ImportError: matplotlib is not installed.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # no pyplot: no global state, thread-safe

    fig = Figure(figsize=(9, 5.5), dpi=100)
    ax_theta, ax_err = fig.subplots(2, 1, sharex=True)
    offset = 0.0
    for i, r in enumerate(replays):
        t = offset + np.arange(len(r.error)) * r.dt
        ax_theta.plot(t, wrap_angle(r.theta_real), lw=0.9, color="tab:blue",
                      label="recorded" if i == 0 else None)
        ax_theta.plot(t, wrap_angle(r.theta_sim), lw=0.9, ls="--", color="tab:orange",
                      label="simulated (applied actions)" if i == 0 else None)
        ax_err.semilogy(t, np.maximum(np.abs(r.error), 1e-9), lw=0.8, color="tab:red")
        if i:
            for ax in (ax_theta, ax_err):
                ax.axvline(offset, ls=":", color="grey", lw=0.8)
        offset = float(t[-1]) + r.dt if len(t) else offset
    ax_theta.set_ylabel("θ [rad]")
    ax_theta.legend(loc="upper right", fontsize="small")
    ax_err.axhline(threshold_rad, color="black", lw=0.8, ls="--")
    ax_err.set_ylabel("|θ_sim − θ_real| [rad]")
    ax_err.set_xlabel("time [s] (episodes end to end)")
    for ax in (ax_theta, ax_err):
        ax.grid(alpha=0.3)
    ax_theta.set_title(title or "sim vs real: the job's applied actions replayed in the model")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path
