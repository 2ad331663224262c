"""One set of submission checks: what the API refuses at submission (400) the node refuses when
it fetches (SourceRejected: the job ends ``failed``, not retried), with the same message
(issue 10, item 6).

Finding covered: "Checks that differ between the API and the node: an archive without run.py,
an archive unpacking to 60 MiB (API allows 200, node 50), file://localhost/... and file:///etc are
accepted by the API and fail on the node. With file allowed as a clone scheme a user can clone any
git repository on the node's host. An unreachable or nonexistent user repository ends error and
is retried three times." Before the change the API answered 201 to the archives, the file URLs and
the repositories below, and the node called an unknown host a platform fault (SourceUnavailable).

The API runs with its production defaults (RAAS_CLONE_SCHEMES=https,ssh; RAAS_SUBMIT_GIT_CHECK
on: the ref is resolved with git ls-remote); the node side is :func:`fleet_node.source.fetch_source`
with the limits the agent builds from its own defaults. ``dev`` variants add ``file`` as a dev
stack does.
"""

from __future__ import annotations

import io
import socket
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from dashboard.app import create_app
from dashboard.config import DashboardConfig
from fleet_node.config import AgentConfig
from fleet_node.source import FetchLimits, SourceRejected, fetch_source
from gym_raas_mqtt.config import load
from gym_raas_mqtt.protocol import JobSource, SourceKind
from raas_platform.storage import LocalStore
from tests.dashboard.dashboard_helpers import make_config, make_user
from tests.fleet_node.agent.agent_harness import git_repo

WITH_FILE = ("https", "ssh", "file")  # a dev stack's RAAS_CLONE_SCHEMES
MiB = 2**20


def test_production_defaults_are_what_these_tests_use() -> None:
    dash, agent = load(DashboardConfig, environ={}), load(AgentConfig, environ={})
    assert dash.git_check is True  # ls-remote at submission is on unless turned off
    assert dash.git_schemes == agent.clone_schemes == ("https", "ssh")  # no file, no git://
    assert dash.max_unpacked_bytes == agent.clone_max_bytes == 50 * MiB  # one limit
    assert dash.max_archive_members == agent.clone_max_files == 10_000


class Api:
    """The dashboard's API (Flask test client) with a user, as configured by ``schemes``."""

    def __init__(self, tmp: Path, schemes: tuple[str, ...]) -> None:
        cfg = make_config(tmp, git_check=True, git_schemes=schemes)
        self.app = create_app({"TESTING": True, "RAAS_CONFIG": cfg})
        self.client = self.app.test_client()
        self.user = make_user(self.app, "alice")

    def git(self, url: str, ref: str | None = None) -> Any:
        return self.client.post("/api/v1/jobs", json={"url": url, "ref": ref},
                                headers=self.user.headers)

    def archive(self, data: bytes) -> Any:
        return self.client.post("/api/v1/jobs", headers=self.user.headers,
                                data={"archive": (io.BytesIO(data), "ctrl.tar.gz")},
                                content_type="multipart/form-data")


def node_limits(schemes: tuple[str, ...]) -> FetchLimits:
    """The limits the agent builds from its settings (fleet_node.agent.pipeline)."""
    c = load(AgentConfig, environ={"RAAS_CLONE_SCHEMES": ",".join(schemes)})
    return FetchLimits(max_bytes=c.clone_max_bytes, max_files=c.clone_max_files,
                       timeout_s=c.clone_timeout_s, allowed_schemes=c.clone_schemes)


def refused_by_api(resp: Any, field: str) -> str:
    body = resp.get_json()
    assert resp.status_code == 400, body
    assert body["field"] == field and body["reason"]
    return body["reason"]


def refused_by_node(tmp: Path, source: JobSource, schemes: tuple[str, ...],
                    store: Any = None) -> str:
    with pytest.raises(SourceRejected) as e:  # the agent ends the job `failed`, not retried
        fetch_source(source, tmp / "job" / uuid.uuid4().hex, node_limits(schemes), store)
    return str(e.value)


def tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    (tmp_path / "job").mkdir()
    return tmp_path


# -- archives ------------------------------------------------------------------------------------
@pytest.mark.parametrize("members, why", [
    ({"main.py": b"print(1)\n", "lib/x.py": b""}, "run.py not found"),
    ({"run.py": b"print(1)\n", "weights.bin": b"\0" * (60 * MiB)}, "too large"),  # 60 MiB
], ids=["no-run.py", "unpacks-to-60-MiB"])
def test_archives_refused_alike(job_dir: Path, members: dict[str, bytes], why: str) -> None:
    data = tgz(members)
    assert len(data) < 1 * MiB  # small upload, well within RAAS_MAX_UPLOAD_BYTES
    reason = refused_by_api(Api(job_dir, ("https", "ssh")).archive(data), "archive")
    store = LocalStore(job_dir / "node-store")
    store.put_bytes("uploads/alice/a.tar.gz", data)
    message = refused_by_node(job_dir, JobSource(SourceKind.ARCHIVE,
                                                 archive_key="uploads/alice/a.tar.gz"),
                              ("https", "ssh"), store)
    assert why in reason and message == reason  # the same check, the same words


