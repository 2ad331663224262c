"""The local object store: objects as files under a root folder (single host or a shared mount)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterator

from raas_platform.storage.base import (ObjectNotFound, ObjectStore, StorageError, check_key,
                                        check_prefix)


class LocalStore(ObjectStore):
    """Objects as files under a root folder (single host, or a shared mount).

    Writes go to a temporary file in the same folder and are renamed into place, so readers never
    see a partial object.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        """The file of ``key`` (checked: it stays under the root)."""
        return self.root / PurePosixPath(check_key(key))

    def _write(self, key: str, writer: Callable[[BinaryIO], object]) -> None:
        """Write ``key`` through ``writer`` into a temporary file, then rename it into place."""
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    writer(f)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            raise StorageError(f"cannot write {key}: {e}") from e

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """See :meth:`ObjectStore.put_bytes`; ``content_type`` is not kept."""
        self._write(key, lambda f: f.write(data))

    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        """See :meth:`ObjectStore.put_file`; ``content_type`` is not kept."""
        with open(path, "rb") as src:
            self._write(key, lambda f: shutil.copyfileobj(src, f, 1 << 20))

    def get_bytes(self, key: str, max_bytes: int | None = None) -> bytes:
        """See :meth:`ObjectStore.get_bytes`."""
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                data = f.read() if max_bytes is None else f.read(max_bytes + 1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object {key!r} in {self.url}") from None
        except OSError as e:
            raise StorageError(f"cannot read {key}: {e}") from e
        if max_bytes is not None and len(data) > max_bytes:
            raise StorageError(f"object {key!r} is larger than {max_bytes} bytes")
        return data

    def get_file(self, key: str, path: str | Path) -> Path:
        """See :meth:`ObjectStore.get_file`."""
        src = self._path(key)
        path = Path(path)
        if not src.is_file():
            raise ObjectNotFound(f"no object {key!r} in {self.url}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, path)
        except OSError as e:
            raise StorageError(f"cannot download {key}: {e}") from e
        return path

    def _walk(self) -> Iterator[str]:
        """Every stored key (temporary files of unfinished writes left out)."""
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                rel = Path(dirpath, name).relative_to(self.root)
                yield rel.as_posix()

    def list(self, prefix: str = "") -> list[str]:
        """See :meth:`ObjectStore.list`."""
        prefix = check_prefix(prefix)
        return sorted(k for k in self._walk() if k.startswith(prefix))

    def exists(self, key: str) -> bool:
        """See :meth:`ObjectStore.exists`."""
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        """See :meth:`ObjectStore.size`."""
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(f"no object {key!r} in {self.url}")
        return path.stat().st_size

    def delete(self, key: str) -> None:
        """See :meth:`ObjectStore.delete`; folders left empty are removed too."""
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except IsADirectoryError:
            return
        except OSError as e:
            raise StorageError(f"cannot delete {key}: {e}") from e
        # Drop now-empty parent folders so list()/prefixes stay tidy.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
