"""Per-robot calibration on the node: refit from telemetry files, calibration files, encoder procedures.

The least-squares fit itself is :mod:`gym_raas_mqtt.calibration.sysid` (researchers use it on a
downloaded bundle too); this module reads the motor node's telemetry files for it, writes the
refitted calibration file and its report. The encoder procedures (:func:`measure_counts`,
:func:`check_direction`) run on a :class:`~fleet_node.motor.pigpio_motor.PigpioMotor`;
``hardware/calibration.md`` is the how-to.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from fleet_node.motor.telemetry import read_telemetry
from gym_raas_mqtt.calibration import dump_calibration, params_from_mapping
from gym_raas_mqtt.calibration.sysid import FitResult, SysIdError, fit
from gym_raas_mqtt.physics import PendulumParams


def fit_files(paths: Sequence[str | Path], params: PendulumParams,
              dt: float | None = None) -> FitResult:
    """:func:`fit` over telemetry CSV files (header: TELEMETRY_COLUMNS + episode_id).

    Raises:
        SysIdError: a file is unreadable or malformed, or see :func:`fit`.
    """
    tables = []
    for p in paths:
        try:
            tables.append(read_telemetry(p))
        except (OSError, ValueError) as e:
            raise SysIdError(f"cannot read telemetry {p}: {e}") from e
    return fit(tables, params, dt)


def calibration_toml(base: PendulumParams, result: FitResult, new_id: str,
                     sources: Sequence[str] = ()) -> str:
    """The calibration file for ``base`` with the fitted a, b, c and id ``new_id``.

    Written by :func:`gym_raas_mqtt.calibration.dump_calibration`, followed by a ``[measured]``
    table with the fit statistics (ignored by the loader, kept for the record).

    Raises:
        ConfigError: ``new_id`` is not a valid id.
    """
    new = base.replace(gravity_coeff=result.gravity_coeff, action_gain=result.action_gain,
                       damping=result.damping, calibration_id=new_id)
    params_from_mapping({"id": new_id}, "--id")  # validates the id
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    notes = (f"a, b, c fitted {when} from {result.used} transitions "
             f"(R² {result.r2:.4f}); other fields from {base.calibration_id}")
    lines = [dump_calibration(new, notes=notes), "[measured]"]
    lines.append(f"fitted_at = \"{when}\"")
    lines.append(f"base_calibration = \"{base.calibration_id}\"")
    lines.append(f"transitions = {result.used}")
    lines.append(f"r2 = {result.r2!r}")
    lines.append(f"rmse_rad_s2 = {result.rmse!r}")
    lines.append("stderr_abc = [" + ", ".join(repr(s) for s in result.stderr) + "]")
    lines.append(f"dt = {result.dt!r}")
    if sources:
        lines.append("sources = [" + ", ".join(_q(Path(s).name) for s in sources) + "]")
    return "\n".join(lines) + "\n"


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def report(base: PendulumParams, r: FitResult) -> str:
    """Human-readable summary of a fit against the base calibration."""
    rows = [f"{'':16}{'base':>10}{'fitted':>12}{'± stderr':>11}"]
    for name, new, se in zip(("gravity_coeff a", "action_gain b", "damping c"),
                             r.coefficients, r.stderr):
        old = getattr(base, name.split()[0])
        rows.append(f"{name:16}{old:>10.4f}{new:>12.4f}{se:>11.4f}")
    rows.append(f"R² = {r.r2:.5f}, residual RMS = {r.rmse:.4f} rad/s², {r.used} transitions, "
                f"dt = {r.dt:g} s, condition {r.condition:.1f}")
    if r.excluded:
        rows.append("excluded: " + ", ".join(f"{k} {v}" for k, v in sorted(r.excluded.items())))
    return "\n".join(rows)


# ------------------------------------------------------------------------ encoder procedures
def measure_counts(motor: Any, turns: int, prompt: Callable[[str], Any] = input) -> dict[str, Any]:
    """Counts per revolution by hand rotation (motor off).

    The operator lets the rod hang still, confirms, turns it by exactly ``turns`` full turns and
    back to hanging, and confirms again.

    Returns:
        ``{"counts": Δcount, "counts_per_rev": round(|Δ|/turns), "exact": |Δ|/turns,
        "errors": decoding errors during the turns}``.
    """
    motor.stop()
    prompt("Let the rod hang still, then press Enter ")
    s0 = motor.stats()
    prompt(f"Turn the rod by hand exactly {turns} full turn(s) in one direction, let it hang "
           "still again, then press Enter ")
    s1 = motor.stats()
    delta = s1["count"] - s0["count"]
    exact = abs(delta) / turns
    return {"counts": delta, "counts_per_rev": round(exact), "exact": exact,
            "errors": s1["errors"] - s0["errors"]}


def check_direction(motor: Any, u: float = 1.0, pulse_s: float = 0.15,
                    sleep: Callable[[float], None] = time.sleep) -> float:
    """Apply ``u`` > 0 for ``pulse_s`` from hanging and return the change of θ [rad].

    Positive means the encoder direction is right; negative: set RAAS_ENCODER_DIRECTION=-1 (or
    swap the motor leads).
    """
    theta0, _ = motor.read()
    try:
        motor.apply(abs(u))
        sleep(pulse_s)
        theta1, _ = motor.read()
    finally:
        motor.stop()
    return theta1 - theta0
