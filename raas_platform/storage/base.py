"""The object-store interface both backends implement, its errors, and what a safe key is."""

from __future__ import annotations

import abc
from pathlib import Path

from gym_raas_mqtt.errors import RaasError


class StorageError(RaasError):
    """The object store failed or refused a request (missing key, invalid key, I/O error)."""


class ObjectNotFound(StorageError, KeyError):
    """The requested key does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "object not found"


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise :class:`StorageError`.

    Safe: non-empty, no leading ``/``, no ``.``/``..``/empty segments, no backslash or NUL.
    """
    if not isinstance(key, str) or not key or key.startswith("/") or "\\" in key or "\0" in key:
        raise StorageError(f"invalid object key {key!r}")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"invalid object key {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is empty or a safe key prefix, else raise :class:`StorageError`."""
    if prefix == "":
        return prefix
    check_key(prefix.rstrip("/"))
    return prefix


class ObjectStore(abc.ABC):
    """Byte objects under string keys; every method raises :class:`StorageError` on failure."""

    url: str

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Store ``data`` at ``key`` (replacing any previous object)."""

    @abc.abstractmethod
    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        """Store the file at ``path`` under ``key`` (streamed, not read into memory)."""

    @abc.abstractmethod
    def get_bytes(self, key: str, max_bytes: int | None = None) -> bytes:
        """The object's content.

        Raises:
            ObjectNotFound: no such key.
            StorageError: the object is larger than ``max_bytes``.
        """

    @abc.abstractmethod
    def get_file(self, key: str, path: str | Path) -> Path:
        """Download ``key`` to ``path`` (parents created); returns ``path``.

        Raises:
            ObjectNotFound: no such key.
        """

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Every key starting with ``prefix``, sorted."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """The object's size in bytes.

        Raises:
            ObjectNotFound: no such key.
        """

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; deleting a missing key is not an error."""

    def download_prefix(self, prefix: str, dest: str | Path) -> list[Path]:
        """Download every object under ``prefix`` into ``dest``, keeping the relative layout.

        Returns:
            The written files, sorted.
        """
        prefix = check_prefix(prefix)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        dest = Path(dest)
        out = []
        for key in self.list(prefix):
            out.append(self.get_file(key, dest / key[len(prefix):]))
        return sorted(out)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many were deleted."""
        keys = self.list(check_prefix(prefix))
        for key in keys:
            self.delete(key)
        return len(keys)
