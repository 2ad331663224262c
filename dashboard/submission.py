"""Validating submissions (git URL + ref, or an uploaded archive) and handing them to the queue.

The checks are the platform's shared ones (:mod:`raas_platform.submission`), the very code a
node runs before it runs a job, so what the API accepts a node accepts too. Every refusal is a
:class:`SubmissionError` with a message meant for the user; the web layers turn it into a form
error or a JSON 400/413/415. A git submission's ref is resolved with ``git ls-remote`` (unless
``RAAS_SUBMIT_GIT_CHECK`` is off) and the job is pinned to that commit. Nothing from a submission
ever reaches a shell.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from flask import current_app

from dashboard.config import DashboardConfig
from dispatcher import queue
from dispatcher.models import Job
from dispatcher.queue import InvalidSubmission, QueueLimits
from gym_raas_mqtt import protocol
from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.protocol import JobSource, SourceKind
from raas_platform import submission as rules
from raas_platform.submission.metadata import parse_env_pairs, split_args, split_tags
from raas_platform.settings import GIT_SCHEMES

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")


class SubmissionError(RaasError):
    """A submission was refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def _refused(e: rules.SourceRejected | rules.SourceUnavailable, field: str) -> SubmissionError:
    return SubmissionError(str(e), 400, getattr(e, "field", None) or field)


@dataclass(frozen=True)
class Limits:
    """Bounds an uploaded archive must respect (from :class:`dashboard.config.DashboardConfig`).

    The time-limit bounds are the queue's (:class:`~dispatcher.limits.QueueLimits`).

    Attributes:
        max_upload_bytes: largest archive upload [bytes].
        max_unpacked_bytes: largest total size of an archive's contents [bytes]
            (``RAAS_CLONE_MAX_BYTES``, which nodes apply too).
        max_archive_members: most members, files and folders, in an archive
            (``RAAS_CLONE_MAX_FILES``, which nodes apply too).
    """

    max_upload_bytes: int
    max_unpacked_bytes: int
    max_archive_members: int


@dataclass(frozen=True)
class GitPolicy:
    """How git submissions are checked (from :class:`~dashboard.config.DashboardConfig`).

    Attributes:
        schemes: URL schemes accepted (``RAAS_CLONE_SCHEMES``, which nodes apply too).
        check: resolve the ref with ``git ls-remote`` and pin the commit
            (``RAAS_SUBMIT_GIT_CHECK``).
        timeout_s: time limit of that ``git ls-remote`` [s].
    """

    schemes: tuple[str, ...] = GIT_SCHEMES.default
    check: bool = True
    timeout_s: float = 20.0

    @classmethod
    def from_config(cls, cfg: DashboardConfig) -> "GitPolicy":
        """The policy a dashboard configured with ``cfg`` applies."""
        return cls(tuple(cfg.git_schemes), cfg.git_check, cfg.git_check_timeout_s)


def app_git_policy() -> GitPolicy:
    """The current app's :class:`GitPolicy`, built once from the config it was created with."""
    ext = current_app.extensions
    if "raas_git_policy" not in ext:
        ext["raas_git_policy"] = GitPolicy.from_config(ext["raas_config"])
    return ext["raas_git_policy"]


def check_git_url(url: Any, schemes: tuple[str, ...] = GIT_SCHEMES.default) -> str:
    """Return the URL (surrounding whitespace removed) if it is an acceptable git remote.

    Accepted: ``https://`` and ``ssh://`` URLs and scp-like ``user@host:path`` by default;
    ``file:///absolute/path`` only when ``schemes`` holds ``file`` (see
    :func:`raas_platform.submission.check_git_url`).

    Raises:
        SubmissionError: anything else, or a URL that could be read as a git option.
    """
    try:
        return rules.check_git_url(url.strip() if isinstance(url, str) else url, schemes)
    except rules.SourceRejected as e:
        raise _refused(e, "url") from None


def check_ref(ref: Any) -> str | None:
    """Return the ref (branch, tag or commit) or None for the default branch.

    Raises:
        SubmissionError: an option-like, overlong or malformed ref.
    """
    if ref is None or (isinstance(ref, str) and not ref.strip()):
        return None
    try:
        return rules.check_ref(ref.strip() if isinstance(ref, str) else ref)
    except rules.SourceRejected as e:
        raise _refused(e, "ref") from None


