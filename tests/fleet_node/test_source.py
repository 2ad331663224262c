"""Code fetching: git at a ref (file:// repos made here, plus hostile URLs/refs) and archives."""

from __future__ import annotations

import io
import os
import socket
import stat
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from fleet_node.source import (
    FetchLimits,
    SourceRejected,
    SourceUnavailable,
    check_git_url,
    extract_archive,
    fetch_git,
    fetch_source,
)
from gym_raas_mqtt.protocol import JobSource, SourceKind
from raas_platform.storage import LocalStore
from raas_platform.submission import classify

LIMITS = FetchLimits(allowed_schemes=("https", "ssh", "file"), timeout_s=30)


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          env=env, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> dict:
    """A repo with two commits on main, a tag v1 on the first, a branch 'other'."""
    r = tmp_path / "origin"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    (r / "run.py").write_text("print('v1')\n")
    git(r, "add", "."); git(r, "commit", "-qm", "one"); git(r, "tag", "v1")
    first = git(r, "rev-parse", "HEAD")
    git(r, "checkout", "-qb", "other")
    (r / "run.py").write_text("print('other')\n")
    git(r, "commit", "-qam", "other")
    git(r, "checkout", "-q", "main")
    (r / "run.py").write_text("print('v2')\n")
    git(r, "commit", "-qam", "two")
    return {"path": r, "url": r.as_uri(), "first": first, "head": git(r, "rev-parse", "HEAD")}


@pytest.mark.parametrize("ref, text", [(None, "v2"), ("main", "v2"), ("v1", "v1"),
                                       ("other", "other")])
def test_fetch_named_refs(repo, tmp_path, ref, text):
    got = fetch_git(repo["url"], ref, tmp_path / "code", LIMITS)
    assert (got.path / "run.py").read_text() == f"print('{text}')\n"
    assert len(got.commit_sha) == 40
    assert not (got.path / ".git").exists()
    if ref in (None, "main"):
        assert got.commit_sha == repo["head"]


def test_fetch_full_and_short_sha(repo, tmp_path):
    got = fetch_git(repo["url"], repo["first"], tmp_path / "a", LIMITS)
    assert got.commit_sha == repo["first"]
    assert (got.path / "run.py").read_text() == "print('v1')\n"
    got = fetch_git(repo["url"], repo["first"][:10], tmp_path / "b", LIMITS)
    assert got.commit_sha == repo["first"]


def test_unknown_ref_is_users_fault(repo, tmp_path):
    with pytest.raises(SourceRejected, match="git fetch failed"):
        fetch_git(repo["url"], "no-such-branch", tmp_path / "c", LIMITS)
    with pytest.raises(SourceRejected, match="not found"):
        fetch_git(repo["url"], "deadbeef00", tmp_path / "d", LIMITS)


def test_missing_repo_is_users_fault(tmp_path):
    with pytest.raises(SourceRejected):
        fetch_git((tmp_path / "nothing").as_uri(), None, tmp_path / "c", LIMITS)


def test_missing_run_py(tmp_path):
    r = tmp_path / "norun"
    r.mkdir()
    git(r, "init", "-q"); (r / "main.py").write_text("")
    git(r, "add", "."); git(r, "commit", "-qm", "x")
    with pytest.raises(SourceRejected, match="run.py not found"):
        fetch_git(r.as_uri(), None, tmp_path / "c", LIMITS)


def test_checkout_size_limit(repo, tmp_path):
    (repo["path"] / "big.bin").write_bytes(os.urandom(600_000))
    git(repo["path"], "add", "."); git(repo["path"], "commit", "-qm", "big")
    limits = FetchLimits(max_bytes=500_000, allowed_schemes=("file",))
    with pytest.raises(SourceRejected, match="limit"):
        fetch_git(repo["url"], None, tmp_path / "c", limits)


@pytest.mark.parametrize("url", [
    "-uhttps://x/y", "--upload-pack=touch /tmp/pwned", "ext::sh -c touch% /tmp/pwned",
    "git://example.com/x.git", "http://example.com/x.git", "-oProxyCommand=x@y:z", "x@-h:y",
    "https://example.com/x y.git", "https://user:secret@example.com/x.git", "https://-h/x.git",
    "https://example.com", "file://host/x", "", "https://example.com/x\n.git",
])
def test_bad_urls_rejected(url):
    with pytest.raises(SourceRejected):
        check_git_url(url, ("https", "ssh", "file"))


@pytest.mark.parametrize("url", ["https://github.com/x/y.git", "ssh://git@example.com/x.git",
                                 "git@github.com:x/y.git"])
def test_good_urls_accepted(url):
    """scp-like user@host:path is ssh, accepted by the API and the node alike (one rule)."""
    assert check_git_url(url, ("https", "ssh")) == url


def test_file_scheme_refused_by_default(repo, tmp_path):
    with pytest.raises(SourceRejected, match="not allowed"):
        fetch_git(repo["url"], None, tmp_path / "c", FetchLimits())


