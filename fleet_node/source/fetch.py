"""Getting a job's code onto the node: a git URL at a ref or an uploaded archive, made readable."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fleet_node.source.archive import extract_archive
from fleet_node.source.git import fetch_git
from fleet_node.source.tree import FetchedSource, FetchLimits, make_readable
from gym_raas_mqtt.protocol import JobSource, SourceKind
from raas_platform.storage import ObjectNotFound, StorageError
from raas_platform.submission import SourceRejected, SourceUnavailable, size_text


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
        limits: see :class:`~raas_platform.submission.SourceLimits`.
        store: the :class:`~raas_platform.storage.ObjectStore` holding uploaded archives.

    Raises:
        SourceRejected: the job's fault (ends ``failed``, not retried).
        SourceUnavailable: the platform's fault (ends ``error``, retried elsewhere).
    """
    if source.kind is SourceKind.GIT:
        assert source.url is not None
        fetched = fetch_git(source.url, source.ref, dest, limits)
        make_readable(fetched.path)
        return fetched
    if store is None:
        raise SourceUnavailable("no object store configured for archive sources")
    assert source.archive_key is not None
    archive = dest.parent / (dest.name + ".archive")
    try:
        if store.size(source.archive_key) > limits.max_bytes:
            raise SourceRejected(f"the archive is larger than {size_text(limits.max_bytes)}")
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
