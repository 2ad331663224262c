"""Fetching a job's code onto the node: a git URL at a ref, or an uploaded archive, checked hard.

Everything here treats the URL, the ref and the archive as hostile (fault 3 of the original RaaS:
shell injection through the repo URL):

* git runs **without a shell** (argument lists), with ``--`` before every URL/ref, only for
  allowed schemes (``GIT_ALLOW_PROTOCOL`` as a second fence), never prompting
  (``GIT_TERMINAL_PROMPT=0``, ssh ``BatchMode``), without hooks, LFS smudging or submodules, under a
  time limit and a size watch that kills it when the folder grows past the limit. It fetches only
  the requested ref at depth 1 (a commit SHA directly when the server allows it) and records the
  resolved commit SHA; ``.git`` is removed before the code reaches the container.
* archives (.tar.gz / .zip) are extracted member by member: absolute paths, ``..``, links, device
  files and FIFOs are refused, and the total size and file count are capped while reading (zip
  bombs stop at the cap, whatever the headers claim).

Errors are split by who is at fault: :class:`SourceRejected` (the user's source is unusable: the
job ends ``failed`` with the message as reason) and :class:`SourceUnavailable` (the platform could
not fetch it: the job ends ``error`` and is retried elsewhere).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import subprocess
import tarfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable
from urllib.parse import urlsplit, urlunsplit

from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.protocol import JobSource, SourceKind

ENTRYPOINT = "run.py"
"""The file every job must have at the root of its code (as in the original RaaS)."""
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]{0,199}$")
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_SHORT_SHA = re.compile(r"^[0-9a-f]{7,39}$")
_COPY_CHUNK = 1 << 16


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


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------
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


def tree_usage(root: Path, skip: str | None = None) -> tuple[int, int]:
    """(bytes, files) of the regular files under ``root`` (links are not followed)."""
    total = files = 0
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for e in entries:
            if skip and e.name == skip and e.is_dir(follow_symlinks=False):
                continue
            if e.is_dir(follow_symlinks=False):
                stack.append(Path(e.path))
            else:
                try:
                    total += e.stat(follow_symlinks=False).st_size
                except OSError:
                    pass
                files += 1
    return total, files


# ------------------------------------------------------------------------------------------------
# git
# ------------------------------------------------------------------------------------------------
def _git_env(allowed: tuple[str, ...]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
        "GIT_ALLOW_PROTOCOL": ":".join(allowed),
        "GIT_LFS_SKIP_SMUDGE": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
        "LC_ALL": "C",
    })
    return env


_GIT_SAFE = ("-c", "core.hooksPath=/dev/null", "-c", "protocol.ext.allow=never",
             "-c", "core.symlinks=true", "-c", "advice.detachedHead=false",
             "-c", "init.defaultBranch=main", "-c", "submodule.recurse=false")


class _Git:
    """Runs git commands in one folder under a shared deadline and size watch."""

    def __init__(self, repo: Path, limits: FetchLimits) -> None:
        self.repo = repo
        self.limits = limits
        self.deadline = time.monotonic() + limits.timeout_s
        self.env = _git_env(limits.allowed_schemes)

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["git", *_GIT_SAFE, "-C", str(self.repo), *args]
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=self.env, start_new_session=True)
        except FileNotFoundError as e:
            raise SourceUnavailable("git is not installed on this node") from e
        out, err = self._watch(proc)
        result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
        if check and proc.returncode != 0:
            raise _classify(args[0], err.decode("utf-8", "replace"))
        return result

    def _watch(self, proc: subprocess.Popen) -> tuple[bytes, bytes]:
        # Poll so a growing fetch is killed at the size limit, not only at the time limit.
        # Objects plus checkout may briefly hold the tree twice: allow 2x during git commands.
        next_check = 0.0
        while True:
            try:
                return proc.communicate(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if now > self.deadline:
                self._kill(proc)
                raise SourceRejected(f"fetching the code took longer than "
                                     f"{self.limits.timeout_s:.0f} s")
            if now >= next_check:
                next_check = now + 1.0
                used, _ = tree_usage(self.repo)
                if used > 2 * self.limits.max_bytes:
                    self._kill(proc)
                    raise SourceRejected(f"repository is larger than "
                                         f"{self.limits.max_bytes // 2**20} MiB")

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, 9)
        except OSError:
            proc.kill()
        proc.communicate()


_USER_FAULTS = ("not found", "does not appear to be a git repository", "couldn't find remote ref",
                "could not read username", "authentication failed", "permission denied",
                "not our ref", "unadvertised object", "invalid", "no such", "bad object",
                "does not exist", "access denied", "repository not", "not a valid",
                "terminal prompts disabled", "did not match", "unknown revision",
                "is not allowed", "transport '")


def _classify(op: str, stderr: str) -> RaasError:
    """Map a failed git command to user fault (rejected) or platform fault (unavailable)."""
    text = " ".join(stderr.split())[-400:]
    low = text.lower()
    if any(s in low for s in _USER_FAULTS):
        return SourceRejected(f"git {op} failed: {text}")
    return SourceUnavailable(f"git {op} failed: {text}")


def fetch_git(url: str, ref: str | None, dest: Path, limits: FetchLimits = FetchLimits()
              ) -> FetchedSource:
    """Fetch ``url`` at ``ref`` into the new folder ``dest`` and pin the commit.

    Args:
        url: repository URL (see :func:`check_git_url`).
        ref: branch, tag or commit SHA (7–40 hex); None for the remote's default branch.
        dest: folder to create (must not exist); receives the working tree without ``.git``.
        limits: size, file-count, time and scheme limits.

    Returns:
        The checked-out code with its resolved commit SHA.

    Raises:
        SourceRejected: invalid URL/ref, unknown ref, too big, too slow, no run.py.
        SourceUnavailable: git missing or an infrastructure failure.
    """
    check_git_url(url, limits.allowed_schemes)
    if ref is not None:
        check_ref(ref)
    dest.mkdir(parents=True, exist_ok=False)
    git = _Git(dest, limits)
    git("init", "-q")
    git("remote", "add", "origin", "--", url)
    want = ref or "HEAD"
    fetched = git("fetch", "-q", "--depth", "1", "--no-tags", "origin", "--", want,
                  check=False)
    if fetched.returncode != 0:
        if ref is None or not (_FULL_SHA.match(ref) or _SHORT_SHA.match(ref)):
            raise _classify("fetch", fetched.stderr.decode("utf-8", "replace"))
        # The server refused a SHA "want" (or it is abbreviated): fetch history, then resolve it.
        git("fetch", "-q", "--no-tags", "origin", "--", "+refs/heads/*:refs/remotes/origin/*")
        sha = git("rev-parse", "--verify", "--quiet", "--end-of-options",
                  f"{ref}^{{commit}}", check=False)
        if sha.returncode != 0:
            raise SourceRejected(f"commit {ref} not found in {url}")
        target = sha.stdout.decode().strip()
    else:
        target = "FETCH_HEAD"
    git("checkout", "-q", "--detach", target, "--")
    commit = git("rev-parse", "HEAD").stdout.decode().strip()
    if ref and _FULL_SHA.match(ref) and commit != ref:  # pragma: no cover - defensive
        raise SourceRejected(f"fetched commit {commit} is not the requested {ref}")
    shutil.rmtree(dest / ".git", ignore_errors=True)
    size, files = tree_usage(dest)
    _check_tree(size, files, limits)
    check_entrypoint(dest)
    return FetchedSource(dest, commit, f"{url}@{ref or 'HEAD'} ({commit[:12]})", size, files)


def _check_tree(size: int, files: int, limits: FetchLimits) -> None:
    if size > limits.max_bytes:
        raise SourceRejected(f"code is {size / 2**20:.1f} MiB, more than the "
                             f"{limits.max_bytes / 2**20:.0f} MiB limit")
    if files > limits.max_files:
        raise SourceRejected(f"code has {files} files, more than the limit of {limits.max_files}")


# ------------------------------------------------------------------------------------------------
# Archives
# ------------------------------------------------------------------------------------------------
def _safe_member_path(name: str) -> PurePosixPath:
    """The relative path an archive member may be written to, or :class:`SourceRejected`."""
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


class _Budget:
    def __init__(self, limits: FetchLimits) -> None:
        self.limits = limits
        self.bytes = 0
        self.files = 0

    def add_file(self) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise SourceRejected(f"archive has more than {self.limits.max_files} files")

    def add_bytes(self, n: int) -> None:
        self.bytes += n
        if self.bytes > self.limits.max_bytes:
            raise SourceRejected(f"archive expands to more than "
                                 f"{self.limits.max_bytes / 2**20:.0f} MiB")


def _copy_capped(src: Any, target: Path, budget: _Budget) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL + O_NOFOLLOW: never write through a link or over an earlier member.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(_COPY_CHUNK):
            budget.add_bytes(len(chunk))
            out.write(chunk)


def _extract_tar(archive: Path, dest: Path, budget: _Budget) -> None:
    try:
        tf = tarfile.open(archive, mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise SourceRejected(f"not a readable tar archive: {e}") from None
    with tf:
        try:
            for m in tf:
                rel = _safe_member_path(m.name)
                if m.isdir():
                    (dest / rel).mkdir(parents=True, exist_ok=True)
                    continue
                if m.issym() or m.islnk():
                    raise SourceRejected(f"archive member {m.name[:80]!r} is a link")
                if not m.isreg():
                    raise SourceRejected(f"archive member {m.name[:80]!r} is not a regular file")
                budget.add_file()
                if m.size > budget.limits.max_bytes:
                    raise SourceRejected(f"archive member {m.name[:80]!r} is too large")
                src = tf.extractfile(m)
                assert src is not None
                _copy_capped(src, dest / rel, budget)
        except FileExistsError as e:
            raise SourceRejected(f"archive has a duplicate member {e.filename!r}") from None
        except (tarfile.TarError, EOFError, ValueError, zlib.error) as e:
            raise SourceRejected(f"corrupt tar archive: {e}") from None
        except OSError as e:
            raise _os_error(e) from None


def _extract_zip(archive: Path, dest: Path, budget: _Budget) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise SourceRejected(f"not a readable zip archive: {e}") from None
    with zf:
        try:
            for info in zf.infolist():
                rel = _safe_member_path(info.filename)
                mode = info.external_attr >> 16
                if info.is_dir():
                    (dest / rel).mkdir(parents=True, exist_ok=True)
                    continue
                if stat.S_ISLNK(mode):
                    raise SourceRejected(f"archive member {info.filename[:80]!r} is a link")
                if mode and not stat.S_ISREG(mode):
                    raise SourceRejected(f"archive member {info.filename[:80]!r} is not a "
                                         f"regular file")
                budget.add_file()
                if info.file_size > budget.limits.max_bytes:
                    raise SourceRejected(f"archive member {info.filename[:80]!r} is too large")
                with zf.open(info) as src:
                    _copy_capped(src, dest / rel, budget)
        except FileExistsError as e:
            raise SourceRejected(f"archive has a duplicate member {e.filename!r}") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError,
                RuntimeError, ValueError) as e:
            raise SourceRejected(f"corrupt zip archive: {e}") from None
        except OSError as e:
            raise _os_error(e) from None


def _os_error(e: OSError) -> RaasError:
    # A member writing into a file-as-folder (ENOTDIR/EISDIR/ELOOP) is the archive's fault;
    # anything else (disk full, permissions) is the node's.
    if e.errno in (errno.ENOTDIR, errno.EISDIR, errno.ELOOP):
        return SourceRejected(f"archive layout is invalid: {e.strerror}")
    return SourceUnavailable(f"cannot extract archive: {e}")


def extract_archive(archive: Path, dest: Path, limits: FetchLimits = FetchLimits()
                    ) -> FetchedSource:
    """Extract a .tar.gz/.tgz/.tar or .zip into the new folder ``dest``, safely.

    If the archive holds a single top-level folder (as GitHub's downloads do), that folder is
    the code root.

    Raises:
        SourceRejected: unreadable, unsafe member, too big, too many files, no run.py.
    """
    if archive.stat().st_size > limits.max_bytes:
        raise SourceRejected(f"archive is larger than {limits.max_bytes / 2**20:.0f} MiB")
    with open(archive, "rb") as f:
        magic = f.read(4)
    dest.mkdir(parents=True, exist_ok=False)
    budget = _Budget(limits)
    if magic.startswith(b"PK\x03\x04") or magic.startswith(b"PK\x05\x06"):
        _extract_zip(archive, dest, budget)
    else:
        _extract_tar(archive, dest, budget)
    root = dest
    entries = list(root.iterdir())
    if not (root / ENTRYPOINT).exists() and len(entries) == 1 and entries[0].is_dir() \
            and not entries[0].is_symlink():
        root = entries[0]
    check_entrypoint(root)
    return FetchedSource(root, None, f"archive {archive.name}", budget.bytes, budget.files)


def make_readable(root: Path) -> None:
    """Folders 0755, files 0644 (0755 when executable) under ``root``, whatever the umask was:
    the job container's unprivileged uid must read the code. Links are left alone."""
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                os.chmod(path, 0o755 if st.st_mode & 0o100 else 0o644)


def describe_source(source: JobSource) -> str:
    """A one-line description of a source for logs, with any user info stripped from the URL."""
    if source.kind is SourceKind.ARCHIVE:
        return f"archive {source.archive_key}"
    parts = urlsplit(source.url or "")
    if parts.username or parts.password:
        parts = parts._replace(netloc=parts.hostname or "")
    return f"git {urlunsplit(parts)} at {source.ref or 'HEAD'}"


def fetch_source(source: JobSource, dest: Path, limits: FetchLimits, store: Any = None
                 ) -> FetchedSource:
    """Fetch a job's :class:`~gym_raas_mqtt.protocol.JobSource` into the new folder ``dest``.

    Args:
        source: git URL + ref, or an object-store archive key.
        dest: folder to create for the code (its parent must exist and be private to the job).
        limits: see :class:`FetchLimits`.
        store: the :class:`~raas_platform.storage.ObjectStore` holding uploaded archives.

    Raises:
        SourceRejected: the job's fault (ends ``failed``).
        SourceUnavailable: the platform's fault (ends ``error``, retried elsewhere).
    """
    if source.kind is SourceKind.GIT:
        assert source.url is not None
        fetched = fetch_git(source.url, source.ref, dest, limits)
        make_readable(fetched.path)
        return fetched
    from raas_platform.storage import ObjectNotFound, StorageError

    if store is None:
        raise SourceUnavailable("no object store configured for archive sources")
    assert source.archive_key is not None
    archive = dest.parent / (dest.name + ".archive")
    try:
        if store.size(source.archive_key) > limits.max_bytes:
            raise SourceRejected(f"archive is larger than {limits.max_bytes / 2**20:.0f} MiB")
        store.get_file(source.archive_key, archive)
    except ObjectNotFound:
        raise SourceRejected(f"uploaded archive {source.archive_key!r} does not exist") from None
    except StorageError as e:
        raise SourceUnavailable(f"cannot download the archive: {e}") from e
    try:
        fetched = extract_archive(archive, dest, limits)
    finally:
        archive.unlink(missing_ok=True)
    make_readable(dest)
    return fetched


__all__ = ["FetchLimits", "FetchedSource", "SourceRejected", "SourceUnavailable", "fetch_git",
           "extract_archive", "fetch_source", "check_git_url", "check_ref", "check_entrypoint",
           "describe_source", "make_readable", "ENTRYPOINT"]
