"""Submission validation: git URLs and refs, time limits, archive safety checks."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from dashboard.submission import (Limits, SubmissionError, archive_suffix, check_archive,
                                  check_git_url, check_ref, check_time_limit)
from dispatcher.limits import QueueLimits

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


@pytest.mark.parametrize("url", [
    "https://github.com/me/ctrl.git", "ssh://git@example.org/me/ctrl.git",
    "git@github.com:me/ctrl.git", "file:///srv/repos/ctrl", "git://example.org/ctrl.git"])
def test_accepted_git_urls(url: str) -> None:
    assert check_git_url(url) == url


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
        check_git_url(url)
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
])
def test_bad_archives(data: bytes, suffix: str, status: int, why: str) -> None:
    with pytest.raises(SubmissionError) as e:
        check_archive(data, suffix, LIMITS)
    assert e.value.status == status, str(e.value)
    assert why in str(e.value)
