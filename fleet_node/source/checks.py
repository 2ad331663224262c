"""The rules a job's code must pass: limits, URL/ref/archive-member/entrypoint checks, the faults.

Everything here treats the URL, the ref and the archive as hostile (fault 3 of the original RaaS:
shell injection through the repo URL). Errors are split by who is at fault: :class:`SourceRejected`
(the user's source is unusable: the job ends ``failed`` with the message as reason) and
:class:`SourceUnavailable` (the platform could not fetch it: the job ends ``error`` and is retried
elsewhere).
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable
from urllib.parse import urlsplit

from gym_raas_mqtt.errors import RaasError

ENTRYPOINT = "run.py"
"""The file every job must have at the root of its code (as in the original RaaS)."""
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]{0,199}$")


class SourceRejected(RaasError):
    """The job's source is unusable (bad URL or ref, too big, unsafe archive, no run.py)."""


class SourceUnavailable(RaasError):
    """The platform could not fetch the source (git missing, network down, store error)."""


@dataclass(frozen=True)
class FetchLimits:
    """Limits applied while fetching.

    Attributes:
        max_bytes: largest checkout / extracted tree (bytes); the archive itself too.
        max_files: most files in the tree.
        timeout_s: wall-clock limit for the whole fetch (s).
        allowed_schemes: URL schemes accepted for git sources.
    """

    max_bytes: int = 50 * 1024 * 1024
    max_files: int = 10_000
    timeout_s: float = 120.0
    allowed_schemes: tuple[str, ...] = ("https", "ssh")


@dataclass(frozen=True)
class FetchedSource:
    """Code ready to be mounted into the job container.

    Attributes:
        path: folder holding ``run.py``.
        commit_sha: the resolved commit (git sources), or None for archives.
        description: what was fetched, for logs (no credentials).
        size_bytes: total size of the files (bytes).
        files: number of files.
    """

    path: Path
    commit_sha: str | None
    description: str
    size_bytes: int
    files: int


def check_git_url(url: str, allowed_schemes: Iterable[str]) -> str:
    """Return ``url`` if it is acceptable for ``git fetch``, else raise :class:`SourceRejected`.

    Accepted: ``<scheme>://host/path`` (or ``file:///path``) with an allowed scheme, no leading
    ``-``, no whitespace or control characters, no password embedded in the URL.
    """
    allowed = tuple(allowed_schemes)
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise SourceRejected("git URL is empty or too long")
    if url.startswith("-"):
        raise SourceRejected("git URL must not start with '-'")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise SourceRejected("git URL contains whitespace or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if "::" in url.split("/", 1)[0] or scheme not in allowed:
        raise SourceRejected(f"git URL scheme {scheme or url.split(':', 1)[0]!r} is not allowed "
                             f"(allowed: {', '.join(allowed)})")
    if scheme == "file":
        if parts.netloc or not parts.path.startswith("/"):
            raise SourceRejected("file URLs must look like file:///absolute/path")
    else:
        if not parts.hostname or parts.hostname.startswith("-"):
            raise SourceRejected("git URL has no valid host")
        if parts.password:
            raise SourceRejected("git URL must not embed a password")
        if not parts.path or parts.path == "/":
            raise SourceRejected("git URL has no repository path")
    return url


def check_ref(ref: str) -> str:
    """Return ``ref`` (branch, tag or commit) if it is a plain ref name, else raise
    :class:`SourceRejected` (no leading ``-``, no ``..``, ``@{``, ``:``, spaces or ``.lock``)."""
    if not isinstance(ref, str) or not _REF.match(ref) or ".." in ref or "@{" in ref \
            or ref.endswith((".lock", "/", ".")) or "//" in ref:
        raise SourceRejected(f"invalid git ref {str(ref)[:80]!r}")
    return ref


def check_entrypoint(code_dir: Path) -> None:
    """Require a regular file ``run.py`` at the root of ``code_dir``.

    Raises:
        SourceRejected: missing, or a link/folder instead of a file.
    """
    path = code_dir / ENTRYPOINT
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise SourceRejected(f"{ENTRYPOINT} not found at the root of the code") from None
    if not stat.S_ISREG(st.st_mode):
        raise SourceRejected(f"{ENTRYPOINT} at the root must be a regular file")


def check_tree(size: int, files: int, limits: FetchLimits) -> None:
    """Refuse a tree of ``size`` bytes holding ``files`` files that is beyond ``limits``.

    Raises:
        SourceRejected: too big or too many files.
    """
    if size > limits.max_bytes:
        raise SourceRejected(f"code is {size / 2**20:.1f} MiB, more than the "
                             f"{limits.max_bytes / 2**20:.0f} MiB limit")
    if files > limits.max_files:
        raise SourceRejected(f"code has {files} files, more than the limit of {limits.max_files}")


def check_member_path(name: str) -> PurePosixPath:
    """The relative path an archive member called ``name`` may be written to.

    Raises:
        SourceRejected: an empty or invalid name, an absolute path, or a ``..`` component.
    """
    if not name or "\0" in name or "\\" in name:
        raise SourceRejected(f"archive member {name[:80]!r} has an invalid name")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise SourceRejected(f"archive member {name[:80]!r} has an absolute path")
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise SourceRejected(f"archive member {name[:80]!r} escapes the folder ('..')")
    if not parts:
        return PurePosixPath(".")
    return PurePosixPath(*parts)
