"""The node's session counter: a number kept on disk and raised before every CONNECT.

Birth (retained ``NodeState``) and last will carry the session number, so a reader can tell a late
will of an old connection from the current state (Sparkplug's ``bdSeq``). The counter must never go
back, even across power loss: each increment is written to a temporary file, fsync'd, renamed over
the old one, and the folder is fsync'd too.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class SessionCounter:
    """A monotonically increasing integer stored in ``path``.

    Args:
        path: the counter file (created with its folder; an unreadable file restarts from the
            largest value found in it, else 0, with a warning).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._value = self._read()

    def _read(self) -> int:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return 0
        try:
            value = int(text)
            if value < 0:
                raise ValueError("negative")
            return value
        except ValueError:
            log.warning("session counter %s is unreadable (%r); starting from 0", self.path,
                        text[:40])
            return 0

    @property
    def value(self) -> int:
        """The current session number (the last one handed out)."""
        return self._value

    def next(self) -> int:
        """Increment, persist (fsync) and return the new session number.

        Raises:
            OSError: the file could not be written; the counter is not raised then.
        """
        with self._lock:
            new = self._value + 1
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, f"{new}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            self._value = new
            return new
