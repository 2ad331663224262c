"""The binary wire form of the control loop's :class:`Action` and :class:`Observation`.

On the node-local bus the env and the motor node exchange one Action and one Observation per
control period. These two travel as fixed-layout little-endian ``struct`` payloads, named by the
MQTT 5 content-type property; every other message (and these two, when the content type is
``application/json`` or absent) is JSON. A JSON payload starts with ``{`` (0x7B), never with a
magic/version byte below, so a payload can never be read in the wrong form by accident.

Action: ``application/vnd.raas.action.v1``, exactly 26 bytes (``struct`` format ``<BBqqd``):

======  =====  ==========  ===================================================================
offset  size   type        field
======  =====  ==========  ===================================================================
0       1      uint8       magic/version: ``0xA1`` (high nibble 0xA = Action, low nibble 1 = v1)
1       1      uint8       flags: reserved, must be 0
2       8      int64       ``episode_id``, ``|value| <= 2**53`` (as in JSON)
10      8      int64       ``seq``, ``|value| <= 2**53``
18      8      float64     ``action``: desired u, N·m-equivalent, finite
======  =====  ==========  ===================================================================

Observation: ``application/vnd.raas.observation.v1``, exactly ``52 + fault_len`` bytes (format
``<BBqqddddH`` then the fault text):

======  =====  ==========  ===================================================================
offset  size   type        field
======  =====  ==========  ===================================================================
0       1      uint8       magic/version: ``0xB1`` (high nibble 0xB = Observation, v1)
1       1      uint8       flags: bit 0 ``deadline_miss``, bit 1 ``fault`` present; others 0
2       8      int64       ``episode_id``, ``|value| <= 2**53``
10      8      int64       ``seq``, ``|value| <= 2**53``
18      8      float64     ``theta`` [rad], 0 = upright, unwrapped, finite
26      8      float64     ``theta_dot`` [rad/s], finite
34      8      float64     ``u_applied``: u after clamping and safety, finite
42      8      float64     ``t`` [s since the episode started, motor clock], finite
50      2      uint16      ``fault_len``: bytes of fault text (0 unless flag bit 1 is set)
52      n      UTF-8       ``fault``: why the motor node went safe (only when flag bit 1 is set)
======  =====  ==========  ===================================================================

Refusals raise :class:`ProtocolError` with the same wording as the JSON path where the fault is
the same (``Observation.theta: non-finite number``, ``Action.seq: integer out of range``); a wrong
size, magic/version byte, flag or content type raise it too. Stdlib only.
"""

from __future__ import annotations

import math
import struct
from typing import Callable

from gym_raas_mqtt.errors import ProtocolError
from gym_raas_mqtt.protocol.codec import Message
from gym_raas_mqtt.protocol.local import Action, Observation

JSON_CONTENT_TYPE = "application/json"
"""Content type of every JSON payload (absent means JSON too)."""
ACTION_CONTENT_TYPE = "application/vnd.raas.action.v1"
"""Content type of a binary :class:`Action`."""
OBSERVATION_CONTENT_TYPE = "application/vnd.raas.observation.v1"
"""Content type of a binary :class:`Observation`."""
ACTION_MAGIC = 0xA1
"""First byte of a binary Action: message kind (high nibble) and layout version (low nibble)."""
OBSERVATION_MAGIC = 0xB1
"""First byte of a binary Observation."""

_ACTION = struct.Struct("<BBqqd")
_OBSERVATION = struct.Struct("<BBqqddddH")
ACTION_SIZE = _ACTION.size
"""Size of a binary Action (bytes)."""
OBSERVATION_SIZE = _OBSERVATION.size
"""Size of a binary Observation without fault text (bytes)."""
MAX_FAULT_BYTES = 0xFFFF
"""Longest fault text a binary Observation carries (UTF-8 bytes; its length field is 16 bits)."""

_OBS_FLOATS = ("theta", "theta_dot", "u_applied", "t")
_DEADLINE_MISS = 0x01
_HAS_FAULT = 0x02
_ALL_FLAGS = _DEADLINE_MISS | _HAS_FAULT
_MAX_INT = 2**53  # the JSON path's integer range
_isfinite = math.isfinite
_new = object.__new__


