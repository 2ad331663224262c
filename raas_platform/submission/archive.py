"""Reading an uploaded archive (.tar.gz / .tgz / .tar / .zip) member by member under the rules,
for the API (which only looks at it) and the node (which also writes its files).

Every member is checked before anyone uses it: a safe relative name (no absolute path, no ``..``,
not too long), a regular file or a folder (no links, devices or FIFOs), no duplicate, and the
running totals of entries and declared sizes within :class:`~.rules.SourceLimits` (a zip bomb
stops at the first header past the limit; a node never reads more than a header declared). Once
every member was seen, :meth:`ArchiveReader.root` says where ``run.py`` is.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, BinaryIO, Iterator

from raas_platform.submission.rules import (Budget, SourceLimits, SourceRejected,
                                            check_member_path, code_root)

MAX_NAME_CHARS = 1024
"""Longest member name; longer ones could not be created on the node (PATH_MAX, NAME_MAX)."""
CHUNK_BYTES = 1 << 16
_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error,
                EOFError, OSError, ValueError, NotImplementedError, RuntimeError)


def _unreadable(e: BaseException) -> SourceRejected:
    return SourceRejected(f"the archive cannot be read ({str(e)[:100]})", "archive")


@dataclass(frozen=True)
class Member:
    """One checked archive member.

    Attributes:
        name: its name in the archive.
        path: where it goes, relative to the extraction folder.
        is_dir: a folder (else a regular file).
        size: its declared size [bytes] (0 for folders).
        info: the ``TarInfo`` or ``ZipInfo`` it came from.
    """

    name: str
    path: PurePosixPath
    is_dir: bool
    size: int
    info: Any


class ArchiveReader:
    """An archive opened for reading: its checked members, their contents and the code root.

    The format comes from the content (zip magic, else tar with any compression), never from the
    file name. Use as a context manager.

    Args:
        fileobj: the archive, opened for binary reading and seekable.
        limits: entries and unpacked size allowed.

    Raises:
        SourceRejected: the archive cannot be read.
    """

    def __init__(self, fileobj: BinaryIO, limits: SourceLimits) -> None:
        self.budget = Budget(limits)
        self.files: set[PurePosixPath] = set()
        self.dirs: set[PurePosixPath] = set()
        head = fileobj.read(4)
        fileobj.seek(0)
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        try:
            if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
                self._zip = zipfile.ZipFile(fileobj)
            else:
                self._tar = tarfile.open(fileobj=fileobj, mode="r:*")
        except _READ_ERRORS as e:
            raise _unreadable(e) from None

    def __enter__(self) -> "ArchiveReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the archive (not the file object it was read from)."""
        for archive in (self._zip, self._tar):
            if archive is not None:
                archive.close()

    def members(self) -> Iterator[Member]:
        """Every member, in archive order, each checked before it is yielded.

        Raises:
            SourceRejected: an unsafe, duplicate or unreadable member, or past the limits.
        """
        entries = self._zip.infolist() if self._zip is not None else self._tar_infos()
        for info in entries:
            member = self._check(info)
            if member is not None:
                yield member

    def _tar_infos(self) -> Iterator[tarfile.TarInfo]:
        assert self._tar is not None
        infos = iter(self._tar)
        while True:
            try:
                info = next(infos)
            except StopIteration:
                return
            except _READ_ERRORS as e:
                raise _unreadable(e) from None
            yield info

    def _check(self, info: Any) -> Member | None:
        """The member ``info`` once it passed every rule; None for the root folder itself."""
        if isinstance(info, zipfile.ZipInfo):
            name, size, is_dir = info.filename, info.file_size, info.is_dir()
            mode = info.external_attr >> 16
            # no file type at all (only permissions, as Python's writestr and Windows tools
            # write) is a regular file
            is_link = stat.S_ISLNK(mode)
            is_reg = is_dir or stat.S_IFMT(mode) in (0, stat.S_IFREG)
        else:
            name, size, is_dir = info.name, info.size, info.isdir()
            is_link, is_reg = info.issym() or info.islnk(), info.isreg() or is_dir
        if len(name) > MAX_NAME_CHARS or any(len(p) > 255 for p in name.split("/")):
            raise SourceRejected(f"archive member {name[:80]!r} has too long a name",
                                 "archive")
        path = check_member_path(name)
        if is_link:
            raise SourceRejected(f"archive member {name[:80]!r} is a link, not a regular file "
                                 "or folder", "archive")
        if not is_reg:
            raise SourceRejected(f"archive member {name[:80]!r} is not a regular file or "
                                 "folder", "archive")
        if path == PurePosixPath("."):
            if is_dir:
                return None
            raise SourceRejected(f"archive member {name[:80]!r} has an invalid name", "archive")
        self.budget.add_entry(not is_dir)
        self._place(name, path, is_dir)
        if not is_dir:
            self.budget.add_bytes(size)
        return Member(name, path, is_dir, 0 if is_dir else size, info)

    def _place(self, name: str, path: PurePosixPath, is_dir: bool) -> None:
        """Record ``path``; refuse a second file of that name or a file where a folder is."""
        if path in self.files or (not is_dir and path in self.dirs):
            raise SourceRejected(f"the archive has a duplicate member {name[:80]!r}", "archive")
        if any(parent in self.files for parent in path.parents):
            raise SourceRejected(f"archive member {name[:80]!r} lies inside a file of the "
                                 "archive", "archive")
        self.dirs.update(p for p in path.parents if p != PurePosixPath("."))
        (self.dirs if is_dir else self.files).add(path)

    def chunks(self, member: Member) -> Iterator[bytes]:
        """The contents of file ``member``, never more than its declared size.

        Raises:
            SourceRejected: the data is corrupt or longer than declared.
        """
        try:
            if self._zip is not None:
                src: Any = self._zip.open(member.info)
            else:
                assert self._tar is not None
                src = self._tar.extractfile(member.info)
            with src:
                left = member.size
                while chunk := src.read(CHUNK_BYTES):
                    left -= len(chunk)
                    if left < 0:
                        raise SourceRejected(f"archive member {member.name[:80]!r} is larger "
                                             "than its header says", "archive")
                    yield chunk
        except _READ_ERRORS as e:
            raise _unreadable(e) from None

    def root(self) -> PurePosixPath:
        """Where ``run.py`` is (see :func:`~.rules.code_root`); call after :meth:`members`.

        Raises:
            SourceRejected: no files, or no ``run.py`` at the root or in a single top folder.
        """
        return code_root(self.files, self.dirs)


@dataclass(frozen=True)
class ArchiveContents:
    """What a checked archive holds.

    Attributes:
        files: regular files.
        bytes: their total declared size [bytes].
        root: the folder holding ``run.py``, relative (``.`` or the single top folder).
    """

    files: int
    bytes: int
    root: PurePosixPath


def scan_archive(fileobj: BinaryIO, limits: SourceLimits) -> ArchiveContents:
    """Check an archive without extracting it (what the API does at upload).

    Raises:
        SourceRejected: unreadable, an unsafe member, past the limits, or no ``run.py``.
    """
    with ArchiveReader(fileobj, limits) as reader:
        for _ in reader.members():
            pass
        root = reader.root()
        return ArchiveContents(reader.budget.files, reader.budget.bytes, root)
