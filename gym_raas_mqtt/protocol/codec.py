"""Message encoding and validation: the :class:`Message` base every payload derives from.

Payloads are compact UTF-8 JSON objects, validated strictly against their frozen dataclass: a
missing or unknown field, a wrong type (a bool is not an int), NaN/inf, an invalid id, deep nesting
or an oversized payload raises :class:`~gym_raas_mqtt.errors.ProtocolError` and nothing else.
Stdlib only.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
import types
import typing
from dataclasses import field
from typing import Any, ClassVar

from gym_raas_mqtt.errors import ProtocolError

PROTOCOL_VERSION = 1
ROOT = f"raas/v{PROTOCOL_VERSION}"
MAX_PAYLOAD_BYTES = 512 * 1024
"""Largest payload accepted by :meth:`Message.from_bytes` (bytes)."""
MAX_STRING_CHARS = 64 * 1024
"""Longest single string field accepted (characters)."""
MAX_LIST_ITEMS = 10_000
"""Longest list field accepted (telemetry batches stay far below)."""
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""Node ids, job ids and owner names: safe as one topic level, file name and container label."""


def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"non-finite number {name} is not allowed")


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a valid node/job/owner id, else raise :class:`ProtocolError`."""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise ProtocolError(f"invalid {what} {value!r}: expected {ID_PATTERN.pattern}")
    return value


def _check_json_value(value: Any, path: str, depth: int = 0) -> Any:
    """Validate a free-form JSON value (used for ``details``/``summary`` dicts)."""
    if depth > 8:
        raise ProtocolError(f"{path}: nested too deeply")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ProtocolError(f"{path}: non-finite number")
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            raise ProtocolError(f"{path}: string longer than {MAX_STRING_CHARS}")
        return value
    if isinstance(value, list):
        if len(value) > MAX_LIST_ITEMS:
            raise ProtocolError(f"{path}: list longer than {MAX_LIST_ITEMS}")
        return [_check_json_value(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ProtocolError(f"{path}: keys must be strings")
            out[k] = _check_json_value(v, f"{path}.{k}", depth + 1)
        return out
    raise ProtocolError(f"{path}: {type(value).__name__} is not JSON")


def _coerce(value: Any, kind: Any, path: str) -> Any:
    """Check ``value`` (decoded JSON) against annotation ``kind``; return the Python value."""
    origin = typing.get_origin(kind)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(kind)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], path)
    if kind is Any:
        return _check_json_value(value, path)
    if kind is bool:
        if not isinstance(value, bool):
            raise ProtocolError(f"{path}: expected bool, got {type(value).__name__}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(f"{path}: expected int, got {type(value).__name__}")
        if abs(value) > 2**53:
            raise ProtocolError(f"{path}: integer out of range")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProtocolError(f"{path}: expected number, got {type(value).__name__}")
        value = float(value)
        if not math.isfinite(value):
            raise ProtocolError(f"{path}: non-finite number")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ProtocolError(f"{path}: expected string, got {type(value).__name__}")
        if len(value) > MAX_STRING_CHARS:
            raise ProtocolError(f"{path}: string longer than {MAX_STRING_CHARS}")
        return value
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(value)
        except (ValueError, TypeError):
            allowed = ", ".join(m.value for m in kind)
            raise ProtocolError(f"{path}: {value!r} is not one of {allowed}") from None
    if isinstance(kind, type) and issubclass(kind, Message):
        return kind.from_dict(value, path=path)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ProtocolError(f"{path}: expected list, got {type(value).__name__}")
        if len(value) > MAX_LIST_ITEMS:
            raise ProtocolError(f"{path}: list longer than {MAX_LIST_ITEMS}")
        (item,) = typing.get_args(kind)[:1]
        return tuple(_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ProtocolError(f"{path}: expected object, got {type(value).__name__}")
        return _check_json_value(value, path)
    raise TypeError(f"unsupported annotation {kind!r} at {path}")  # programming error


def _to_json(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Message):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return value


class Message:
    """Base of every payload: a frozen dataclass that round-trips through JSON bytes.

    Subclasses declare fields with annotations; ``tuple[float, ...]`` fields hold JSON lists,
    ``dict[str, Any]`` fields hold free-form JSON objects (still checked for NaN, depth and size).
    Fields whose metadata has ``id=True`` must match :data:`ID_PATTERN`.
    """

    _fields_cache: ClassVar[tuple[tuple[str, Any, bool, bool], ...] | None] = None

    @classmethod
    def _spec(cls) -> tuple[tuple[str, Any, bool, bool], ...]:
        spec = cls.__dict__.get("_fields_cache")
        if spec is None:
            hints = typing.get_type_hints(cls)
            spec = tuple(
                (
                    f.name,
                    hints[f.name],
                    f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
                    bool(f.metadata.get("id")),
                )
                for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            )
            cls._fields_cache = spec
        return spec

    @classmethod
    def from_dict(cls, data: Any, path: str = "") -> "Message":
        """Validate decoded JSON ``data`` and build the message.

        Raises:
            ProtocolError: for any deviation from the schema.
        """
        where = path or cls.__name__
        if not isinstance(data, dict):
            raise ProtocolError(f"{where}: expected a JSON object, got {type(data).__name__}")
        spec = cls._spec()
        names = {name for name, *_ in spec}
        unknown = set(data) - names
        if unknown:
            raise ProtocolError(f"{where}: unknown field(s) {sorted(map(str, unknown))[:5]}")
        values = {}
        for name, kind, required, is_id in spec:
            if name not in data:
                if required:
                    raise ProtocolError(f"{where}: missing field {name!r}")
                continue
            value = _coerce(data[name], kind, f"{where}.{name}")
            if is_id and value is not None:
                check_id(value, f"{where}.{name}")
            values[name] = value
        try:
            return cls(**values)
        except ProtocolError:
            raise
        except (TypeError, ValueError) as e:  # __post_init__ checks
            raise ProtocolError(f"{where}: {e}") from None

    @classmethod
    def from_bytes(cls, payload: bytes | bytearray | memoryview | str) -> "Message":
        """Decode and validate a payload.

        Raises:
            ProtocolError: oversized, not UTF-8 JSON, or not matching the schema.
        """
        if isinstance(payload, str):
            payload = payload.encode("utf-8", "surrogatepass")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ProtocolError(f"{cls.__name__}: payload of {len(payload)} bytes exceeds "
                                f"{MAX_PAYLOAD_BYTES}")
        try:
            data = json.loads(bytes(payload), parse_constant=_reject_constant)
        except ProtocolError:
            raise
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise ProtocolError(f"{cls.__name__}: not valid JSON ({str(e)[:80]})") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The message as JSON-ready data (enums as their values, tuples as lists)."""
        return {f.name: _to_json(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def to_bytes(self) -> bytes:
        """Compact UTF-8 JSON; ``from_bytes(to_bytes(m)) == m``."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode()


def id_field(**kw: Any) -> Any:
    """A dataclass field whose value must match :data:`ID_PATTERN` (None allowed when optional)."""
    return field(metadata={"id": True}, **kw)
