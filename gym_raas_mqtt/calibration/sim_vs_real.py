"""Sim-vs-real report of a job: replaying its applied actions in the simulator against what the pendulum did.

For each episode of a job's telemetry the simulator (:func:`gym_raas_mqtt.physics.step`, the
node's integrator, one step per control period ``params.dt``) starts from the episode's first
recorded state (θ, θ̇) and is driven open-loop by the recorded **applied** actions (``u_applied``,
what the motor got after clamping and safety). Row k of the telemetry holds the state before
action k, so the simulated state after k actions is compared with row k. The model is then refit
from the same telemetry (:mod:`gym_raas_mqtt.calibration.sysid`) and the fitted coefficients are
reported against the calibration's. Only numpy is needed: a researcher runs it on a downloaded
bundle (``python -m gym_raas_mqtt.calibration.sim_vs_real BUNDLE CALIBRATION.toml``).

``sim_vs_real.json`` (:func:`compare`), every angle wrapped to [−π, π) before comparing:

=============================  =================================================================
``schema``                     :data:`SCHEMA`
``calibration_id``             the calibration replayed (and its file's ``calibration_sha256``)
``model_dt_s``                 the simulator's step [s]; ``telemetry_period_s`` the recorded one
``threshold_rad``              |Δθ| above which a replay counts as diverged [rad]
``horizons``                   ``[{horizon_s, rms_theta_error_rad, episodes}]``: RMS of
                               θ_sim − θ_real over the first ``horizon_s`` [s] of every episode
                               at least that long (``episodes``; null when none is) [rad]
``time_to_diverge_s``          ``{median, min}`` over the episodes that diverged: time from the
                               episode start until |Δθ| first exceeds the threshold [s];
                               ``episodes_diverged`` of ``episodes``
``max_abs_theta_error_rad``    the largest |Δθ| of any episode [rad]
``per_episode``                ``[{episode_id, steps, duration_s, rms_theta_error_rad`` (one per
                               horizon, null past the episode's end), ``time_to_diverge_s`` (null:
                               never), ``max_abs_theta_error_rad}]``
``refit``                      ``{ok: true, transitions, r2, rmse_rad_s2, excluded, parameters:
                               [{name, unit, calibration, fitted, delta, delta_pct, stderr}]}``
                               for a (gravity_coeff, 1/s²), b (action_gain, rad/s² per u), c
                               (damping, 1/s); ``{ok: false, error}`` when the telemetry cannot
                               identify the model
=============================  =================================================================
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from gym_raas_mqtt import physics
from gym_raas_mqtt.calibration import load_calibration
from gym_raas_mqtt.calibration.sysid import SysIdError, fit, telemetry_columns
from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.physics import PendulumParams
from gym_raas_mqtt.results import (Telemetry, control_period, episode_slices, load_telemetry,
                                   wrap_angle)

SCHEMA = 1
"""Version of the ``sim_vs_real.json`` layout."""
JSON_FILE = "sim_vs_real.json"
PNG_FILE = "sim_vs_real.png"
HORIZONS_S = (0.25, 0.5, 1.0, 2.0, 5.0)
"""Horizons of the RMS θ error [s]."""
DIVERGED_RAD = 0.2
"""|θ_sim − θ_real| above which the replay has diverged [rad]."""
REFIT_PARAMETERS = (("gravity_coeff", "1/s²"), ("action_gain", "rad/s² per u"),
                    ("damping", "1/s"))
"""The coefficients the refit estimates, with their units."""


@dataclass(frozen=True)
class EpisodeReplay:
    """One episode replayed.

    Attributes:
        episode_id: the episode's id in the telemetry.
        theta_real: float64 (n,) recorded θ [rad] (unwrapped).
        theta_sim: float64 (n,) simulated θ [rad] after the same number of applied actions.
        error: float64 (n,) wrap(θ_sim − θ_real) [rad]; ``error[0]`` is 0 by construction.
        dt: the simulator's step [s]; sample k is at k·dt from the episode start.
    """

    episode_id: int
    theta_real: np.ndarray
    theta_sim: np.ndarray
    error: np.ndarray
    dt: float

    def rms_until(self, horizon_s: float) -> float | None:
        """RMS of :attr:`error` over samples 1..⌊horizon/dt⌋ [rad]; None when the episode ends
        earlier."""
        k = int(math.floor(horizon_s / self.dt + 1e-9))
        if k < 1 or k >= len(self.error):
            return None
        return float(np.sqrt(np.mean(self.error[1:k + 1] ** 2)))

    def time_to_diverge_s(self, threshold_rad: float = DIVERGED_RAD) -> float | None:
        """Time [s] of the first sample with |error| > ``threshold_rad``; None if none."""
        over = np.flatnonzero(np.abs(self.error) > threshold_rad)
        return float(over[0] * self.dt) if len(over) else None


def replay_episode(params: PendulumParams, theta: np.ndarray, theta_dot0: float,
                   u_applied: np.ndarray, episode_id: int = 0) -> EpisodeReplay:
    """Replay one episode open-loop from its first recorded state.

    Args:
        params: the model (the node's calibration).
        theta: float64 (n,) recorded θ [rad]; ``theta[0]`` is the initial state.
        theta_dot0: the recorded initial θ̇ [rad/s].
        u_applied: float64 (n,) applied actions; action k moves sample k to sample k+1.
        episode_id: carried into the result.
    """
    n = len(theta)
    sim = np.empty(n)
    th, thd = float(theta[0]), float(theta_dot0)
    for k in range(n):
        sim[k] = th
        th, thd = physics.step(params, th, thd, float(u_applied[k]))
    return EpisodeReplay(episode_id, np.asarray(theta, float), sim,
                         wrap_angle(sim - np.asarray(theta, float)), params.dt)


def replay(tel: Telemetry, params: PendulumParams) -> list[EpisodeReplay]:
    """:func:`replay_episode` for every episode of ``tel`` with finite samples."""
    out = []
    for episode_id, s in episode_slices(tel):
        theta, u = tel.theta[s], tel.u_applied[s]
        ok = np.isfinite(theta) & np.isfinite(u) & np.isfinite(tel.theta_dot[s])
        if not ok.all():  # a gap in the record: replay the clean prefix only
            theta, u = theta[:int(np.argmin(ok))], u[:int(np.argmin(ok))]
        if len(theta):
            out.append(replay_episode(params, theta, float(tel.theta_dot[s][0]), u, episode_id))
    return out


def _refit(tel: Telemetry, params: PendulumParams) -> dict[str, Any]:
    try:
        r = fit([telemetry_columns(tel)], params)
    except SysIdError as e:
        return {"ok": False, "error": str(e)}
    rows = []
    for (name, unit), fitted, se in zip(REFIT_PARAMETERS, r.coefficients, r.stderr):
        base = getattr(params, name)
        rows.append({"name": name, "unit": unit, "calibration": base, "fitted": fitted,
                     "delta": fitted - base,
                     "delta_pct": 100.0 * (fitted - base) / base if base else None,
                     "stderr": se})
    return {"ok": True, "transitions": r.used, "r2": r.r2, "rmse_rad_s2": r.rmse,
            "excluded": r.excluded, "parameters": rows}


def compare(tel: Telemetry, params: PendulumParams,
            replays: Sequence[EpisodeReplay] | None = None,
            horizons_s: Sequence[float] = HORIZONS_S,
            threshold_rad: float = DIVERGED_RAD) -> dict[str, Any]:
    """The content of ``sim_vs_real.json`` (fields in the module docstring).

    Args:
        tel: the job's telemetry.
        params: the calibration the node ran with.
        replays: :func:`replay` of ``tel`` if already computed.
        horizons_s: horizons of the RMS error [s].
        threshold_rad: divergence threshold [rad].
    """
    replays = replay(tel, params) if replays is None else replays
    per_episode = []
    for r in replays:
        per_episode.append({
            "episode_id": r.episode_id, "steps": len(r.error),
            "duration_s": len(r.error) * r.dt,
            "rms_theta_error_rad": [r.rms_until(h) for h in horizons_s],
            "time_to_diverge_s": r.time_to_diverge_s(threshold_rad),
            "max_abs_theta_error_rad": float(np.max(np.abs(r.error))),
        })
    horizons = []
    for h in horizons_s:
        k = int(math.floor(h / params.dt + 1e-9))
        errs = [r.error[1:k + 1] for r in replays if r.rms_until(h) is not None]
        pooled = np.concatenate(errs) if errs else np.zeros(0)
        horizons.append({"horizon_s": h, "episodes": len(errs),
                         "rms_theta_error_rad": (float(np.sqrt(np.mean(pooled ** 2)))
                                                 if len(pooled) else None)})
    diverged = [e["time_to_diverge_s"] for e in per_episode if e["time_to_diverge_s"] is not None]
    return {
        "schema": SCHEMA,
        "calibration_id": params.calibration_id,
        "calibration_sha256": params.calibration_sha256 or None,
        "model_dt_s": params.dt,
        "telemetry_period_s": control_period(tel),
        "threshold_rad": threshold_rad,
        "horizons": horizons,
        "time_to_diverge_s": {"median": float(np.median(diverged)) if diverged else None,
                              "min": min(diverged) if diverged else None,
                              "episodes_diverged": len(diverged), "episodes": len(replays)},
        "max_abs_theta_error_rad": max((e["max_abs_theta_error_rad"] for e in per_episode),
                                       default=None),
        "per_episode": per_episode[:1000],
        "refit": _refit(tel, params),
    }


def digest(report: dict[str, Any]) -> dict[str, Any]:
    """The few numbers of a report that go into ``summary.json`` (and the job page): RMS per
    horizon, divergence, and the refit's deltas."""
    refit = report["refit"]
    return {
        "rms_theta_error_rad": {f"{h['horizon_s']:g}": h["rms_theta_error_rad"]
                                for h in report["horizons"]},
        "time_to_diverge_s": report["time_to_diverge_s"],
        "threshold_rad": report["threshold_rad"],
        "max_abs_theta_error_rad": report["max_abs_theta_error_rad"],
        "refit": ({p["name"]: {"calibration": p["calibration"], "fitted": p["fitted"],
                               "delta_pct": p["delta_pct"]} for p in refit["parameters"]}
                  if refit["ok"] else {"error": refit["error"]}),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gym_raas_mqtt.calibration.sim_vs_real BUNDLE [CALIBRATION.toml]``: print the
    report of a downloaded bundle as JSON (the calibration defaults to the bundle's
    ``calibration.toml``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (1, 2):
        print("usage: python -m gym_raas_mqtt.calibration.sim_vs_real BUNDLE [CALIBRATION.toml]",
              file=sys.stderr)
        return 2
    bundle = args[0]
    try:
        params = load_calibration(args[1] if len(args) == 2 else f"{bundle}/calibration.toml")
        report = compare(load_telemetry(bundle), params)
    except RaasError as e:
        print(f"sim_vs_real: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
