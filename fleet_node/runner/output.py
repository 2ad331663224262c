"""A job container's output: split into lines per stream, capped, handed on from a reader thread."""

from __future__ import annotations

import logging
import threading
import time
from typing import Iterable

from fleet_node.runner.config import OnOutput
from gym_raas_mqtt.protocol import MAX_STRING_CHARS, LogStream

log = logging.getLogger(__name__)


class OutputPump:
    """Splits the container's multiplexed output into lines, caps it, hands lines on.

    Runs on its own thread (:attr:`thread`, started by the caller); the callback's exceptions are
    logged, never propagated, so a failing consumer cannot stop the draining (an undrained pipe
    would block the container).

    Args:
        frames: ``(stdout bytes or None, stderr bytes or None)`` pairs, as Docker's demuxed attach
            stream yields them; it ends when the container does.
        cap: bytes of output passed on in total; then one ``system`` line says the rest is
            dropped (still drained and counted).
        on_output: receives ``(stream, line)``; None only drains.

    Attributes:
        output_bytes: bytes received, including those dropped.
        truncated: the cap was reached.
        error: the exception that ended the stream early (the engine closing it on removal).
    """

    def __init__(self, frames: Iterable[tuple[bytes | None, bytes | None]], cap: int,
                 on_output: OnOutput | None) -> None:
        self.frames = frames
        self.cap = cap
        self.on_output = on_output
        self.output_bytes = 0
        self.delivered = 0
        self.truncated = False
        self.first_output_at: float | None = None
        self.error: BaseException | None = None
        self._partial = {LogStream.STDOUT: bytearray(), LogStream.STDERR: bytearray()}
        self._callback_failed = False
        self.thread = threading.Thread(target=self._run, name="raas-runner-output", daemon=True)

    def _emit(self, stream: LogStream, raw: bytes, size: int) -> None:
        """Pass on one line: ``raw`` without newline, ``size`` its bytes with the newline."""
        if self.truncated:
            return
        if self.delivered + size > self.cap:
            self.truncated = True
            self._call(LogStream.SYSTEM,
                       f"[raas] output truncated: more than {self.cap} bytes; the rest is dropped")
            return
        self.delivered += size
        self._call(stream, raw.decode("utf-8", errors="replace").rstrip("\r"))

    def _call(self, stream: LogStream, line: str) -> None:
        if self.on_output is None:
            return
        try:
            self.on_output(stream, line)
        except Exception:  # noqa: BLE001 - a consumer bug must not stop the draining
            if not self._callback_failed:
                log.exception("on_output callback failed; output keeps being drained")
            self._callback_failed = True

    def _feed(self, stream: LogStream, data: bytes) -> None:
        if self.first_output_at is None:
            self.first_output_at = time.monotonic()
        self.output_bytes += len(data)
        if self.truncated:
            return  # drain only
        buf = self._partial[stream]
        buf += data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            self._emit(stream, bytes(buf[start:nl]), nl + 1 - start)
            start = nl + 1
        del buf[:start]
        # A line without newline still reaches the log once it is as long as a log string may be.
        while len(buf) >= MAX_STRING_CHARS:
            self._emit(stream, bytes(buf[:MAX_STRING_CHARS]), MAX_STRING_CHARS)
            del buf[:MAX_STRING_CHARS]

    def _run(self) -> None:
        try:
            for out, err in self.frames:
                if out:
                    self._feed(LogStream.STDOUT, out)
                if err:
                    self._feed(LogStream.STDERR, err)
        except Exception as e:  # noqa: BLE001 - connection closed by the engine on removal
            self.error = e
        finally:
            for stream, buf in self._partial.items():
                if buf and not self.truncated:
                    self._emit(stream, bytes(buf), len(buf))
                buf.clear()
