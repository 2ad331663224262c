"""The object store holding uploaded job archives and result bundles: a local folder or S3.

Keys are ``/``-separated relative paths (``results/<job_id>/summary.json``,
``uploads/<owner>/<sha>.tar.gz``). Two backends implement one :class:`ObjectStore` interface and
are tested by one contract suite:

====================================================  =======================================
``file:///var/lib/raas/store``                        :class:`LocalStore` (the default)
``s3://bucket/prefix?endpoint=http://host:9000``      :class:`S3Store` (boto3, S3-compatible)
====================================================  =======================================

S3 credentials come from the standard AWS environment variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``) or any other boto3 source; ``region``,
``addressing`` (``path``/``virtual``) may be given as URL query parameters. boto3 is imported only
when an S3 store is opened, so the researcher's install never needs it.
"""

from __future__ import annotations

import abc
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

from gym_raas_mqtt.errors import ConfigError, RaasError


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


def _check_prefix(prefix: str) -> str:
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
        prefix = _check_prefix(prefix)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        dest = Path(dest)
        out = []
        for key in self.list(prefix):
            out.append(self.get_file(key, dest / key[len(prefix):]))
        return sorted(out)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many were deleted."""
        keys = self.list(_check_prefix(prefix))
        for key in keys:
            self.delete(key)
        return len(keys)


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
        return self.root / PurePosixPath(check_key(key))

    def _write(self, key: str, writer) -> None:  # type: ignore[no-untyped-def]
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
        self._write(key, lambda f: f.write(data))

    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        with open(path, "rb") as src:
            self._write(key, lambda f: shutil.copyfileobj(src, f, 1 << 20))

    def get_bytes(self, key: str, max_bytes: int | None = None) -> bytes:
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
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                rel = Path(dirpath, name).relative_to(self.root)
                yield rel.as_posix()

    def list(self, prefix: str = "") -> list[str]:
        prefix = _check_prefix(prefix)
        return sorted(k for k in self._walk() if k.startswith(prefix))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(f"no object {key!r} in {self.url}")
        return path.stat().st_size

    def delete(self, key: str) -> None:
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


class S3Store(ObjectStore):
    """Objects in an S3 bucket (AWS or S3-compatible: MinIO, Ceph, moto) under an optional prefix.

    Args:
        bucket: bucket name (must exist unless ``create_bucket``).
        prefix: key prefix inside the bucket (no leading/trailing ``/`` needed).
        endpoint_url: e.g. ``http://minio:9000``; None for AWS.
        region: region name; None = boto3's default (``AWS_DEFAULT_REGION``), else ``us-east-1``.
        addressing: ``"path"`` (default: works with every S3-compatible store) or ``"virtual"``.
        create_bucket: create the bucket if it does not exist.
    """

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, addressing: str = "path",
                 create_bucket: bool = False) -> None:
        import boto3  # lazy: only the server extras install boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        region = region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") \
            or "us-east-1"
        config = Config(
            s3={"addressing_style": addressing},
            # S3-compatible stores reject the newer default CRC checksums: only send them when
            # an operation requires it.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        )
        self._s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
        from botocore.exceptions import BotoCoreError, ClientError

        self._errors = (BotoCoreError, ClientError)
        if create_bucket and not self._bucket_exists():
            try:
                self._s3.create_bucket(Bucket=bucket)
            except self._errors as e:
                raise StorageError(f"cannot create bucket {bucket}: {e}") from e

    def _bucket_exists(self) -> bool:
        try:
            self._s3.head_bucket(Bucket=self.bucket)
            return True
        except self._errors:
            return False

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    @staticmethod
    def _missing(e: Exception) -> bool:
        code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
        return code in ("404", "NoSuchKey", "NotFound")

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
        except self._errors as e:
            raise StorageError(f"cannot put {key}: {e}") from e

    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        extra = {"ExtraArgs": {"ContentType": content_type}} if content_type else {}
        try:
            self._s3.upload_file(str(path), self.bucket, self._key(key), **extra)
        except self._errors as e:
            raise StorageError(f"cannot upload {key}: {e}") from e
        except Exception as e:  # boto3.S3UploadFailedError is not a BotoCoreError
            raise StorageError(f"cannot upload {key}: {e}") from e

    def get_bytes(self, key: str, max_bytes: int | None = None) -> bytes:
        try:
            obj = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))
            if max_bytes is not None and obj["ContentLength"] > max_bytes:
                obj["Body"].close()
                raise StorageError(f"object {key!r} is larger than {max_bytes} bytes")
            return obj["Body"].read()
        except self._errors as e:
            if self._missing(e):
                raise ObjectNotFound(f"no object {key!r} in {self.url}") from None
            raise StorageError(f"cannot get {key}: {e}") from e

    def get_file(self, key: str, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._s3.download_file(self.bucket, self._key(key), str(path))
        except self._errors as e:
            if self._missing(e):
                raise ObjectNotFound(f"no object {key!r} in {self.url}") from None
            raise StorageError(f"cannot download {key}: {e}") from e
        return path

    def list(self, prefix: str = "") -> list[str]:
        prefix = _check_prefix(prefix)
        keys: list[str] = []
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix)
            for page in pages:
                keys.extend(o["Key"][len(self.prefix):] for o in page.get("Contents", ()))
        except self._errors as e:
            raise StorageError(f"cannot list {prefix!r}: {e}") from e
        return sorted(keys)

    def _head(self, key: str) -> dict | None:
        try:
            return self._s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except self._errors as e:
            if self._missing(e):
                return None
            raise StorageError(f"cannot stat {key}: {e}") from e

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise ObjectNotFound(f"no object {key!r} in {self.url}")
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(key))
        except self._errors as e:
            raise StorageError(f"cannot delete {key}: {e}") from e


def open_store(url: str) -> ObjectStore:
    """Open the object store named by ``url``.

    Args:
        url: ``file:///abs/path`` (or a plain path) for :class:`LocalStore`;
            ``s3://bucket[/prefix][?endpoint=http://host:port&region=r&addressing=path|virtual
            &create=1]`` for :class:`S3Store`.

    Raises:
        ConfigError: unknown scheme or a malformed URL.
    """
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        path = unquote(parts.path) if parts.scheme else url
        if not path:
            raise ConfigError(f"store URL {url!r} has no path")
        return LocalStore(path)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ConfigError(f"store URL {url!r} has no bucket")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        addressing = query.get("addressing", "path")
        if addressing not in ("path", "virtual"):
            raise ConfigError(f"store URL {url!r}: addressing must be path or virtual")
        return S3Store(parts.netloc, parts.path, endpoint_url=query.get("endpoint"),
                       region=query.get("region"), addressing=addressing,
                       create_bucket=query.get("create", "0").lower() in ("1", "true", "yes"))
    raise ConfigError(f"store URL {url!r}: scheme must be file:// or s3://")


__all__ = ["ObjectStore", "LocalStore", "S3Store", "open_store", "StorageError", "ObjectNotFound",
           "check_key"]
