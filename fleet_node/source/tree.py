"""A job's code as it lands on the node: :class:`FetchedSource`, its size on disk, readable modes.

The rules the code must pass are the platform's shared ones (:mod:`raas_platform.submission`);
:data:`FetchLimits` is their limits under the node's name.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from raas_platform.submission import Budget, SourceLimits

FetchLimits = SourceLimits
"""The node's limits on a fetch: :class:`~raas_platform.submission.SourceLimits` (size, entries,
time, schemes), built from the agent's settings."""


@dataclass(frozen=True)
class FetchedSource:
    """Code ready to be mounted into the job container.

    Attributes:
        path: folder holding ``run.py``.
        commit_sha: the resolved commit (git sources), or None for archives.
        description: what was fetched, for logs (no credentials).
        size_bytes: total size of the files (bytes).
        files: number of files.
    """

    path: Path
    commit_sha: str | None
    description: str
    size_bytes: int
    files: int


def tree_usage(root: Path, limits: FetchLimits) -> Budget:
    """The totals of the tree under ``root`` (links are not followed), not yet checked: call :meth:`~raas_platform.submission.Budget.check` for that.

    Returns:
        A :class:`~raas_platform.submission.Budget` against ``limits`` with ``entries`` (files
        and folders), ``files`` (everything not a folder) and ``bytes``.
    """
    totals = Budget(limits)
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for e in entries:
            totals.entries += 1
            if e.is_dir(follow_symlinks=False):
                stack.append(Path(e.path))
                continue
            totals.files += 1
            try:
                totals.bytes += e.stat(follow_symlinks=False).st_size
            except OSError:
                pass
    return totals


def check_tree(root: Path, limits: FetchLimits) -> Budget:
    """The totals of the checked-out tree under ``root``, held to ``limits``.

    Raises:
        SourceRejected: too large or too many entries (the same rule and message as for an
            archive).
    """
    totals = tree_usage(root, limits)
    totals.check()
    return totals


def make_readable(root: Path) -> None:
    """Folders 0755, files 0644 (0755 when executable) under ``root``, whatever the umask was:
    the job container's unprivileged uid must read the code. Links are left alone."""
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                os.chmod(path, 0o755 if st.st_mode & 0o100 else 0o644)