def pack_action(episode_id: int, seq: int, action: float) -> bytes:
    """The binary Action for step ``seq`` of ``episode_id`` (the bus backend's per-step encoder).

    Args:
        episode_id: the episode. seq: the step, 1 for the first. action: desired u (finite).

    Raises:
        ProtocolError: a non-finite action or an integer out of range.
    """
    if not _isfinite(action):
        raise ProtocolError("Action.action: non-finite number")
    if not (-_MAX_INT <= episode_id <= _MAX_INT and -_MAX_INT <= seq <= _MAX_INT):
        _check_ints("Action", episode_id, seq)
    return _ACTION.pack(ACTION_MAGIC, 0, episode_id, seq, action)


def encode_action(msg: Action) -> bytes:
    """``msg`` in the binary layout (``decode_action(encode_action(m)) == m``).

    Raises:
        ProtocolError: a field the layout cannot carry (non-finite, out of range).
    """
    return pack_action(msg.episode_id, msg.seq, msg.action)


def _check_size(name: str, payload: bytes, size: int) -> None:
    if len(payload) != size:
        raise ProtocolError(f"{name}: binary payload of {len(payload)} bytes, expected {size}")


def _check_magic(name: str, got: int, want: int) -> None:
    if got != want:
        raise ProtocolError(f"{name}: magic/version byte 0x{got:02X}, expected 0x{want:02X}")


def _check_ints(name: str, episode_id: int, seq: int) -> None:
    if not -_MAX_INT <= episode_id <= _MAX_INT:
        raise ProtocolError(f"{name}.episode_id: integer out of range")
    if not -_MAX_INT <= seq <= _MAX_INT:
        raise ProtocolError(f"{name}.seq: integer out of range")


def _check_finite(name: str, fields: tuple[str, ...], values: tuple[float, ...]) -> None:
    for field, value in zip(fields, values):
        if not _isfinite(value):
            raise ProtocolError(f"{name}.{field}: non-finite number")


def decode_action(payload: bytes | bytearray | memoryview) -> Action:
    """Validate a binary Action and build it.

    Raises:
        ProtocolError: wrong size or magic/version byte, a reserved flag set, an integer out of
            range or a non-finite action.
    """
    if len(payload) != ACTION_SIZE:
        _check_size("Action", payload, ACTION_SIZE)
    magic, flags, episode_id, seq, action = _ACTION.unpack(payload)
    if magic != ACTION_MAGIC:
        _check_magic("Action", magic, ACTION_MAGIC)
    if flags:
        raise ProtocolError(f"Action: reserved flags 0x{flags:02X} set")
    if not (-_MAX_INT <= episode_id <= _MAX_INT and -_MAX_INT <= seq <= _MAX_INT):
        _check_ints("Action", episode_id, seq)
    if not _isfinite(action):
        raise ProtocolError("Action.action: non-finite number")
    # Filled in place: the frozen dataclass's __init__ (one object.__setattr__ per field) costs
    # more than the whole decode; every field was validated above.
    msg = _new(Action)
    d = msg.__dict__
    d["episode_id"] = episode_id
    d["seq"] = seq
    d["action"] = action
    return msg


def encode_observation(msg: Observation) -> bytes:
    """``msg`` in the binary layout (``decode_observation(encode_observation(m)) == m``).

    Raises:
        ProtocolError: a field the layout cannot carry (non-finite, out of range, fault text
            over :data:`MAX_FAULT_BYTES`).
    """
    episode_id, seq = msg.episode_id, msg.seq
    theta, theta_dot, u_applied, t = msg.theta, msg.theta_dot, msg.u_applied, msg.t
    total = theta + theta_dot + u_applied + t  # one finiteness test, as in decode_observation
    if total - total != 0.0:
        _check_finite("Observation", _OBS_FLOATS, (theta, theta_dot, u_applied, t))
    if not (-_MAX_INT <= episode_id <= _MAX_INT and -_MAX_INT <= seq <= _MAX_INT):
        _check_ints("Observation", episode_id, seq)
    flags = _DEADLINE_MISS if msg.deadline_miss else 0
    if msg.fault is None:
        return _OBSERVATION.pack(OBSERVATION_MAGIC, flags, episode_id, seq, theta, theta_dot,
                                 u_applied, t, 0)
    text = msg.fault.encode("utf-8")
    if len(text) > MAX_FAULT_BYTES:
        raise ProtocolError(f"Observation.fault: longer than {MAX_FAULT_BYTES} bytes")
    return _OBSERVATION.pack(OBSERVATION_MAGIC, flags | _HAS_FAULT, episode_id, seq, theta,
                             theta_dot, u_applied, t, len(text)) + text


