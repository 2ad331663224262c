"""Running git on a user's repository safely, telling the user's faults from the platform's, and
resolving a ref to the commit it names (``git ls-remote``, what the API does at submission).

git runs **without a shell** (argument lists), with ``--`` before every URL and ref, only for the
allowed schemes (``GIT_ALLOW_PROTOCOL`` as a second fence), never prompting
(``GIT_TERMINAL_PROMPT=0``, ssh ``BatchMode``), without hooks or system config, in its own process
group, killed at a deadline and when its output or a watched folder grows past a cap.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from gym_raas_mqtt.errors import RaasError
from raas_platform.submission.rules import SourceLimits, SourceRejected, SourceUnavailable

MAX_OUTPUT_BYTES = 1 << 20
"""Most standard output a git command may print (a ref listing) [bytes]."""
STDERR_TAIL_BYTES = 16 * 1024
FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
SHORT_SHA = re.compile(r"^[0-9a-f]{7,39}$")
SAFE_OPTIONS = ("-c", "core.hooksPath=/dev/null", "-c", "protocol.ext.allow=never",
                "-c", "core.symlinks=true", "-c", "advice.detachedHead=false",
                "-c", "init.defaultBranch=main", "-c", "submodule.recurse=false")
"""Options given to every git command: no hooks, no ext:: transport, no submodules."""

# Checked in this order; the first list that matches a failed command's message decides.
# Platform: our own network, resolver or machine failed; the user's repository may be fine.
_PLATFORM = ("temporary failure in name resolution", "timed out", "network is unreachable",
             "no route to host", "connection reset", "connection refused", "early eof",
             "rpc failed", "returned error: 5", "no space left", "cannot allocate memory",
             "unable to fork", "could not resolve proxy")
# User: the repository, its ref or its access rights are wrong.
_USER = ("not found", "does not appear to be a git repository", "couldn't find remote ref",
         "could not read username", "authentication failed", "permission denied",
         "not our ref", "unadvertised object", "invalid", "no such", "bad object",
         "does not exist", "access denied", "repository not", "not a valid",
         "terminal prompts disabled", "did not match", "unknown revision", "is not allowed",
         "transport '", "returned error: 4", "ssl certificate problem",
         "certificate verification failed", "host key verification failed")


def git_env(allowed_schemes: tuple[str, ...]) -> dict[str, str]:
    """The environment of every git command: no inherited ``GIT_*``, no prompts, allowed
    schemes only, no LFS downloads, no system config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
        "GIT_ALLOW_PROTOCOL": ":".join(allowed_schemes),
        "GIT_LFS_SKIP_SMUDGE": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
        "LC_ALL": "C",
    })
    return env


class GitRunner:
    """Runs git commands in one folder under one deadline, an output cap and an optional watch.

    Args:
        cwd: the folder git runs in (``-C``).
        limits: the schemes allowed and ``timeout_s``, the deadline for all commands together.
        watch: called about once a second while a command runs; a message it returns kills
            the command and is raised as :class:`SourceRejected` (e.g. a checkout too large).
    """

    def __init__(self, cwd: Path, limits: SourceLimits, url: str | None = None,
                 watch: Callable[[], str | None] | None = None) -> None:
        self.cwd = cwd
        self.limits = limits
        self.url = url
        self.watch = watch
        self.deadline = time.monotonic() + limits.timeout_s
        self.env = git_env(limits.allowed_schemes)

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``git <args>``; output is bytes.

        Raises:
            SourceRejected: past the deadline, the output cap or the watch; or (``check``) a
                failure that is the user's (see :func:`classify`).
            SourceUnavailable: git is missing, or (``check``) a failure that is the platform's.
        """
        cmd = ["git", *SAFE_OPTIONS, "-C", str(self.cwd), *args]
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=self.env, start_new_session=True)
        except FileNotFoundError as e:
            raise SourceUnavailable("git is not installed on this host") from e
        with proc:  # closes the pipes and reaps git on the way out
            try:
                out, err = self._communicate(proc, args[0])
            except BaseException:
                _kill(proc)
                raise
        result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
        if check and proc.returncode != 0:
            raise classify(args[0], err.decode("utf-8", "replace"), self.url)
        return result

    def _communicate(self, proc: subprocess.Popen, op: str) -> tuple[bytes, bytes]:
        out, err = bytearray(), bytearray()
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ, out)  # type: ignore[arg-type]
            sel.register(proc.stderr, selectors.EVENT_READ, err)  # type: ignore[arg-type]
            next_watch = time.monotonic() + 1.0
            while sel.get_map():
                now = time.monotonic()
                if now > self.deadline:
                    raise self._too_slow(op)
                if self.watch is not None and now >= next_watch:
                    next_watch = now + 1.0
                    if (problem := self.watch()) is not None:
                        raise SourceRejected(problem)
                for key, _ in sel.select(timeout=min(0.2, max(self.deadline - now, 0.01))):
                    chunk = os.read(key.fileobj.fileno(), 1 << 16)  # type: ignore[union-attr]
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    key.data.extend(chunk)
                    if key.data is err:
                        del err[:-STDERR_TAIL_BYTES]
                    elif len(out) > MAX_OUTPUT_BYTES:
                        raise SourceRejected(f"git {op} printed more than "
                                             f"{MAX_OUTPUT_BYTES} bytes")
        try:
            proc.wait(max(self.deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            raise self._too_slow(op) from None
        return bytes(out), bytes(err)

    def _too_slow(self, op: str) -> SourceRejected:
        return SourceRejected(f"git {op} took longer than {self.limits.timeout_s:.0f} s")


def _kill(proc: subprocess.Popen) -> None:
    """Kill a git command and what it started (ssh, remote helpers): its process group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()


