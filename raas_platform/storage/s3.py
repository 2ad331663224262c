"""The S3 object store (AWS or S3-compatible: MinIO, Ceph, moto), through boto3."""

from __future__ import annotations

import os
from pathlib import Path

from raas_platform.storage.base import (ObjectNotFound, ObjectStore, StorageError, check_key,
                                        check_prefix)


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
        from botocore.exceptions import BotoCoreError, ClientError

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
        self._errors = (BotoCoreError, ClientError)
        if create_bucket and not self._bucket_exists():
            try:
                self._s3.create_bucket(Bucket=bucket)
            except self._errors as e:
                raise StorageError(f"cannot create bucket {bucket}: {e}") from e

    def _bucket_exists(self) -> bool:
        """Whether the bucket exists and may be read."""
        try:
            self._s3.head_bucket(Bucket=self.bucket)
            return True
        except self._errors:
            return False

    def _key(self, key: str) -> str:
        """The bucket key of ``key`` (checked, under the prefix)."""
        return self.prefix + check_key(key)

    @staticmethod
    def _missing(e: Exception) -> bool:
        """Whether a boto3 error says the object (or bucket) does not exist."""
        code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
        return code in ("404", "NoSuchKey", "NotFound")

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """See :meth:`ObjectStore.put_bytes`; ``content_type`` becomes the object's."""
        extra = {"ContentType": content_type} if content_type else {}
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
        except self._errors as e:
            raise StorageError(f"cannot put {key}: {e}") from e

    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        """See :meth:`ObjectStore.put_file` (multipart upload for large files)."""
        extra = {"ExtraArgs": {"ContentType": content_type}} if content_type else {}
        try:
            self._s3.upload_file(str(path), self.bucket, self._key(key), **extra)
        except self._errors as e:
            raise StorageError(f"cannot upload {key}: {e}") from e
        except Exception as e:  # boto3.S3UploadFailedError is not a BotoCoreError
            raise StorageError(f"cannot upload {key}: {e}") from e

    def get_bytes(self, key: str, max_bytes: int | None = None) -> bytes:
        """See :meth:`ObjectStore.get_bytes`."""
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
        """See :meth:`ObjectStore.get_file`."""
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
        """See :meth:`ObjectStore.list` (every page of the listing)."""
        prefix = check_prefix(prefix)
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
        """The object's metadata, or None when it does not exist."""
        try:
            return self._s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except self._errors as e:
            if self._missing(e):
                return None
            raise StorageError(f"cannot stat {key}: {e}") from e

    def exists(self, key: str) -> bool:
        """See :meth:`ObjectStore.exists`."""
        return self._head(key) is not None

    def size(self, key: str) -> int:
        """See :meth:`ObjectStore.size`."""
        head = self._head(key)
        if head is None:
            raise ObjectNotFound(f"no object {key!r} in {self.url}")
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        """See :meth:`ObjectStore.delete`."""
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(key))
        except self._errors as e:
            raise StorageError(f"cannot delete {key}: {e}") from e
