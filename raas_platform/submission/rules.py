"""The rules a job's code must pass, the same at submission and on the node: limits, URL, ref,
archive member names, ``run.py`` at the root, and the two kinds of fault.

Everything here treats the URL, the ref and the archive as hostile (fault 3 of the original RaaS:
shell injection through the repository URL). Each refusal is a :class:`SourceRejected` whose
message is written for the user.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable
from urllib.parse import urlsplit

from gym_raas_mqtt.errors import ConfigError, RaasError
from raas_platform.settings import CODE_MAX_BYTES, CODE_MAX_FILES, GIT_SCHEMES

ENTRYPOINT = "run.py"
"""The file every job must have at the root of its code (as in the original RaaS)."""
SUPPORTED_SCHEMES = ("https", "ssh", "file")
"""Schemes an operator may allow. ``git://`` is never one: it is unauthenticated and
unencrypted, so anyone on the path could hand a node other code than the user's."""
MAX_URL_CHARS = 2048
MAX_REF_CHARS = 200
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._~/+-][^\s]*$")
_REF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/+-]*$")


class SourceRejected(RaasError):
    """The user's code is unusable (bad URL or ref, missing repository, too big, unsafe
    archive, no run.py): the API answers 400, the node ends the job ``failed``, never retried.

    Attributes:
        field: the submission field at fault (``url``, ``ref``, ``archive``) or None.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SourceUnavailable(RaasError):
    """The platform could not get the code (git missing, its own network or disk failing, the
    object store down): the node ends the job ``error`` and it is retried elsewhere."""


@dataclass(frozen=True)
class SourceLimits:
    """The limits on a job's code (one declaration each in :mod:`raas_platform.settings`).

    Attributes:
        max_bytes: largest unpacked archive or checkout [bytes] (``RAAS_CLONE_MAX_BYTES``).
        max_files: most entries, files and folders (``RAAS_CLONE_MAX_FILES``).
        timeout_s: wall-clock limit of one fetch, or of the API's ``git ls-remote`` [s].
        allowed_schemes: git URL schemes accepted (``RAAS_CLONE_SCHEMES``).
    """

    max_bytes: int = CODE_MAX_BYTES.default
    max_files: int = CODE_MAX_FILES.default
    timeout_s: float = 120.0
    allowed_schemes: tuple[str, ...] = GIT_SCHEMES.default


def check_schemes(schemes: Iterable[str]) -> tuple[str, ...]:
    """Return ``schemes`` if each is one an operator may allow (for the services' configs).

    Raises:
        ConfigError: an unsupported scheme such as ``git`` or ``ext``.
    """
    schemes = tuple(schemes)
    bad = sorted(set(schemes) - set(SUPPORTED_SCHEMES))
    if bad:
        raise ConfigError(f"RAAS_CLONE_SCHEMES: unsupported {bad} "
                          f"(choose from {', '.join(SUPPORTED_SCHEMES)})")
    return schemes


def size_text(n: int) -> str:
    """``n`` bytes for a message: whole MiB when large, else bytes."""
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n} bytes"


def _refuse_url(message: str) -> SourceRejected:
    return SourceRejected(message, field="url")


def check_git_url(url: Any, allowed_schemes: Iterable[str]) -> str:
    """Return ``url`` if git may fetch it, else raise :class:`SourceRejected`.

    Accepted, when their scheme is allowed: ``https://host/path``, ``ssh://[user@]host/path``,
    scp-like ``user@host:path`` (that is ssh), and ``file:///absolute/path`` (no host, no ``..``).
    Never: a leading ``-``, whitespace or control characters, a password in the URL,
    ``transport::address`` helpers, ``http://`` or ``git://``.
    """
    allowed = tuple(allowed_schemes)
    if not isinstance(url, str) or not url:
        raise _refuse_url("a git URL is required")
    if len(url) > MAX_URL_CHARS:
        raise _refuse_url(f"the URL is longer than {MAX_URL_CHARS} characters")
    if url.startswith("-"):
        raise _refuse_url("the URL must not start with '-'")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise _refuse_url("the URL must not contain spaces or control characters")
    scp_like = "://" not in url and _SCP_LIKE.match(url)
    try:
        parts = urlsplit(url)
        _port = parts.port  # a malformed port or IPv6 host raises here rather than later
    except ValueError:
        raise _refuse_url("the URL cannot be parsed") from None
    if scp_like:
        scheme = "ssh"
    elif "::" in url.split("/", 1)[0]:  # git's transport::address remote helpers
        scheme = url.split(":", 1)[0]
    else:
        scheme = parts.scheme.lower() or url.split(":", 1)[0]
    if scheme not in allowed:
        forms = [f"{s}://" for s in allowed] + (["user@host:path"] if "ssh" in allowed else [])
        raise _refuse_url(f"git URL scheme {scheme[:20]!r} is not allowed: the URL must start "
                          f"with {' or '.join(forms)}")
    if scp_like:
        if url.split("@", 1)[1].startswith("-"):
            raise _refuse_url("the host name must not start with '-'")
    elif scheme == "file":
        _check_file_url(parts.netloc, parts.path)
    else:
        _check_network_url(parts)
    return url


def _check_file_url(netloc: str, path: str) -> None:
    """A file URL names an absolute, normalised path on this host and nothing else."""
    parts = PurePosixPath(path).parts
    if netloc or not path.startswith("/") or ".." in parts or "%" in path:
        raise _refuse_url("file URLs must look like file:///absolute/path (an absolute path, "
                          "no host, no '..')")


def _check_network_url(parts: Any) -> None:
    if not parts.hostname:
        raise _refuse_url("the URL has no host name")
    if parts.hostname.startswith("-"):
        raise _refuse_url("the host name must not start with '-'")
    if parts.password is not None:
        raise _refuse_url("the URL must not hold a password")
    if not parts.path or parts.path == "/":
        raise _refuse_url("the URL names no repository (no path)")


def check_ref(ref: Any) -> str:
    """Return ``ref`` (branch, tag or commit) if it is a plain ref name, else raise
    :class:`SourceRejected` (no leading ``-``, no ``..``, ``@{``, ``:``, spaces or ``.lock``,
    at most 200 characters)."""
    if not isinstance(ref, str):
        raise SourceRejected("ref must be a string", field="ref")
    if len(ref) > MAX_REF_CHARS:
        raise SourceRejected(f"ref is longer than {MAX_REF_CHARS} characters", field="ref")
    if ref.startswith("-"):
        raise SourceRejected("ref must not start with '-'", field="ref")
    if (not _REF.match(ref) or ".." in ref or ref.endswith((".", "/", ".lock")) or "//" in ref
            or "@{" in ref):
        raise SourceRejected("ref must be a branch, tag or commit name (letters, digits, "
                             "'._/+-'; no '..')", field="ref")
    return ref


def check_member_path(name: str) -> PurePosixPath:
    """The relative path an archive member called ``name`` may be written to (``.`` for the
    root itself).

    Raises:
        SourceRejected: an empty or invalid name, an absolute path, or a ``..`` component.
    """
    if not name or "\0" in name or "\\" in name:
        raise SourceRejected(f"archive member {name[:80]!r} has an invalid name", "archive")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise SourceRejected(f"archive member {name[:80]!r} has an absolute path, outside the "
                             "archive", "archive")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if ".." in parts:
        raise SourceRejected(f"archive member {name[:80]!r} points outside the archive (it "
                             "escapes through '..')", "archive")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def code_root(files: set[PurePosixPath], dirs: set[PurePosixPath]) -> PurePosixPath:
    """Where ``run.py`` is: the root, or the single top-level folder (as in GitHub's archive
    downloads), given the paths of an archive's regular files and folders.

    Raises:
        SourceRejected: no files at all, or no ``run.py`` at either place.
    """
    if not files:
        raise SourceRejected("the archive contains no files", "archive")
    if PurePosixPath(ENTRYPOINT) in files:
        return PurePosixPath(".")
    tops = {p.parts[0] for p in files | dirs}
    if len(tops) == 1:
        top = PurePosixPath(tops.pop())
        if top in dirs and top / ENTRYPOINT in files:
            return top
    raise SourceRejected(f"{ENTRYPOINT} not found at the root of the code (nor at the root of "
                         "its single top-level folder)", "archive")


def check_entrypoint(code_dir: Path) -> None:
    """Require a regular file ``run.py`` at the root of the folder ``code_dir``.

    Raises:
        SourceRejected: missing, or a link/folder instead of a file.
    """
    try:
        st = (code_dir / ENTRYPOINT).lstat()
    except FileNotFoundError:
        raise SourceRejected(f"{ENTRYPOINT} not found at the root of the code") from None
    if not stat.S_ISREG(st.st_mode):
        raise SourceRejected(f"{ENTRYPOINT} at the root must be a regular file")


class Budget:
    """Running totals of one job's code, refused the moment they pass the limits.

    Args:
        limits: the limits to hold to.

    Attributes:
        entries: files and folders counted so far.
        files: regular files counted so far.
        bytes: size of the files so far [bytes].
    """

    def __init__(self, limits: SourceLimits) -> None:
        self.limits = limits
        self.entries = self.files = self.bytes = 0

    def add_entry(self, is_file: bool) -> None:
        """Count one file or folder, then :meth:`check`."""
        self.entries += 1
        self.files += is_file
        self.check()

    def add_bytes(self, n: int) -> None:
        """Count ``n`` bytes of file contents, then :meth:`check`."""
        self.bytes += n
        self.check()

    def check(self) -> None:
        """Hold the totals to the limits.

        Raises:
            SourceRejected: more entries than ``max_files`` or more bytes than ``max_bytes``.
        """
        if self.entries > self.limits.max_files:
            raise SourceRejected(f"the code has more than {self.limits.max_files} files and "
                                 "folders", "archive")
        if self.bytes > self.limits.max_bytes:
            raise SourceRejected(f"the code is too large: it unpacks to more than the limit of "
                                 f"{size_text(self.limits.max_bytes)}", "archive")
