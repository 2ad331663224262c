"""Configuration from ``RAAS_*`` environment variables: the one mechanism every service uses.

Each service declares a frozen dataclass whose fields are made with :func:`setting`; the field's
environment variable, default, unit and description live in one place and ``raas config`` prints
them all (docs/configuration.md is generated from the same data).

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Demo:
    ...     rate_hz: float = setting("RAAS_DEMO_RATE_HZ", 20.0, "control rate", unit="Hz")
    >>> load(Demo, environ={"RAAS_DEMO_RATE_HZ": "50"}).rate_hz
    50.0
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

from gym_raas_mqtt.errors import ConfigError

T = TypeVar("T")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def setting(env: str, default: Any, help: str, *, unit: str = "", secret: bool = False) -> Any:
    """A dataclass field read from environment variable ``env``.

    Args:
        env: the variable's name, ``RAAS_...``.
        default: value when the variable is unset (``None`` allowed for optional settings).
        help: one line describing the setting.
        unit: unit of the value (``s``, ``Hz``, ``bytes``), empty when none.
        secret: the value is a path to a file holding the secret, or the secret itself; it is
            never printed.
    """
    return dataclasses.field(
        default=default, metadata={"env": env, "help": help, "unit": unit, "secret": secret}
    )


def _convert(raw: str, kind: Any, env: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if raw == "":
            return None
        return _convert(raw, args[0], env)
    try:
        if kind is bool:
            low = raw.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}")
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is Path:
            return Path(raw).expanduser()
        if origin is tuple:
            return tuple(s.strip() for s in raw.split(",") if s.strip())
        return raw
    except ValueError as e:
        raise ConfigError(f"{env}={raw!r}: {e}") from e


def load(cls: type[T], environ: Mapping[str, str] | None = None, **overrides: Any) -> T:
    """Build config dataclass ``cls`` from the environment, then apply keyword ``overrides``.

    Raises:
        ConfigError: a variable cannot be converted to its field's type.
    """
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        env = f.metadata.get("env")
        if f.name in overrides:
            values[f.name] = overrides[f.name]
        elif env and env in environ:
            values[f.name] = _convert(environ[env], hints[f.name], env)
    return cls(**values)


def read_secret(value: str | None) -> str | None:
    """Return a secret given either literally or as ``file:/path`` (trailing newline stripped)."""
    if value is None or value == "":
        return None
    if value.startswith("file:"):
        return Path(value[5:]).read_text().strip()
    return value


def describe(cls: type) -> list[dict[str, str]]:
    """Rows (env, default, unit, help) documenting every setting of config dataclass ``cls``."""
    rows = []
    for f in dataclasses.fields(cls):
        if "env" not in f.metadata:
            continue
        default = "(secret)" if f.metadata["secret"] and f.default else repr(f.default)
        rows.append(
            {"env": f.metadata["env"], "default": default, "unit": f.metadata["unit"],
             "help": f.metadata["help"]}
        )
    return rows