def _host_of(url: str | None) -> str | None:
    if not url:
        return None
    if "://" not in url and "@" in url:  # scp-like user@host:path
        return url.split("@", 1)[1].split(":", 1)[0]
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _name_does_not_exist(host: str | None) -> bool:
    """Whether the resolver says ``host`` does not exist (rather than failing to answer)."""
    if not host:
        return False
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror as e:
        return e.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
    return False  # it resolves now: the failure was transient


def classify(op: str, stderr: str, url: str | None = None) -> RaasError:
    """Map a failed git command to the user's fault (:class:`SourceRejected`) or the
    platform's (:class:`SourceUnavailable`), by its message.

    "Could not resolve host" is looked up again here: a name the resolver says does not exist
    (``EAI_NONAME``) is the user's; a resolver that does not answer is the node's.

    Args:
        op: the git command (``fetch``, ``ls-remote``).
        stderr: what it printed.
        url: the repository URL, to look its host name up again.
    """
    text = " ".join(stderr.split())[-400:]
    low = text.lower()
    if "could not resolve host" in low and "temporary failure" not in low:  # ssh: "hostname"
        if _name_does_not_exist(_host_of(url)):
            return SourceRejected(f"git {op} failed: the host name of the repository does not "
                                  f"exist ({text})", "url")
        return SourceUnavailable(f"git {op} failed: {text}")
    if any(s in low for s in _PLATFORM):
        return SourceUnavailable(f"git {op} failed: {text}")
    if any(s in low for s in _USER):
        return SourceRejected(f"git {op} failed: {text}", "url")
    return SourceUnavailable(f"git {op} failed: {text}")


def _dwim(ref: str) -> list[str]:
    """The full ref names ``git fetch`` tries for ``ref``, in its order (tags before branches)."""
    return [ref, f"refs/{ref}", f"refs/tags/{ref}", f"refs/heads/{ref}", f"refs/remotes/{ref}",
            f"refs/remotes/{ref}/HEAD"]


def pin_ref(url: str, ref: str | None, limits: SourceLimits, cwd: Path = Path("/")) -> str:
    """The commit ``ref`` names in the repository at ``url``, asked with ``git ls-remote``.

    Args:
        url: a checked repository URL (:func:`~.rules.check_git_url`).
        ref: a checked branch, tag or commit (:func:`~.rules.check_ref`); None for the
            repository's default branch (its HEAD).
        limits: allowed schemes and the time limit.
        cwd: folder git runs in (outside any repository, so no local config applies).

    Returns:
        The 40-hex commit SHA (a tag is peeled to its commit). A commit id that names no ref
        (a full or abbreviated SHA) is returned as given once the repository answered:
        servers do not list commits; the node checks it exists when it fetches it.

    Raises:
        SourceRejected: the repository does not exist, cannot be read, has no such ref, or
            did not answer within the time limit.
        SourceUnavailable: git is missing here, or this host's network failed.
    """
    patterns = ["HEAD"] if ref is None else [ref, f"{ref}^{{}}"]
    git = GitRunner(cwd, limits, url)
    listing = git("ls-remote", "--", url, *patterns).stdout.decode("utf-8", "replace")
    refs: dict[str, str] = {}
    for line in listing.splitlines():
        sha, _, name = line.partition("\t")
        refs[name] = sha
    if ref is None:
        if "HEAD" not in refs:
            raise SourceRejected("the repository has no default branch: name a ref", "ref")
        return refs["HEAD"]
    for name in _dwim(ref):
        if name in refs:
            return refs.get(f"{name}^{{}}", refs[name])
    if FULL_SHA.match(ref) or SHORT_SHA.match(ref):
        return ref
    raise SourceRejected(f"the repository has no branch or tag {ref!r}", "ref")
