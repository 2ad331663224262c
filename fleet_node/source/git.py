"""Fetching a job's code with git: one ref at depth 1, without a shell, under time and size watch.

git runs **without a shell** (argument lists), with ``--`` before every URL/ref, only for allowed
schemes (``GIT_ALLOW_PROTOCOL`` as a second fence), never prompting (``GIT_TERMINAL_PROMPT=0``, ssh
``BatchMode``), without hooks, LFS smudging or submodules, under a time limit and a size watch that
kills it when the folder grows past the limit. It fetches only the requested ref at depth 1 (a
commit SHA directly when the server allows it) and records the resolved commit SHA; ``.git`` is
removed before the code reaches the container.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from fleet_node.source.checks import (FetchedSource, FetchLimits, SourceRejected,
                                      SourceUnavailable, check_entrypoint, check_git_url,
                                      check_ref, check_tree)
from gym_raas_mqtt.errors import RaasError

_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_SHORT_SHA = re.compile(r"^[0-9a-f]{7,39}$")


def tree_usage(root: Path, skip: str | None = None) -> tuple[int, int]:
    """(bytes, files) of the regular files under ``root`` (links are not followed)."""
    total = files = 0
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for e in entries:
            if skip and e.name == skip and e.is_dir(follow_symlinks=False):
                continue
            if e.is_dir(follow_symlinks=False):
                stack.append(Path(e.path))
            else:
                try:
                    total += e.stat(follow_symlinks=False).st_size
                except OSError:
                    pass
                files += 1
    return total, files


def _git_env(allowed: tuple[str, ...]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
        "GIT_ALLOW_PROTOCOL": ":".join(allowed),
        "GIT_LFS_SKIP_SMUDGE": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
        "LC_ALL": "C",
    })
    return env


_GIT_SAFE = ("-c", "core.hooksPath=/dev/null", "-c", "protocol.ext.allow=never",
             "-c", "core.symlinks=true", "-c", "advice.detachedHead=false",
             "-c", "init.defaultBranch=main", "-c", "submodule.recurse=false")


class _Git:
    """Runs git commands in one folder under a shared deadline and size watch."""

    def __init__(self, repo: Path, limits: FetchLimits) -> None:
        self.repo = repo
        self.limits = limits
        self.deadline = time.monotonic() + limits.timeout_s
        self.env = _git_env(limits.allowed_schemes)

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["git", *_GIT_SAFE, "-C", str(self.repo), *args]
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=self.env, start_new_session=True)
        except FileNotFoundError as e:
            raise SourceUnavailable("git is not installed on this node") from e
        out, err = self._watch(proc)
        result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
        if check and proc.returncode != 0:
            raise _classify(args[0], err.decode("utf-8", "replace"))
        return result

    def _watch(self, proc: subprocess.Popen) -> tuple[bytes, bytes]:
        # Poll so a growing fetch is killed at the size limit, not only at the time limit.
        # Objects plus checkout may briefly hold the tree twice: allow 2x during git commands.
        next_check = 0.0
        while True:
            try:
                return proc.communicate(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if now > self.deadline:
                self._kill(proc)
                raise SourceRejected(f"fetching the code took longer than "
                                     f"{self.limits.timeout_s:.0f} s")
            if now >= next_check:
                next_check = now + 1.0
                used, _ = tree_usage(self.repo)
                if used > 2 * self.limits.max_bytes:
                    self._kill(proc)
                    raise SourceRejected(f"repository is larger than "
                                         f"{self.limits.max_bytes // 2**20} MiB")

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, 9)
        except OSError:
            proc.kill()
        proc.communicate()


_USER_FAULTS = ("not found", "does not appear to be a git repository", "couldn't find remote ref",
                "could not read username", "authentication failed", "permission denied",
                "not our ref", "unadvertised object", "invalid", "no such", "bad object",
                "does not exist", "access denied", "repository not", "not a valid",
                "terminal prompts disabled", "did not match", "unknown revision",
                "is not allowed", "transport '")


def _classify(op: str, stderr: str) -> RaasError:
    """Map a failed git command to user fault (rejected) or platform fault (unavailable)."""
    text = " ".join(stderr.split())[-400:]
    low = text.lower()
    if any(s in low for s in _USER_FAULTS):
        return SourceRejected(f"git {op} failed: {text}")
    return SourceUnavailable(f"git {op} failed: {text}")


def fetch_git(url: str, ref: str | None, dest: Path, limits: FetchLimits = FetchLimits()
              ) -> FetchedSource:
    """Fetch ``url`` at ``ref`` into the new folder ``dest`` and pin the commit.

    Args:
        url: repository URL (see :func:`check_git_url`).
        ref: branch, tag or commit SHA (7–40 hex); None for the remote's default branch.
        dest: folder to create (must not exist); receives the working tree without ``.git``.
        limits: size, file-count, time and scheme limits.

    Returns:
        The checked-out code with its resolved commit SHA.

    Raises:
        SourceRejected: invalid URL/ref, unknown ref, too big, too slow, no run.py.
        SourceUnavailable: git missing or an infrastructure failure.
    """
    check_git_url(url, limits.allowed_schemes)
    if ref is not None:
        check_ref(ref)
    dest.mkdir(parents=True, exist_ok=False)
    git = _Git(dest, limits)
    git("init", "-q")
    git("remote", "add", "origin", "--", url)
    want = ref or "HEAD"
    fetched = git("fetch", "-q", "--depth", "1", "--no-tags", "origin", "--", want,
                  check=False)
    if fetched.returncode != 0:
        if ref is None or not (_FULL_SHA.match(ref) or _SHORT_SHA.match(ref)):
            raise _classify("fetch", fetched.stderr.decode("utf-8", "replace"))
        # The server refused a SHA "want" (or it is abbreviated): fetch history, then resolve it.
        git("fetch", "-q", "--no-tags", "origin", "--", "+refs/heads/*:refs/remotes/origin/*")
        sha = git("rev-parse", "--verify", "--quiet", "--end-of-options",
                  f"{ref}^{{commit}}", check=False)
        if sha.returncode != 0:
            raise SourceRejected(f"commit {ref} not found in {url}")
        target = sha.stdout.decode().strip()
    else:
        target = "FETCH_HEAD"
    git("checkout", "-q", "--detach", target, "--")
    commit = git("rev-parse", "HEAD").stdout.decode().strip()
    if ref and _FULL_SHA.match(ref) and commit != ref:  # pragma: no cover - defensive
        raise SourceRejected(f"fetched commit {commit} is not the requested {ref}")
    shutil.rmtree(dest / ".git", ignore_errors=True)
    size, files = tree_usage(dest)
    check_tree(size, files, limits)
    check_entrypoint(dest)
    return FetchedSource(dest, commit, f"{url}@{ref or 'HEAD'} ({commit[:12]})", size, files)