def pin_commit(url: str, ref: str | None, policy: GitPolicy) -> str:
    """The commit ``ref`` names at ``url`` (see :func:`raas_platform.submission.pin_ref`).

    Raises:
        SubmissionError: (400) the repository does not exist, cannot be reached or read, or has
            no such ref.
    """
    limits = rules.SourceLimits(timeout_s=policy.timeout_s, allowed_schemes=policy.schemes)
    try:
        return rules.pin_ref(url, ref, limits)
    except (rules.SourceRejected, rules.SourceUnavailable) as e:
        raise _refused(e, "url") from None


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


def check_archive(data: bytes, suffix: str, limits: Limits) -> int:
    """Check an uploaded archive's size, type and members without extracting it.

    The members pass the rules a node applies when it extracts them
    (:func:`raas_platform.submission.scan_archive`), ``run.py`` at the root included.

    Returns:
        The number of regular files in it.

    Raises:
        SubmissionError: too large (413), not that kind of archive (415), or unsafe members
            (absolute paths, ``..``, links, devices, duplicates), too many members, too large
            unpacked, or no ``run.py`` at its root (400).
    """
    if len(data) > limits.max_upload_bytes:
        raise SubmissionError(f"the archive is larger than {limits.max_upload_bytes} bytes", 413,
                              "archive")
    if not data:
        raise SubmissionError("the archive is empty", field="archive")
    if suffix == ".zip" and not data.startswith(b"PK\x03\x04"):
        raise SubmissionError("the file is not a zip archive", 415, "archive")
    if suffix != ".zip" and not data.startswith(b"\x1f\x8b"):
        raise SubmissionError("the file is not a gzip-compressed tar archive", 415, "archive")
    code_limits = rules.SourceLimits(max_bytes=limits.max_unpacked_bytes,
                                     max_files=limits.max_archive_members)
    try:
        return rules.scan_archive(io.BytesIO(data), code_limits).files
    except rules.SourceRejected as e:
        raise _refused(e, "archive") from None


def archive_key(owner: str, suffix: str) -> str:
    """A fresh object-store key for an uploaded archive of ``owner``."""
    return f"uploads/{protocol.check_id(owner, 'owner')}/{uuid.uuid4().hex}{suffix}"


def git_source(url: Any, ref: Any, policy: GitPolicy | None = None) -> JobSource:
    """A validated git :class:`JobSource`, its ref pinned to a commit when ``policy.check``.

    Args:
        url: the submitted URL.
        ref: the submitted branch, tag or commit; None or empty for the default branch.
        policy: how to check; None for the current app's (:func:`app_git_policy`).

    Raises:
        SubmissionError: see :func:`check_git_url`, :func:`check_ref` and :func:`pin_commit`.
    """
    policy = policy or app_git_policy()
    url = check_git_url(url, policy.schemes)
    ref = check_ref(ref)
    if policy.check:
        ref = pin_commit(url, ref, policy)
    return JobSource(SourceKind.GIT, url=url, ref=ref)


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


def run_metadata(name: Any = None, tags: Any = None, notes: Any = None, args: Any = None,
                 env: Any = None) -> rules.RunMetadata:
    """The run's metadata from JSON values, checked by the platform's rules
    (:mod:`raas_platform.submission.metadata`).

    Raises:
        SubmissionError: (400) the first field that breaks its rule.
    """
    try:
        return rules.check_metadata(name, tags, notes, args, env)
    except rules.MetadataRejected as e:
        raise _refused(e, "metadata") from None


def text_metadata(form: Mapping[str, str]) -> rules.RunMetadata:
    """The run's metadata from text fields (the submit page, a multipart upload): ``name``,
    ``tags`` separated by commas or spaces, ``notes``, ``args`` as shell words, ``env`` as
    ``NAME=value`` lines.

    Raises:
        SubmissionError: (400) unbalanced quotes, a line without ``=``, or a field that breaks
            its rule.
    """
    try:
        return run_metadata(form.get("name"), split_tags(form.get("tags") or ""),
                            form.get("notes"), split_args(form.get("args") or ""),
                            parse_env_pairs((form.get("env") or "").splitlines()))
    except rules.MetadataRejected as e:
        raise _refused(e, "metadata") from None


def submit(owner: str, source: JobSource, time_limit_s: float, queue_limits: QueueLimits,
           meta: rules.RunMetadata | None = None) -> Job:
    """Create the job through the queue (the only writer of job state) and return it.

    Raises:
        InvalidSubmission: the queue refused it (e.g. an unknown owner).
    """
    return queue.enqueue(owner, source, time_limit_s, limits=queue_limits, meta=meta)
