"""A job's output: written whole to ``stdout.log`` and streamed live as batched LogChunk messages.

Lines arrive from the runner's reader thread (and the agent's own ``system`` lines); they go to
the log file at once and into a batch that a small thread publishes every ``flush_s`` or when it
reaches ``max_lines`` / ``max_bytes`` (QoS 0: the live view is best effort, the file is the record).
A change of stream starts a new chunk, so every chunk has one stream.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from gym_raas_mqtt.protocol import LogChunk, LogStream

log = logging.getLogger(__name__)

MAX_CHUNK_BYTES = 64 * 1024
"""Largest sum of line lengths per chunk (well under protocol.MAX_PAYLOAD_BYTES)."""


class LogStreamer:
    """Collects one job's output lines.

    Args:
        job_id: the job.
        path: the ``stdout.log`` file to write (created).
        publish: called with each :class:`LogChunk` from the streamer's thread; must not block.
        flush_s: longest time a line waits before it is sent (s).
        max_lines: most lines per chunk.
        clock: wall clock for chunk timestamps.
    """

    def __init__(self, job_id: str, path: Path, publish: Callable[[LogChunk], None], *,
                 flush_s: float = 0.25, max_lines: int = 200,
                 clock: Callable[[], float] = time.time) -> None:
        self.job_id = job_id
        self.path = path
        self._publish = publish
        self._flush_s = flush_s
        self._max_lines = max_lines
        self._clock = clock
        self._file = open(path, "a", encoding="utf-8", errors="replace")
        self._cond = threading.Condition()
        self._lines: list[str] = []
        self._bytes = 0
        self._stream = LogStream.SYSTEM
        self._truncated = False
        self._seq = 0
        self._closed = False
        self._first_at = 0.0
        self.lines_seen = 0
        self._thread = threading.Thread(target=self._run, name=f"joblog-{job_id}", daemon=True)
        self._thread.start()

    def add(self, stream: LogStream, line: str) -> None:
        """Record one line (no newline) of ``stream``; callable from any thread."""
        text = line if stream is not LogStream.SYSTEM else f"[raas] {line}"
        with self._cond:
            if self._closed:
                return
            self.lines_seen += 1
            self._file.write(text + "\n")
            if stream is not self._stream and self._lines:
                self._flush_locked()
            self._stream = stream
            if stream is LogStream.SYSTEM and "output truncated" in line:
                self._truncated = True
            if not self._lines:
                self._first_at = time.monotonic()
            self._lines.append(text)
            self._bytes += len(text)
            if len(self._lines) >= self._max_lines or self._bytes >= MAX_CHUNK_BYTES:
                self._flush_locked()
            else:
                self._cond.notify()

    def system(self, line: str) -> None:
        """Record a platform message about the job (shown with a ``[raas]`` prefix)."""
        self.add(LogStream.SYSTEM, line)

    def _flush_locked(self) -> None:
        if not self._lines:
            return
        chunk = LogChunk(job_id=self.job_id, stream=self._stream, seq=self._seq,
                         lines=tuple(self._lines), ts=self._clock(), truncated=self._truncated)
        self._seq += 1
        self._lines, self._bytes = [], 0
        self._file.flush()
        try:
            self._publish(chunk)
        except Exception:  # live log is best effort; the file keeps every line
            log.exception("job %s: log chunk %d not published", self.job_id, chunk.seq)

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if not self._lines:
                    self._cond.wait()
                    continue
                # Let a burst accumulate for up to flush_s after its first line, then send.
                remaining = self._first_at + self._flush_s - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                self._flush_locked()

    def close(self) -> None:
        """Send what is pending, close the file and stop the thread; idempotent."""
        with self._cond:
            if self._closed:
                return
            self._flush_locked()
            self._closed = True
            self._file.close()
            self._cond.notify_all()
        self._thread.join(2.0)
