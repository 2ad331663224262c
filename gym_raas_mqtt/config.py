"""Configuration from ``RAAS_*`` environment variables: the one mechanism every service uses.

A :class:`Setting` declares one variable — its name, default, unit and meaning — exactly once.
Each service has a frozen dataclass whose fields are made from settings: :func:`setting` declares
one that only this service reads, :meth:`Setting.field` reuses one declared elsewhere (the node id,
the central broker's URL, ...). :func:`load` builds the dataclass once at start-up; ``raas config``
lists every variable once (docs/configuration.md is generated from the same data).

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Demo:
    ...     rate_hz: float = setting("RAAS_DEMO_RATE_HZ", 20.0, "control rate", unit="Hz")
    ...     node_id: str = NODE_ID.field()
    >>> load(Demo, environ={"RAAS_DEMO_RATE_HZ": "50"}).rate_hz
    50.0
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, TypeVar

from gym_raas_mqtt.errors import ConfigError

T = TypeVar("T")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclasses.dataclass(frozen=True)
class Setting:
    """One ``RAAS_*`` environment variable.

    Attributes:
        env: the variable's name, ``RAAS_...``.
        default: value when the variable is unset (``None`` allowed for optional settings).
        help: one line describing the setting.
        unit: unit of the value (``s``, ``Hz``, ``bytes``), empty when none.
        secret: the value is a secret (or a path to one); it is never printed.
    """

    env: str
    default: Any
    help: str
    unit: str = ""
    secret: bool = False

    def field(self) -> Any:
        """A dataclass field read from this setting (its default is the setting's)."""
        default = self.default
        if isinstance(default, (list, dict, set)):  # dataclasses refuse mutable defaults
            return dataclasses.field(default_factory=lambda: type(default)(default),
                                     metadata={"setting": self})
        return dataclasses.field(default=default, metadata={"setting": self})


def setting(env: str, default: Any, help: str, *, unit: str = "", secret: bool = False) -> Any:
    """Declare a setting that one config dataclass owns, and make it a field of that class.

    Args:
        env: the variable's name, ``RAAS_...``.
        default: value when the variable is unset.
        help: one line describing the setting.
        unit: unit of the value (``s``, ``Hz``, ``bytes``), empty when none.
        secret: the value is a path to a file holding the secret, or the secret itself; it is
            never printed.
    """
    return Setting(env, default, help, unit, secret).field()


NODE_ID = Setting("RAAS_NODE_ID", "dev-node",
                  "this node's id: topic level, file names, container labels")
"""The fleet node's id; read by the env inside a job as well as by every node service."""


def settings_of(cls: type) -> list[tuple[str, Setting]]:
    """``(field name, setting)`` of every field of config dataclass ``cls`` read from the
    environment."""
    return [(f.name, f.metadata["setting"]) for f in dataclasses.fields(cls)
            if "setting" in f.metadata]


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
        ConfigError: a variable cannot be converted to its field's type, or the class's own
            checks refuse the values.
    """
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, s in settings_of(cls):
        if name in overrides:
            values[name] = overrides.pop(name)
        elif s.env in environ:
            values[name] = _convert(environ[s.env], hints[name], s.env)
    values.update(overrides)  # fields not read from the environment
    return cls(**values)


def read_secret(value: str | None) -> str | None:
    """Return a secret given either literally or as ``file:/path`` (trailing newline stripped).

    Raises:
        OSError: the file cannot be read.
    """
    if value is None or value == "":
        return None
    if value.startswith("file:"):
        return Path(value[5:]).read_text().strip()
    return value


def describe(classes: Iterable[type]) -> list[dict[str, str]]:
    """One row (env, default, unit, help, used by) per variable read by any of ``classes``,
    in order of first appearance; a variable shared by several classes appears once.

    Raises:
        ConfigError: two different declarations use one variable name.
    """
    rows: dict[str, dict[str, str]] = {}
    owners: dict[str, Setting] = {}
    for cls in classes:
        for _, s in settings_of(cls):
            if s.env in owners and owners[s.env] is not s:
                raise ConfigError(f"{s.env} is declared twice (again in {cls.__name__}); "
                                  "declare it once and reuse it with Setting.field()")
            owners[s.env] = s
            row = rows.setdefault(s.env, {
                "env": s.env, "default": "(secret)" if s.secret and s.default else repr(s.default),
                "unit": s.unit, "help": s.help, "used_by": ""})
            row["used_by"] = ", ".join(filter(None, (row["used_by"], cls.__name__)))
    return list(rows.values())