def test_archive_with_run_py_in_its_single_folder_passes_both(job_dir: Path) -> None:
    data = tgz({"ctrl-main/run.py": b"print(1)\n"})
    assert Api(job_dir, ("https", "ssh")).archive(data).status_code == 201
    store = LocalStore(job_dir / "node-store")
    store.put_bytes("uploads/alice/a.tar.gz", data)
    got = fetch_source(JobSource(SourceKind.ARCHIVE, archive_key="uploads/alice/a.tar.gz"),
                       job_dir / "job" / "code", node_limits(("https", "ssh")), store)
    assert (got.path / "run.py").read_bytes() == b"print(1)\n"


# -- file:// URLs --------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["file://localhost/etc", "file:///etc", "file:///srv/x.git"])
def test_file_urls_refused_by_default(job_dir: Path, url: str) -> None:
    reason = refused_by_api(Api(job_dir, ("https", "ssh")).git(url), "url")
    message = refused_by_node(job_dir, JobSource(SourceKind.GIT, url=url), ("https", "ssh"))
    assert "not allowed" in reason and message == reason


def test_file_urls_when_the_operator_allows_them(job_dir: Path) -> None:
    """With file in RAAS_CLONE_SCHEMES: a git repository named by its absolute path, nothing
    else — no host (file://localhost), no '..', and a path that is not a repository fails."""
    api = Api(job_dir, WITH_FILE)
    for url in ("file://localhost/etc", "file:///srv/../etc", "file://host/x"):
        reason = refused_by_api(api.git(url), "url")
        assert refused_by_node(job_dir, JobSource(SourceKind.GIT, url=url), WITH_FILE) == reason
    reason = refused_by_api(api.git("file:///etc"), "url")
    assert "not appear to be a git repository" in reason
    message = refused_by_node(job_dir, JobSource(SourceKind.GIT, url="file:///etc"), WITH_FILE)
    assert "not appear to be a git repository" in message
    url = git_repo(job_dir / "repo", {"run.py": "print(1)\n"})
    job = api.git(url, "main").get_json()
    head = subprocess.run(["git", "-C", str(job_dir / "repo"), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert job["source"] == {"kind": "git", "url": url, "ref": head, "archive_key": None}
    got = fetch_source(JobSource(SourceKind.GIT, url=url, ref=head), job_dir / "job" / "code",
                       node_limits(WITH_FILE))
    assert got.commit_sha == head  # the node runs the commit the API pinned


# -- repositories that do not exist or cannot be reached ----------------------------------------
def test_nonexistent_repository_refused_alike(job_dir: Path) -> None:
    url = (job_dir / "no-such-repo").as_uri()
    reason = refused_by_api(Api(job_dir, WITH_FILE).git(url), "url")
    message = refused_by_node(job_dir, JobSource(SourceKind.GIT, url=url), WITH_FILE)
    assert "does not appear to be a git repository" in reason
    assert "does not appear to be a git repository" in message


def test_unknown_ref_refused_alike(job_dir: Path) -> None:
    url = git_repo(job_dir / "repo", {"run.py": "print(1)\n"})
    reason = refused_by_api(Api(job_dir, WITH_FILE).git(url, "no-such-branch"), "ref")
    message = refused_by_node(job_dir, JobSource(SourceKind.GIT, url=url, ref="no-such-branch"),
                              WITH_FILE)
    assert "no-such-branch" in reason and "no-such-branch" in message


def test_repository_without_run_py_refused_by_the_node(job_dir: Path) -> None:
    """The API cannot see a repository's files without fetching it: the node refuses."""
    url = git_repo(job_dir / "repo", {"main.py": "print(1)\n"})
    assert Api(job_dir, WITH_FILE).git(url).status_code == 201
    message = refused_by_node(job_dir, JobSource(SourceKind.GIT, url=url), WITH_FILE)
    assert "run.py not found" in message


def test_unreachable_host_refused_alike(job_dir: Path) -> None:
    """A host name that does not exist (.example is reserved, RFC 2606) is the user's fault on
    both sides; before the change the node retried it as a platform fault (SourceUnavailable)."""
    host = "raas-missing-host.example"
    try:
        socket.getaddrinfo(host, 443)
    except socket.gaierror as e:
        if e.errno != socket.EAI_NONAME:
            pytest.skip(f"this machine's resolver does not answer ({e})")
    url = f"https://{host}/me/ctrl.git"
    reason = refused_by_api(Api(job_dir, ("https", "ssh")).git(url, "main"), "url")
    message = refused_by_node(job_dir, JobSource(SourceKind.GIT, url=url, ref="main"),
                              ("https", "ssh"))
    assert "does not exist" in reason and "does not exist" in message
