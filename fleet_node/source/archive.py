"""Extracting an uploaded archive (.tar.gz / .zip) member by member, refusing anything unsafe.

Absolute paths, ``..``, links, device files and FIFOs are refused, and the total size and file
count are capped while reading (zip bombs stop at the cap, whatever the headers claim).
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

from fleet_node.source.checks import (ENTRYPOINT, FetchedSource, FetchLimits, SourceRejected,
                                      SourceUnavailable, check_entrypoint, check_member_path)
from gym_raas_mqtt.errors import RaasError

_COPY_CHUNK = 1 << 16


class _Budget:
    """Running totals of one extraction, refused as soon as they pass the limits."""

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
                rel = check_member_path(m.name)
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
                rel = check_member_path(info.filename)
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
