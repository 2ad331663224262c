"""Contract suite for the object store: the same tests against LocalStore and S3Store (moto server)."""

from __future__ import annotations

import uuid

import pytest

from gym_raas_mqtt.errors import ConfigError
from raas_platform.storage import (
    LocalStore,
    ObjectNotFound,
    ObjectStore,
    S3Store,
    StorageError,
    open_store,
)
from tests.conftest import free_port


@pytest.fixture(scope="module")
def moto_endpoint():
    """moto's S3 server as a real HTTP endpoint on a free loopback port."""
    pytest.importorskip("moto")
    from moto.server import ThreadedMotoServer

    mp = pytest.MonkeyPatch()
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        mp.setenv(k, v)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
    mp.undo()


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request, tmp_path) -> ObjectStore:
    if request.param == "local":
        return open_store(tmp_path.as_uri())
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = f"b{uuid.uuid4().hex[:12]}"
    return open_store(f"s3://{bucket}/some/prefix?endpoint={endpoint}&create=1")


def test_put_get_roundtrip(store):
    store.put_bytes("results/j1/summary.json", b'{"a": 1}', content_type="application/json")
    assert store.get_bytes("results/j1/summary.json") == b'{"a": 1}'
    assert store.exists("results/j1/summary.json")
    assert store.size("results/j1/summary.json") == 8
    store.put_bytes("results/j1/summary.json", b"{}")  # replace
    assert store.get_bytes("results/j1/summary.json") == b"{}"


def test_put_file_and_get_file(store, tmp_path):
    src = tmp_path / "big.bin"
    payload = bytes(range(256)) * 8192  # 2 MiB, streamed both ways
    src.write_bytes(payload)
    store.put_file("uploads/alice/x.tar.gz", src)
    out = store.get_file("uploads/alice/x.tar.gz", tmp_path / "dl" / "x.tar.gz")
    assert out.read_bytes() == payload


def test_missing_key(store, tmp_path):
    assert not store.exists("nope/x")
    with pytest.raises(ObjectNotFound):
        store.get_bytes("nope/x")
    with pytest.raises(ObjectNotFound):
        store.get_file("nope/x", tmp_path / "x")
    with pytest.raises(ObjectNotFound):
        store.size("nope/x")
    store.delete("nope/x")  # idempotent


def test_max_bytes(store):
    store.put_bytes("a/b", b"x" * 100)
    assert store.get_bytes("a/b", max_bytes=100) == b"x" * 100
    with pytest.raises(StorageError):
        store.get_bytes("a/b", max_bytes=99)


def test_list_prefix_download_and_delete(store, tmp_path):
    for key in ("results/j1/summary.json", "results/j1/telemetry.csv", "results/j10/summary.json",
                "uploads/u/a.zip"):
        store.put_bytes(key, key.encode())
    assert store.list("results/j1/") == ["results/j1/summary.json", "results/j1/telemetry.csv"]
    assert store.list("results/") == ["results/j1/summary.json", "results/j1/telemetry.csv",
                                      "results/j10/summary.json"]
    assert len(store.list()) == 4
    files = store.download_prefix("results/j1", tmp_path / "dl")
    assert [f.name for f in files] == ["summary.json", "telemetry.csv"]
    assert (tmp_path / "dl" / "telemetry.csv").read_bytes() == b"results/j1/telemetry.csv"
    assert store.delete_prefix("results/j1/") == 2
    assert store.list("results/") == ["results/j10/summary.json"]


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "..", "a//b", "a/./b", "a\\b", "a\0b"])
def test_invalid_keys_rejected(store, key):
    with pytest.raises(StorageError):
        store.put_bytes(key, b"x")


def test_local_store_never_escapes_root(tmp_path):
    store = LocalStore(tmp_path / "root")
    with pytest.raises(StorageError):
        store.put_bytes("../escape", b"x")
    assert not (tmp_path / "escape").exists()


def test_open_store_urls(tmp_path):
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    assert open_store(tmp_path.as_uri()).root == tmp_path.resolve()
    with pytest.raises(ConfigError):
        open_store("ftp://x/y")
    with pytest.raises(ConfigError):
        open_store("s3:///prefix")
    with pytest.raises(ConfigError):
        open_store("s3://bucket?addressing=sideways")


@pytest.mark.s3
def test_s3_prefix_isolation(moto_endpoint):
    bucket = f"b{uuid.uuid4().hex[:12]}"
    a = open_store(f"s3://{bucket}/tenant-a?endpoint={moto_endpoint}&create=1")
    b = open_store(f"s3://{bucket}/tenant-b?endpoint={moto_endpoint}")
    assert isinstance(a, S3Store) and a.url == f"s3://{bucket}/tenant-a/"
    a.put_bytes("k", b"1")
    assert b.list() == [] and not b.exists("k")
    assert a.list() == ["k"]
