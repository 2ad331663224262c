"""Fetching a job's code with git: one ref at depth 1, without a shell, under time and size watch.

git runs through the platform's shared :class:`~raas_platform.submission.GitRunner` (no shell,
``--`` before every URL and ref, allowed schemes only, no prompts, hooks, LFS or submodules, a
deadline) with a watch that kills it when the folder grows past twice the size limit. It fetches
only the requested ref at depth 1 (a commit SHA directly when the server allows it: the API
pins a submission's ref to its commit) and records the resolved commit SHA; ``.git`` is removed
before the code reaches the container.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from fleet_node.source.tree import FetchedSource, FetchLimits, check_tree, tree_usage
from raas_platform.submission import (GitRunner, SourceRejected, check_entrypoint, check_git_url,
                                      check_ref, classify, size_text)
from raas_platform.submission.git import FULL_SHA, SHORT_SHA


def _size_watch(repo: Path, limits: FetchLimits) -> Callable[[], str | None]:
    # Objects plus checkout may briefly hold the tree twice: allow 2x while git runs.
    def watch() -> str | None:
        if tree_usage(repo, limits).bytes > 2 * limits.max_bytes:
            return (f"the repository is too large: it grew past twice the size limit of "
                    f"{size_text(limits.max_bytes)}")
        return None
    return watch


def fetch_git(url: str, ref: str | None, dest: Path, limits: FetchLimits = FetchLimits()
              ) -> FetchedSource:
    """Fetch ``url`` at ``ref`` into the new folder ``dest`` and pin the commit.

    Args:
        url: repository URL (see :func:`~raas_platform.submission.check_git_url`).
        ref: branch, tag or commit SHA (7–40 hex); None for the remote's default branch.
        dest: folder to create (must not exist); receives the working tree without ``.git``.
        limits: size, entry-count, time and scheme limits.

    Returns:
        The checked-out code with its resolved commit SHA.

    Raises:
        SourceRejected: invalid URL/ref, missing repository or ref, too big, too slow, no run.py.
        SourceUnavailable: git missing or an infrastructure failure.
    """
    check_git_url(url, limits.allowed_schemes)
    if ref is not None:
        check_ref(ref)
    dest.mkdir(parents=True, exist_ok=False)
    git = GitRunner(dest, limits, url, watch=_size_watch(dest, limits))
    git("init", "-q")
    git("remote", "add", "origin", "--", url)
    want = ref or "HEAD"
    fetched = git("fetch", "-q", "--depth", "1", "--no-tags", "origin", "--", want,
                  check=False)
    if fetched.returncode != 0:
        if ref is None or not (FULL_SHA.match(ref) or SHORT_SHA.match(ref)):
            raise classify("fetch", fetched.stderr.decode("utf-8", "replace"), url)
        # The server refused a SHA "want" (or it is abbreviated): fetch the branches and tags,
        # then resolve it among them.
        git("fetch", "-q", "--no-tags", "origin", "--", "+refs/heads/*:refs/remotes/origin/*",
            "+refs/tags/*:refs/tags/*")
        sha = git("rev-parse", "--verify", "--quiet", "--end-of-options",
                  f"{ref}^{{commit}}", check=False)
        if sha.returncode != 0:
            raise SourceRejected(f"commit {ref} not found in {url}")
        target = sha.stdout.decode().strip()
    else:
        target = "FETCH_HEAD"
    git("checkout", "-q", "--detach", target, "--")
    commit = git("rev-parse", "HEAD").stdout.decode().strip()
    if ref and FULL_SHA.match(ref) and commit != ref:  # pragma: no cover - defensive
        raise SourceRejected(f"fetched commit {commit} is not the requested {ref}")
    shutil.rmtree(dest / ".git", ignore_errors=True)
    totals = check_tree(dest, limits)
    check_entrypoint(dest)
    return FetchedSource(dest, commit, f"{url}@{ref or 'HEAD'} ({commit[:12]})", totals.bytes,
                         totals.files)
