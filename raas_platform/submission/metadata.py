"""The rules a run's metadata must pass — name, tags, notes, ``run.py`` arguments and environment
variables — the same in the API, the submit form and on the node.

Everything here is hostile input: it ends up in the database, on pages, in the assignment message
and in the job container's argv and environment. Each refusal is a :class:`MetadataRejected` (a
:class:`~raas_platform.submission.rules.SourceRejected`: the API answers 400 naming the field, a
node ends the job ``failed``) whose message is written for the user.

Environment variables may not be the platform's own (``RAAS_*``, which carry the job's broker
login and ids), nor any that change how the interpreter or the loader start (``LD_*``,
``PYTHONPATH``, ...), nor the container's identity (``PATH``, ``HOME``, ...): see
:data:`DENIED_ENV`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from raas_platform.submission.rules import SourceRejected

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
"""A run's name: 1–64 characters, letters, digits and ``_.+-``, not starting with a symbol."""
TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,31}$")
"""A tag: 1–32 characters of the name's alphabet (so ``tag=`` filters need no escaping)."""
ENV_NAME_PATTERN = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
"""An environment variable's name: upper-case POSIX style, at most 64 characters."""
MAX_TAGS = 8
MAX_NOTES_CHARS = 4000
MAX_ARGS = 32
MAX_ARG_CHARS = 256
MAX_ARGS_CHARS = 4096
"""Total characters of all arguments together."""
MAX_ENV_VARS = 32
MAX_ENV_VALUE_CHARS = 1024
MAX_ENV_CHARS = 8192
"""Total characters of all ``NAME=value`` pairs together."""
DENIED_ENV_PREFIXES = ("RAAS_", "LD_")
"""Names starting with these are refused: the platform's own settings and the dynamic loader's."""
DENIED_ENV = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "HOSTNAME", "TMPDIR", "PWD",
    "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONNOUSERSITE",
    "PYTHONEXECUTABLE", "PYTHONINSPECT", "PYTHONUNBUFFERED", "PYTHONSAFEPATH", "PYTHONPLATLIBDIR",
    "PYTHONBREAKPOINT", "PYTHONWARNINGS", "PYTHONDEVMODE", "PYTHONMALLOC",
    "PYTHONDONTWRITEBYTECODE",
})
"""Names refused besides the prefixes: the container's identity and the interpreter's start-up."""


class MetadataRejected(SourceRejected):
    """A run's name, tags, notes, arguments or environment break the rules (the user's fault)."""


@dataclass(frozen=True)
class RunMetadata:
    """What a researcher says about a run, checked.

    Attributes:
        name: short name, e.g. ``swingup-v3`` (:data:`NAME_PATTERN`), or None.
        tags: distinct tags in the order given (:data:`TAG_PATTERN`, at most :data:`MAX_TAGS`).
        notes: free text (at most :data:`MAX_NOTES_CHARS`), or None.
        args: the argv of ``run.py`` after its name (``python run.py ARGS...``).
        env: environment variables for the job's container, ``{NAME: value}``.
    """

    name: str | None = None
    tags: tuple[str, ...] = ()
    notes: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


def _control_chars(text: str, allow: str = "") -> bool:
    return any((ord(c) < 32 and c not in allow) or ord(c) == 127 for c in text)


def check_name(name: Any) -> str | None:
    """The run's name (surrounding spaces removed), or None when empty.

    Raises:
        MetadataRejected: not a string, or outside :data:`NAME_PATTERN`.
    """
    if name is None or (isinstance(name, str) and not name.strip()):
        return None
    if not isinstance(name, str) or not NAME_PATTERN.match(name.strip()):
        raise MetadataRejected("name must be 1-64 letters, digits or '_.+-', starting with a "
                               "letter or digit", field="name")
    return name.strip()


def check_tags(tags: Any) -> tuple[str, ...]:
    """Distinct tags in their first order (None: no tags).

    Raises:
        MetadataRejected: not a list of strings, a malformed tag, or more than :data:`MAX_TAGS`.
    """
    if tags is None:
        return ()
    if not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags):
        raise MetadataRejected("tags must be a list of strings", field="tags")
    out = tuple(dict.fromkeys(t.strip() for t in tags if t.strip()))
    bad = [t for t in out if not TAG_PATTERN.match(t)]
    if bad:
        raise MetadataRejected(f"tag {bad[0][:40]!r} is invalid: 1-32 letters, digits or "
                               "'_.+-', starting with a letter or digit", field="tags")
    if len(out) > MAX_TAGS:
        raise MetadataRejected(f"at most {MAX_TAGS} tags", field="tags")
    return out


def check_notes(notes: Any) -> str | None:
    """The notes, or None when empty.

    Raises:
        MetadataRejected: not a string, longer than :data:`MAX_NOTES_CHARS`, or with control
            characters other than newline and tab.
    """
    if notes is None or (isinstance(notes, str) and not notes.strip()):
        return None
    if not isinstance(notes, str):
        raise MetadataRejected("notes must be a string", field="notes")
    notes = notes.replace("\r\n", "\n").strip()
    if len(notes) > MAX_NOTES_CHARS:
        raise MetadataRejected(f"notes are longer than {MAX_NOTES_CHARS} characters",
                               field="notes")
    if _control_chars(notes, "\n\t"):
        raise MetadataRejected("notes must not contain control characters", field="notes")
    return notes


