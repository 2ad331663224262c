"""Validating submissions (git URL + ref, or an uploaded archive) and handing them to the queue.

Every check here yields a :class:`SubmissionError` with a message meant for the user; the web
layers turn it into a form error or a JSON 400/413/415. Nothing from a submission ever reaches a
shell: the URL and ref are only stored, and the node passes them to git as separate arguments
after ``--``.
"""

from __future__ import annotations

import io
import posixpath
import re
import tarfile
import uuid
import zipfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from dispatcher import queue
from dispatcher.models import Job
from dispatcher.queue import InvalidSubmission, QueueLimits
from gym_raas_mqtt import protocol
from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.protocol import JobSource, SourceKind

MAX_URL_CHARS = 2048
MAX_REF_CHARS = 200
GIT_SCHEMES = ("https", "ssh", "file", "git")  # git:// is read-only, unauthenticated, like https
SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._~/+-][^\s]*$")
REF_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/+-]*$")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")


class SubmissionError(RaasError):
    """A submission was refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass(frozen=True)
class Limits:
    """Bounds an uploaded archive must respect (from :class:`dashboard.config.DashboardConfig`).

    The time-limit bounds are the queue's (:class:`~dispatcher.limits.QueueLimits`).

    Attributes:
        max_upload_bytes: largest archive upload [bytes].
        max_unpacked_bytes: largest total size of an archive's contents [bytes].
        max_archive_members: most members (files and folders) in an archive.
    """

    max_upload_bytes: int
    max_unpacked_bytes: int
    max_archive_members: int


def check_git_url(url: Any) -> str:
    """Return the URL if it is an acceptable git remote.

    Accepted: ``https://``, ``ssh://``, ``git://``, ``file:///`` URLs and scp-like
    ``user@host:path``.

    Raises:
        SubmissionError: anything else, or a URL that could be read as a git option.
    """
    if not isinstance(url, str) or not url.strip():
        raise SubmissionError("a git URL is required", field="url")
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        raise SubmissionError(f"the URL is longer than {MAX_URL_CHARS} characters", field="url")
    if url.startswith("-"):
        raise SubmissionError("the URL must not start with '-'", field="url")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise SubmissionError("the URL must not contain spaces or control characters", field="url")
    if SCP_LIKE.match(url) and "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.scheme not in GIT_SCHEMES:
        raise SubmissionError("the URL must start with https://, ssh://, git://, file:// or be "
                              "of the form git@host:path", field="url")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise SubmissionError("a file:// URL needs an absolute path (file:///srv/repo)",
                                  field="url")
    elif not parts.hostname:
        raise SubmissionError("the URL has no host name", field="url")
    elif parts.hostname.startswith("-"):
        raise SubmissionError("the host name must not start with '-'", field="url")
    if "::" in url.split("://", 1)[0]:  # git's transport::address helper syntax
        raise SubmissionError("remote-helper URLs (transport::address) are not allowed",
                              field="url")
    return url


def check_ref(ref: Any) -> str | None:
    """Return the ref (branch, tag or commit) or None for the default branch.

    Raises:
        SubmissionError: an option-like, overlong or malformed ref.
    """
    if ref is None or (isinstance(ref, str) and not ref.strip()):
        return None
    if not isinstance(ref, str):
        raise SubmissionError("ref must be a string", field="ref")
    ref = ref.strip()
    if len(ref) > MAX_REF_CHARS:
        raise SubmissionError(f"ref is longer than {MAX_REF_CHARS} characters", field="ref")
    if ref.startswith("-"):
        raise SubmissionError("ref must not start with '-'", field="ref")
    if (not REF_PATTERN.match(ref) or ".." in ref or ref.endswith((".", "/", ".lock"))
            or "//" in ref or "@{" in ref):
        raise SubmissionError("ref must be a branch, tag or commit name (letters, digits, "
                              "'._/+-'; no '..')", field="ref")
    return ref


def check_time_limit(value: Any, queue_limits: QueueLimits) -> float:
    """Return the time limit in s, the default when ``value`` is None or empty.

    Form fields arrive as strings: they are parsed here; the bounds are checked by
    :meth:`QueueLimits.time_limit <dispatcher.limits.QueueLimits.time_limit>`, the one owner of
    that policy.

    Args:
        value: the submitted field (string from a form, number or None from JSON).
        queue_limits: the queue's policy, built once at start-up.

    Raises:
        SubmissionError: not a number, or outside the configured bounds.
    """
    if value is None or value == "":
        value = None
    elif isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise SubmissionError("time_limit_s must be a number of seconds",
                                  field="time_limit_s") from None
    try:
        return queue_limits.time_limit(value)
    except InvalidSubmission as e:
        raise SubmissionError(f"time_limit_s: {e}", field="time_limit_s") from None


def archive_suffix(filename: str) -> str:
    """The archive type from the file name (``.tar.gz`` or ``.zip``).

    Raises:
        SubmissionError: (415) any other file type.
    """
    low = (filename or "").lower()
    for suffix in ARCHIVE_SUFFIXES:
        if low.endswith(suffix):
            return ".zip" if suffix == ".zip" else ".tar.gz"
    raise SubmissionError("the archive must be a .tar.gz, .tgz or .zip file", 415, "archive")


def _check_member(name: str) -> None:
    """Refuse a member name that would land outside the extraction folder."""
    norm = posixpath.normpath(name)
    if name.startswith("/") or norm == ".." or norm.startswith("../") or "\\" in name:
        raise SubmissionError(f"archive member {name[:100]!r} points outside the archive",
                              field="archive")


def check_archive(data: bytes, suffix: str, limits: Limits) -> int:
    """Check an uploaded archive's size, type and members without extracting it.

    Returns:
        The number of regular files in it.

    Raises:
        SubmissionError: too large (413), not that kind of archive (415), or unsafe members
            (absolute paths, ``..``, links, devices), too many members or too large unpacked (400).
    """
    if len(data) > limits.max_upload_bytes:
        raise SubmissionError(f"the archive is larger than {limits.max_upload_bytes} bytes", 413,
                              "archive")
    if not data:
        raise SubmissionError("the archive is empty", field="archive")
    total = files = 0
    try:
        if suffix == ".zip":
            if not data.startswith(b"PK\x03\x04"):
                raise SubmissionError("the file is not a zip archive", 415, "archive")
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                infos = zf.infolist()
                if len(infos) > limits.max_archive_members:
                    raise SubmissionError(f"the archive has more than "
                                          f"{limits.max_archive_members} members", field="archive")
                for info in infos:
                    _check_member(info.filename)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise SubmissionError(f"archive member {info.filename[:100]!r} is a "
                                              "symbolic link", field="archive")
                    total += info.file_size
                    files += not info.is_dir()
        else:
            if not data.startswith(b"\x1f\x8b"):
                raise SubmissionError("the file is not a gzip-compressed tar archive", 415,
                                      "archive")
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
                for n, member in enumerate(tf):
                    if n >= limits.max_archive_members:
                        raise SubmissionError(f"the archive has more than "
                                              f"{limits.max_archive_members} members",
                                              field="archive")
                    _check_member(member.name)
                    if not (member.isfile() or member.isdir()):
                        raise SubmissionError(f"archive member {member.name[:100]!r} is not a "
                                              "regular file or directory", field="archive")
                    total += member.size
                    files += member.isfile()
                    if total > limits.max_unpacked_bytes:
                        break
    except SubmissionError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise SubmissionError(f"the archive cannot be read ({str(e)[:100]})",
                              field="archive") from None
    if total > limits.max_unpacked_bytes:
        raise SubmissionError(f"the archive unpacks to more than {limits.max_unpacked_bytes} "
                              "bytes", field="archive")
    if files == 0:
        raise SubmissionError("the archive contains no files", field="archive")
    return files


def archive_key(owner: str, suffix: str) -> str:
    """A fresh object-store key for an uploaded archive of ``owner``."""
    return f"uploads/{protocol.check_id(owner, 'owner')}/{uuid.uuid4().hex}{suffix}"


def git_source(url: Any, ref: Any) -> JobSource:
    """A validated git :class:`JobSource`. Raises SubmissionError."""
    return JobSource(SourceKind.GIT, url=check_git_url(url), ref=check_ref(ref))


def archive_source(store: Any, owner: str, filename: str, data: bytes,
                   limits: Limits) -> JobSource:
    """Validate an uploaded archive, store it and return its :class:`JobSource`.

    Raises:
        SubmissionError: see :func:`check_archive` and :func:`archive_suffix`.
    """
    suffix = archive_suffix(filename)
    check_archive(data, suffix, limits)
    key = archive_key(owner, suffix)
    store.put_bytes(key, data, content_type="application/octet-stream")
    return JobSource(SourceKind.ARCHIVE, archive_key=key)


def submit(owner: str, source: JobSource, time_limit_s: float,
           queue_limits: QueueLimits) -> Job:
    """Create the job through the queue (the only writer of job state) and return it.

    Raises:
        InvalidSubmission: the queue refused it (e.g. an unknown owner).
    """
    return queue.enqueue(owner, source, time_limit_s, limits=queue_limits)
