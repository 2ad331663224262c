"""Extracting an uploaded archive (.tar.gz / .tgz / .tar / .zip) onto the node, member by member.

The members come checked from the platform's shared reader
(:class:`~raas_platform.submission.ArchiveReader`: the same rules the API applied at upload);
this module only writes them, never through a link or over an earlier file, and never more bytes
than a member's header declared.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Iterator

from fleet_node.source.tree import FetchedSource, FetchLimits
from gym_raas_mqtt.errors import RaasError
from raas_platform.submission import (ArchiveReader, SourceRejected, SourceUnavailable,
                                      check_entrypoint, size_text)


def _write(chunks: Iterator[bytes], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL + O_NOFOLLOW: never write through a link or over an earlier member.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out:
        for chunk in chunks:
            out.write(chunk)


def _os_error(e: OSError) -> RaasError:
    # A member that cannot be placed (file-as-folder, link, existing name, overlong path) is
    # the archive's fault; anything else (disk full, permissions) is the node's.
    if e.errno in (errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.EEXIST, errno.ENAMETOOLONG):
        return SourceRejected(f"archive layout is invalid: {e.strerror}")
    return SourceUnavailable(f"cannot extract archive: {e}")


def extract_archive(archive: Path, dest: Path, limits: FetchLimits = FetchLimits()
                    ) -> FetchedSource:
    """Extract a .tar.gz/.tgz/.tar or .zip into the new folder ``dest``, safely.

    If the archive holds a single top-level folder (as GitHub's downloads do), that folder is
    the code root.

    Raises:
        SourceRejected: unreadable, unsafe member, too big, too many entries, no run.py.
        SourceUnavailable: the node could not write the files.
    """
    if archive.stat().st_size > limits.max_bytes:
        raise SourceRejected(f"the archive is larger than {size_text(limits.max_bytes)}")
    dest.mkdir(parents=True, exist_ok=False)
    with open(archive, "rb") as f, ArchiveReader(f, limits) as reader:
        try:
            for member in reader.members():
                if member.is_dir:
                    (dest / member.path).mkdir(parents=True, exist_ok=True)
                else:
                    _write(reader.chunks(member), dest / member.path)
        except OSError as e:
            raise _os_error(e) from None
        root = dest / reader.root()
        check_entrypoint(root)
        return FetchedSource(root, None, f"archive {archive.name}", reader.budget.bytes,
                             reader.budget.files)