@pytest.mark.parametrize("ref", ["--upload-pack=touch {marker}", "-b", "a..b", "main:refs/x",
                                 "a b", "HEAD@{1}", "x.lock", "a;touch {marker}", "$(touch {marker})"])
def test_hostile_refs_rejected_without_side_effects(repo, tmp_path, ref):
    marker = tmp_path / "pwned"
    with pytest.raises(SourceRejected):
        fetch_git(repo["url"], ref.replace("{marker}", str(marker)), tmp_path / "c", LIMITS)
    assert not marker.exists()


def test_hanging_server_hits_time_limit(tmp_path):
    """A server that accepts TCP and never answers TLS: the fetch is killed at the limit."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    try:
        limits = FetchLimits(timeout_s=1.5)
        with pytest.raises(SourceRejected, match="longer than"):
            fetch_git(f"https://127.0.0.1:{srv.getsockname()[1]}/x.git", None, tmp_path / "c",
                      limits)
    finally:
        srv.close()


@pytest.mark.parametrize("stderr, kind", [
    ("fatal: unable to access 'https://h/x/': Could not resolve host: h "
     "(Temporary failure in name resolution)", SourceUnavailable),
    ("ssh: connect to host h port 22: Connection timed out", SourceUnavailable),
    ("ssh: connect to host h port 22: Network is unreachable", SourceUnavailable),
    ("fatal: unable to access 'https://h/x/': The requested URL returned error: 502",
     SourceUnavailable),
    ("error: RPC failed; curl 18 transfer closed\nfatal: early EOF", SourceUnavailable),
    ("remote: Repository not found.\nfatal: repository 'https://h/x/' not found",
     SourceRejected),
    ("fatal: could not read Username for 'https://h': terminal prompts disabled",
     SourceRejected),
    ("git@h: Permission denied (publickey).", SourceRejected),
    ("fatal: couldn't find remote ref nope", SourceRejected),
    ("fatal: unable to access 'https://h/x/': SSL certificate problem: self-signed certificate",
     SourceRejected),
    ("something nobody has seen before", SourceUnavailable),
])
def test_git_failures_are_classified(stderr, kind):
    """The user's faults end `failed` (not retried), the platform's `error` (retried)."""
    assert type(classify("fetch", stderr, "https://h/x.git")) is kind


def test_a_host_name_that_does_not_exist_is_the_users_fault():
    try:
        socket.getaddrinfo("raas-missing-host.example", 443)
    except socket.gaierror as e:
        if e.errno != socket.EAI_NONAME:
            pytest.skip(f"this machine's resolver does not answer ({e})")
    err = classify("fetch", "fatal: unable to access 'https://raas-missing-host.example/x/': "
                   "Could not resolve host: raas-missing-host.example",
                   "https://raas-missing-host.example/x.git")
    assert isinstance(err, SourceRejected) and "does not exist" in str(err)
    assert isinstance(classify("fetch", "Could not resolve host: localhost",
                               "https://localhost/x.git"), SourceUnavailable)  # resolves now


def test_refused_connection_is_platform_fault(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(SourceUnavailable):
        fetch_git(f"https://127.0.0.1:{port}/x.git", None, tmp_path / "c", FetchLimits())


# ---------------------------------------------------------------------------------------------
# Archives
# ---------------------------------------------------------------------------------------------
def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def reg(name: str, data: bytes = b"print(1)\n") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def test_tar_ok_and_single_top_folder(tmp_path):
    got = extract_archive(make_tar(tmp_path / "a.tar.gz", [reg("run.py"), reg("lib/x.py")]),
                          tmp_path / "c1", LIMITS)
    assert got.path == tmp_path / "c1" and got.files == 2 and got.commit_sha is None
    got = extract_archive(make_tar(tmp_path / "b.tar.gz", [reg("proj-main/run.py")]),
                          tmp_path / "c2", LIMITS)
    assert got.path == tmp_path / "c2" / "proj-main"


@pytest.mark.parametrize("member, msg", [
    (reg("../evil.py"), "escapes"),
    (reg("a/../../evil.py"), "escapes"),
    (reg("/etc/evil.py"), "absolute"),
    (special("link", tarfile.SYMTYPE, "/etc/passwd"), "link"),
    (special("hard", tarfile.LNKTYPE, "run.py"), "link"),
    (special("dev", tarfile.CHRTYPE), "not a regular file"),
    (special("fifo", tarfile.FIFOTYPE), "not a regular file"),
])
def test_tar_unsafe_members_rejected(tmp_path, member, msg):
    archive = make_tar(tmp_path / "x.tar.gz", [reg("run.py"), member])
    with pytest.raises(SourceRejected, match=msg):
        extract_archive(archive, tmp_path / "c", LIMITS)
    assert not (tmp_path / "evil.py").exists()


def test_tar_symlink_then_write_through_it_rejected(tmp_path):
    archive = make_tar(tmp_path / "x.tar.gz", [special("d", tarfile.SYMTYPE, str(tmp_path)),
                                               reg("d/evil.py")])
    with pytest.raises(SourceRejected):
        extract_archive(archive, tmp_path / "c", LIMITS)
    assert not (tmp_path / "evil.py").exists()


def test_tar_bomb_and_file_count(tmp_path):
    limits = FetchLimits(max_bytes=1_000_000, max_files=5)
    bomb = make_tar(tmp_path / "bomb.tar.gz", [reg("run.py"), reg("zeros", b"\0" * 3_000_000)])
    assert bomb.stat().st_size < 50_000  # compresses well: only the expanded size is caught
    with pytest.raises(SourceRejected, match="too large|expands"):
        extract_archive(bomb, tmp_path / "c1", limits)
    many = make_tar(tmp_path / "many.tar.gz", [reg("run.py")] + [reg(f"f{i}") for i in range(6)])
    with pytest.raises(SourceRejected, match="more than 5 files"):
        extract_archive(many, tmp_path / "c2", limits)


def test_tar_without_run_py_and_garbage(tmp_path):
    with pytest.raises(SourceRejected, match="run.py"):
        extract_archive(make_tar(tmp_path / "a.tar.gz", [reg("main.py")]), tmp_path / "c1",
                        LIMITS)
    (tmp_path / "junk.tar.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(SourceRejected):
        extract_archive(tmp_path / "junk.tar.gz", tmp_path / "c2", LIMITS)


def make_zip(path: Path, members: list[tuple[str, bytes, int]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return path


REG = stat.S_IFREG | 0o644


def test_zip_ok(tmp_path):
    got = extract_archive(make_zip(tmp_path / "a.zip", [("run.py", b"x", REG), ("m/a.py", b"", REG)]),
                          tmp_path / "c", LIMITS)
    assert (got.path / "run.py").read_bytes() == b"x" and got.files == 2


@pytest.mark.parametrize("name, mode, msg", [
    ("../evil.py", REG, "escapes"), ("/abs.py", REG, "absolute"), ("C:/x.py", REG, "absolute"),
    ("link", stat.S_IFLNK | 0o777, "link"), ("dev", stat.S_IFCHR | 0o644, "not a regular"),
])
def test_zip_unsafe_members_rejected(tmp_path, name, mode, msg):
    archive = make_zip(tmp_path / "a.zip", [("run.py", b"x", REG), (name, b"/etc/passwd", mode)])
    with pytest.raises(SourceRejected, match=msg):
        extract_archive(archive, tmp_path / "c", LIMITS)


def test_zip_bomb_and_duplicates(tmp_path):
    limits = FetchLimits(max_bytes=1_000_000)
    bomb = make_zip(tmp_path / "b.zip", [("run.py", b"x", REG), ("z", b"\0" * 3_000_000, REG)])
    with pytest.raises(SourceRejected, match="too large|expands"):
        extract_archive(bomb, tmp_path / "c1", limits)
    with pytest.warns(UserWarning):  # zipfile warns about the duplicate name while writing
        dup = make_zip(tmp_path / "d.zip", [("run.py", b"x", REG), ("run.py", b"y", REG)])
    with pytest.raises(SourceRejected, match="duplicate"):
        extract_archive(dup, tmp_path / "c2", LIMITS)


def test_fetch_source_from_store(tmp_path):
    store = LocalStore(tmp_path / "store")
    store.put_file("uploads/alice/a.tar.gz", make_tar(tmp_path / "a.tar.gz", [reg("run.py")]))
    (tmp_path / "job").mkdir()
    got = fetch_source(JobSource(SourceKind.ARCHIVE, archive_key="uploads/alice/a.tar.gz"),
                       tmp_path / "job" / "code", LIMITS, store)
    assert (got.path / "run.py").exists()
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == ["code"]  # archive removed
    with pytest.raises(SourceRejected, match="does not exist"):
        fetch_source(JobSource(SourceKind.ARCHIVE, archive_key="uploads/alice/none.zip"),
                     tmp_path / "job" / "code2", LIMITS, store)
    with pytest.raises(SourceUnavailable):
        fetch_source(JobSource(SourceKind.ARCHIVE, archive_key="k"), tmp_path / "job" / "c3",
                     LIMITS, None)


def test_fetched_code_is_readable_whatever_the_umask(repo, tmp_path):
    old = os.umask(0o077)
    try:
        got = fetch_source(JobSource(SourceKind.GIT, url=repo["url"]), tmp_path / "c", LIMITS)
    finally:
        os.umask(old)
    assert stat.S_IMODE((got.path / "run.py").stat().st_mode) == 0o644
    assert stat.S_IMODE(got.path.stat().st_mode) == 0o755


def test_describe_source_hides_user_info():
    from fleet_node.source import describe_source

    src = JobSource(SourceKind.GIT, url="https://tok@example.com/u/r.git", ref="v1")
    assert describe_source(src) == "git https://example.com/u/r.git at v1"
    assert describe_source(JobSource(SourceKind.ARCHIVE, archive_key="uploads/a.zip")) == \
        "archive uploads/a.zip"