def check_args(args: Any) -> tuple[str, ...]:
    """The arguments of ``run.py`` (None: none).

    Raises:
        MetadataRejected: not a list of strings, more than :data:`MAX_ARGS`, one longer than
            :data:`MAX_ARG_CHARS`, all longer than :data:`MAX_ARGS_CHARS`, or a control
            character (a NUL cannot be passed to a program at all).
    """
    if args is None:
        return ()
    if not isinstance(args, (list, tuple)) or not all(isinstance(a, str) for a in args):
        raise MetadataRejected("args must be a list of strings", field="args")
    if len(args) > MAX_ARGS:
        raise MetadataRejected(f"at most {MAX_ARGS} arguments", field="args")
    if any(len(a) > MAX_ARG_CHARS for a in args):
        raise MetadataRejected(f"an argument is longer than {MAX_ARG_CHARS} characters",
                               field="args")
    if sum(len(a) for a in args) > MAX_ARGS_CHARS:
        raise MetadataRejected(f"the arguments are longer than {MAX_ARGS_CHARS} characters in "
                               "all", field="args")
    if any(_control_chars(a, "\t") for a in args):
        raise MetadataRejected("arguments must not contain control characters", field="args")
    return tuple(args)


def check_env_name(name: str) -> str:
    """``name`` if a job may set it.

    Raises:
        MetadataRejected: malformed, or the platform's or the interpreter's own.
    """
    if not ENV_NAME_PATTERN.match(name):
        raise MetadataRejected(f"environment variable {name[:70]!r}: names are upper-case "
                               "letters, digits and '_' (not starting with a digit), at most 64",
                               field="env")
    if name.startswith(DENIED_ENV_PREFIXES) or name in DENIED_ENV:
        raise MetadataRejected(f"environment variable {name} is reserved by the platform (no "
                               f"{', '.join(p + '*' for p in DENIED_ENV_PREFIXES)}, nor PATH, "
                               "HOME, PYTHONPATH and the like)", field="env")
    return name


def check_env(env: Any) -> dict[str, str]:
    """The environment variables for the job's container (None: none).

    Raises:
        MetadataRejected: not an object of strings, a refused name (:func:`check_env_name`),
            more than :data:`MAX_ENV_VARS`, a value longer than :data:`MAX_ENV_VALUE_CHARS` or
            with control characters, or more than :data:`MAX_ENV_CHARS` in all.
    """
    if env is None:
        return {}
    if not isinstance(env, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in env.items()):
        raise MetadataRejected("env must be an object of string names and string values",
                               field="env")
    if len(env) > MAX_ENV_VARS:
        raise MetadataRejected(f"at most {MAX_ENV_VARS} environment variables", field="env")
    for name, value in env.items():
        check_env_name(name)
        if len(value) > MAX_ENV_VALUE_CHARS or _control_chars(value, "\t"):
            raise MetadataRejected(f"environment variable {name}: the value must be at most "
                                   f"{MAX_ENV_VALUE_CHARS} characters without control "
                                   "characters", field="env")
    if sum(len(k) + len(v) + 1 for k, v in env.items()) > MAX_ENV_CHARS:
        raise MetadataRejected(f"the environment is larger than {MAX_ENV_CHARS} characters",
                               field="env")
    return dict(env)


def check_metadata(name: Any = None, tags: Any = None, notes: Any = None, args: Any = None,
                   env: Any = None) -> RunMetadata:
    """Every field checked (see the ``check_*`` functions); None means not given.

    Raises:
        MetadataRejected: the first field that breaks its rule (``field`` names it).
    """
    return RunMetadata(check_name(name), check_tags(tags), check_notes(notes), check_args(args),
                       check_env(env))


# -- text forms (the submit page's fields, repeated multipart fields) -----------------------------
def parse_env_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """``NAME=value`` strings (one per item; empty items skipped) as a dict, later names winning.

    Raises:
        MetadataRejected: an item without ``=``.
    """
    out: dict[str, str] = {}
    for pair in pairs:
        if not pair.strip():
            continue
        name, sep, value = pair.partition("=")
        if not sep:
            raise MetadataRejected(f"environment variable {pair[:70]!r}: write NAME=value",
                                   field="env")
        out[name.strip()] = value
    return out


def split_tags(text: str) -> list[str]:
    """Tags typed in one field, separated by commas or spaces."""
    return [t for t in re.split(r"[,\s]+", text) if t]


def split_args(text: str) -> list[str]:
    """Arguments typed in one field, split as a POSIX shell would (quotes group words).

    Raises:
        MetadataRejected: unbalanced quotes.
    """
    try:
        return shlex.split(text)
    except ValueError as e:
        raise MetadataRejected(f"arguments: {e}", field="args") from None