def _refuse_frame(payload: bytes, magic: int, flags: int, fault_len: int) -> None:
    """Raise the ProtocolError that names what is wrong with an Observation's frame."""
    _check_magic("Observation", magic, OBSERVATION_MAGIC)
    if flags > _ALL_FLAGS:
        raise ProtocolError(f"Observation: unknown flags 0x{flags:02X} set")
    _check_size("Observation", payload, OBSERVATION_SIZE + fault_len)


def decode_observation(payload: bytes | bytearray | memoryview) -> Observation:
    """Validate a binary Observation and build it.

    Raises:
        ProtocolError: wrong size or magic/version byte, an unknown flag, an integer out of
            range, a non-finite value, or fault text that is not UTF-8.
    """
    size = len(payload)
    if size < OBSERVATION_SIZE:
        _check_size("Observation", payload, OBSERVATION_SIZE)
    (magic, flags, episode_id, seq, theta, theta_dot, u_applied, t,
     fault_len) = _OBSERVATION.unpack_from(payload)
    if magic != OBSERVATION_MAGIC or flags > _ALL_FLAGS or size != OBSERVATION_SIZE + fault_len:
        _refuse_frame(payload, magic, flags, fault_len)
    if not (-_MAX_INT <= episode_id <= _MAX_INT and -_MAX_INT <= seq <= _MAX_INT):
        _check_ints("Observation", episode_id, seq)
    # One test for all four: a NaN or ±inf makes the sum NaN or ±inf, and x - x is 0.0 only for
    # a finite x (a finite sum that overflows goes the slow way and passes there).
    total = theta + theta_dot + u_applied + t
    if total - total != 0.0:
        _check_finite("Observation", _OBS_FLOATS, (theta, theta_dot, u_applied, t))
    fault = None
    if flags & _HAS_FAULT:
        try:
            fault = bytes(payload[OBSERVATION_SIZE:]).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("Observation.fault: not valid UTF-8") from None
    elif fault_len:
        raise ProtocolError("Observation: fault text without the fault flag")
    msg = _new(Observation)  # filled in place, as in decode_action
    d = msg.__dict__
    d["episode_id"] = episode_id
    d["seq"] = seq
    d["theta"] = theta
    d["theta_dot"] = theta_dot
    d["u_applied"] = u_applied
    d["t"] = t
    d["deadline_miss"] = flags & _DEADLINE_MISS != 0
    d["fault"] = fault
    return msg


BINARY_FORMS: dict[type[Message], tuple[str, Callable[[Message], bytes],
                                        Callable[[bytes], Message]]] = {
    Action: (ACTION_CONTENT_TYPE, encode_action, decode_action),  # type: ignore[dict-item]
    Observation: (OBSERVATION_CONTENT_TYPE, encode_observation,  # type: ignore[dict-item]
                  decode_observation),
}
"""The messages with a binary form: ``{class: (content type, encode, decode)}``."""


def from_payload(cls: type[Message], payload: bytes | bytearray | memoryview,
                 content_type: str | None = None) -> Message:
    """Decode ``payload`` as a ``cls`` in the form its MQTT 5 content type names.

    Args:
        cls: the topic's message class. payload: the PUBLISH payload.
        content_type: the PUBLISH content-type property; ``None``, ``""`` and
            :data:`JSON_CONTENT_TYPE` mean JSON, ``cls``'s binary content type the binary form.

    Raises:
        ProtocolError: the content type is neither JSON nor ``cls``'s binary form, or the payload
            is invalid in that form.
    """
    if not content_type or content_type == JSON_CONTENT_TYPE:
        return cls.from_bytes(payload)
    form = BINARY_FORMS.get(cls)
    if form is None or content_type != form[0]:
        expected = f"{form[0]} or {JSON_CONTENT_TYPE}" if form else JSON_CONTENT_TYPE
        raise ProtocolError(f"{cls.__name__}: content type {content_type[:80]!r} does not match "
                            f"(expected {expected})")
    return form[2](payload)


def describe_forms() -> list[dict[str, str]]:
    """Rows documenting the binary forms (used by ``raas protocol`` and docs/protocol.md)."""
    return [{"payload": "Action", "content type": ACTION_CONTENT_TYPE,
             "layout": f"`{_ACTION.format}`, {ACTION_SIZE} bytes"},
            {"payload": "Observation", "content type": OBSERVATION_CONTENT_TYPE,
             "layout": f"`{_OBSERVATION.format}` + fault (UTF-8), {OBSERVATION_SIZE} + fault_len "
                       f"bytes"}]
