"""The object store holding uploaded job archives and result bundles: a local folder or S3.

Keys are ``/``-separated relative paths (``results/<job_id>/summary.json``,
``uploads/<owner>/<sha>.tar.gz``). Two backends implement one :class:`ObjectStore` interface and
are tested by one contract suite:

====================================================  =======================================
``file:///var/lib/raas/store``                        :class:`LocalStore` (the default)
``s3://bucket/prefix?endpoint=http://host:9000``      :class:`S3Store` (boto3, S3-compatible)
====================================================  =======================================

Modules: :mod:`~raas_platform.storage.base` (the interface, its errors, key rules),
:mod:`~raas_platform.storage.local` and :mod:`~raas_platform.storage.s3` (the backends); this
package's :func:`open_store` picks one from a URL.

S3 credentials come from the standard AWS environment variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``) or any other boto3 source; ``region``,
``addressing`` (``path``/``virtual``) may be given as URL query parameters. boto3 is imported only
when an S3 store is opened, so the researcher's install never needs it.
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

from gym_raas_mqtt.errors import ConfigError
from raas_platform.storage.base import (ObjectNotFound, ObjectStore, StorageError, check_key,
                                        check_prefix)
from raas_platform.storage.local import LocalStore
from raas_platform.storage.s3 import S3Store


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
           "check_key", "check_prefix"]
