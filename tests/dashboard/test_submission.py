"""Submission validation: git URLs and refs (resolved and pinned with git ls-remote), time
limits, archive safety checks."""

from __future__ import annotations

import io
import socket
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from dashboard.submission import (GitPolicy, Limits, SubmissionError, archive_suffix,
                                  check_archive, check_git_url, check_ref, check_time_limit,
                                  git_source)
from dispatcher.limits import QueueLimits
from tests.fleet_node.test_source import git

LIMITS = Limits(max_upload_bytes=10_000, max_unpacked_bytes=50_000, max_archive_members=20)
QUEUE_LIMITS = QueueLimits(min_time_limit_s=1.0, max_time_limit_s=600.0,
                           default_time_limit_s=120.0)


def tgz(members: dict[str, bytes], *, link: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tf.addfile(info)
    return buf.getvalue()


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


WITH_FILE = ("https", "ssh", "file")  # RAAS_CLONE_SCHEMES of a dev stack


@pytest.mark.parametrize("url", [
    "https://github.com/me/ctrl.git", "ssh://git@example.org/me/ctrl.git",
    "git@github.com:me/ctrl.git"])
def test_accepted_git_urls(url: str) -> None:
    assert check_git_url(url) == url


def test_file_urls_only_when_the_operator_allows_them() -> None:
    assert check_git_url("file:///srv/repos/ctrl", WITH_FILE) == "file:///srv/repos/ctrl"
    with pytest.raises(SubmissionError, match="not allowed"):
        check_git_url("file:///srv/repos/ctrl")


def test_git_protocol_is_never_accepted() -> None:
    """git:// is unauthenticated and unencrypted (and nodes never fetched it): refused."""
    for schemes in (("https", "ssh"), WITH_FILE):
        with pytest.raises(SubmissionError, match="not allowed"):
            check_git_url("git://example.org/ctrl.git", schemes)


@pytest.mark.parametrize("url,why", [
    ("", "required"), ("-uhttps://x", "must not start with '-'"),
    ("--upload-pack=touch /tmp/x", "must not start with '-'"),
    ("http://example.org/x.git", "must start with"), ("ftp://x/y", "must start with"),
    ("ext::sh -c touch% /tmp/pwned", "spaces"), ("ext::sh", "must start with"),
    ("https://exa mple.org/x", "spaces"), ("https:///nohost", "no host"),
    ("file://relative/path", "absolute path"), ("https://x/" + "a" * 3000, "longer than"),
    ("https://example.org/a\tb", "spaces"), (None, "required"), (42, "required")])
def test_rejected_git_urls(url: object, why: str) -> None:
    with pytest.raises(SubmissionError) as e:
        check_git_url(url, WITH_FILE)
    assert e.value.status == 400 and e.value.field == "url"
    assert why in str(e.value)


def test_trailing_newline_is_stripped_not_smuggled() -> None:
    assert check_git_url("https://example.org/x\n") == "https://example.org/x"


@pytest.mark.parametrize("ref", ["main", "v1.2.0", "feature/swing-up", "0123abcd" * 5])
def test_accepted_refs(ref: str) -> None:
    assert check_ref(ref) == ref


@pytest.mark.parametrize("ref", ["-b", "--orphan", "a..b", "x y", "a//b", "main.lock", "a@{1}",
                                 "x" * 201, 5])
def test_rejected_refs(ref: object) -> None:
    with pytest.raises(SubmissionError):
        check_ref(ref)


def test_empty_ref_means_default_branch() -> None:
    assert check_ref("") is None and check_ref(None) is None


@pytest.mark.parametrize("value,expected", [(None, 120.0), ("", 120.0), ("30", 30.0), (600, 600.0)])
def test_time_limit(value: object, expected: float) -> None:
    assert check_time_limit(value, QUEUE_LIMITS) == expected


@pytest.mark.parametrize("value", ["abc", "nan", "inf", 0, 601, -5, True, [1]])
def test_time_limit_rejected(value: object) -> None:
    with pytest.raises(SubmissionError, match="time_limit_s"):
        check_time_limit(value, QUEUE_LIMITS)


def test_archive_types() -> None:
    assert archive_suffix("ctrl.tar.gz") == ".tar.gz" and archive_suffix("a.TGZ") == ".tar.gz"
    assert archive_suffix("ctrl.zip") == ".zip"
    with pytest.raises(SubmissionError) as e:
        archive_suffix("ctrl.rar")
    assert e.value.status == 415


def test_good_archives() -> None:
    assert check_archive(tgz({"run.py": b"print(1)", "lib/x.py": b""}), ".tar.gz", LIMITS) == 2
    assert check_archive(zipped({"run.py": b"print(1)"}), ".zip", LIMITS) == 1


@pytest.mark.parametrize("data,suffix,status,why", [
    (tgz({"../evil.py": b"x"}), ".tar.gz", 400, "outside"),
    (tgz({"/etc/cron.d/x": b"x"}), ".tar.gz", 400, "outside"),
    (tgz({"run.py": b"x"}, link="link"), ".tar.gz", 400, "not a regular file"),
    (zipped({"../../x": b"x"}), ".zip", 400, "outside"),
    (tgz({f"f{i}": b"" for i in range(30)}), ".tar.gz", 400, "more than 20"),
    (tgz({"big": b"\0" * 60_000}), ".tar.gz", 400, "unpacks to more"),
    (zipped({"run.py": b"x"}), ".tar.gz", 415, "not a gzip"),
    (tgz({"run.py": b"x"}), ".zip", 415, "not a zip"),
    (b"\x1f\x8b" + b"garbage" * 10, ".tar.gz", 400, "cannot be read"),
    (b"", ".zip", 400, "empty"),
    (b"\x1f\x8b" + b"\0" * 20_000, ".tar.gz", 413, "larger than"),
    (tgz({}), ".tar.gz", 400, "no files"),
    (tgz({"main.py": b"x", "lib/run.py": b"x"}), ".tar.gz", 400, "run.py not found"),
    (tgz({"a/run.py": b"x", "b/x.py": b"x"}), ".tar.gz", 400, "run.py not found"),
])
def test_bad_archives(data: bytes, suffix: str, status: int, why: str) -> None:
    with pytest.raises(SubmissionError) as e:
        check_archive(data, suffix, LIMITS)
    assert e.value.status == status, str(e.value)
    assert why in str(e.value)


# -- the ref resolved at submission (git ls-remote) ----------------------------------------------
@pytest.fixture
def repo(tmp_path: Path) -> dict:
    """main with two commits; lightweight tag v1 and annotated tag v2 on the first; a branch
    and a tag both called 'same' (git fetch prefers the tag)."""
    r = tmp_path / "origin"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    (r / "run.py").write_text("print(1)\n")
    git(r, "add", ".")
    git(r, "commit", "-qm", "one")
    first = git(r, "rev-parse", "HEAD")
    git(r, "tag", "v1")
    git(r, "tag", "-a", "-m", "annotated", "v2")
    git(r, "tag", "same")
    git(r, "commit", "-q", "--allow-empty", "-m", "two")
    git(r, "branch", "same")
    return {"url": r.as_uri(), "first": first, "head": git(r, "rev-parse", "HEAD")}


DEV = GitPolicy(schemes=WITH_FILE, check=True, timeout_s=10)


@pytest.mark.parametrize("ref, expected", [(None, "head"), ("main", "head"), ("v1", "first"),
                                           ("v2", "first"), ("same", "first")])
def test_refs_are_pinned_to_their_commit(repo: dict, ref: str | None, expected: str) -> None:
    source = git_source(repo["url"], ref, DEV)
    assert source.ref == repo[expected] and source.url == repo["url"]


def test_commit_ids_are_kept_as_given(repo: dict) -> None:
    assert git_source(repo["url"], repo["first"], DEV).ref == repo["first"]
    assert git_source(repo["url"], repo["first"][:10], DEV).ref == repo["first"][:10]


def test_unknown_ref_and_missing_repository_are_refused(repo: dict, tmp_path: Path) -> None:
    with pytest.raises(SubmissionError) as e:
        git_source(repo["url"], "no-such-branch", DEV)
    assert e.value.status == 400 and e.value.field == "ref" and "no-such-branch" in str(e.value)
    with pytest.raises(SubmissionError) as e:
        git_source((tmp_path / "nothing").as_uri(), None, DEV)
    assert e.value.status == 400 and e.value.field == "url"
    assert "does not appear to be a git repository" in str(e.value)


def test_without_the_check_the_ref_is_stored_as_given(tmp_path: Path) -> None:
    policy = GitPolicy(schemes=WITH_FILE, check=False)
    source = git_source((tmp_path / "nothing").as_uri(), "main", policy)
    assert source.ref == "main"


def test_a_server_that_never_answers_is_refused_in_time() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    try:
        t0 = time.monotonic()
        with pytest.raises(SubmissionError, match="longer than"):
            git_source(f"https://127.0.0.1:{srv.getsockname()[1]}/x.git", None,
                       GitPolicy(check=True, timeout_s=1.0))
        assert time.monotonic() - t0 < 5
    finally:
        srv.close()
