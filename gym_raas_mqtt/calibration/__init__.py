"""Per-robot calibration files (TOML) that override :class:`~gym_raas_mqtt.physics.PendulumParams`.

A calibration file looks like::

    id = "pi-03-2026-11-20"          # appears in every result produced with it
    [model]                          # any PendulumParams field except calibration_id
    gravity_coeff = 26.4
    action_gain = 7.7
    damping = 1.9
    counts_per_rev = 480

``default.toml`` in this folder holds the original hardware's identified model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tomllib
from pathlib import Path
from typing import Any

from gym_raas_mqtt.errors import ConfigError
from gym_raas_mqtt.physics import PendulumParams
from gym_raas_mqtt.protocol import ID_PATTERN

DEFAULT_FILE = Path(__file__).with_name("default.toml")


def params_from_mapping(data: dict[str, Any], source: str = "<mapping>") -> PendulumParams:
    """Build parameters from parsed calibration data.

    Raises:
        ConfigError: unknown keys, wrong types, or an invalid id.
    """
    cal_id = data.get("id")
    if not isinstance(cal_id, str) or not ID_PATTERN.match(cal_id):
        raise ConfigError(f"{source}: 'id' must be a string matching {ID_PATTERN.pattern}")
    model = data.get("model", {})
    unknown = set(data) - {"id", "model", "notes", "measured"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level keys {sorted(unknown)}")
    if not isinstance(model, dict):
        raise ConfigError(f"{source}: [model] must be a table")
    fields = {f.name: f for f in dataclasses.fields(PendulumParams)}
    values: dict[str, Any] = {}
    for key, value in model.items():
        if key not in fields or key in ("calibration_id", "calibration_sha256"):
            raise ConfigError(f"{source}: unknown model parameter {key!r}")
        want = int if fields[key].type in ("int", int) else float
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key} must be a number")
        if want is int and not isinstance(value, int):
            raise ConfigError(f"{source}: {key} must be an integer")
        values[key] = want(value)
    try:
        return PendulumParams(calibration_id=cal_id, **values)
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from e


def load_calibration(path: str | Path | None = None) -> PendulumParams:
    """Read a calibration file (the bundled default when ``path`` is None); the parameters carry
    the file's SHA-256 next to its id.

    Raises:
        ConfigError: the file is missing, not TOML, or invalid.
    """
    path = Path(path) if path else DEFAULT_FILE
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read calibration file {path}: {e}") from e
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    params = params_from_mapping(data, str(path))
    return params.replace(calibration_sha256=hashlib.sha256(raw).hexdigest())


def dump_calibration(params: PendulumParams, notes: str = "") -> str:
    """Render ``params`` as calibration TOML (inverse of :func:`load_calibration`)."""
    lines = [f'id = "{params.calibration_id}"']
    if notes:
        lines.append("notes = " + _toml_str(notes))
    lines.append("")
    lines.append("[model]")
    for f in dataclasses.fields(PendulumParams):
        if f.name in ("calibration_id", "calibration_sha256"):
            continue
        lines.append(f"{f.name} = {getattr(params, f.name)!r}")
    return "\n".join(lines) + "\n"


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
