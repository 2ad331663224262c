"""Why user code failed, in one line: the exception's last line, and for a missing module what
the runner image provides.

A job that ends with a non-zero exit code gets the reason ``"<exception line> (exit code N)"``
when its output ends in a Python traceback (e.g. ``ValueError: bad gain (exit code 1)``), else
``"exit code N"``. For ``ModuleNotFoundError`` the reason goes on with the packages the image
provides, listed once per image by running its Python (``importlib.metadata``, no pip needed) in a
throw-away container without network.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
from typing import Any, Callable

from fleet_node.runner.config import OnOutput
from gym_raas_mqtt.protocol import LogStream

log = logging.getLogger(__name__)

TAIL_LINES = 60
"""Lines of the job's output kept to find the exception (a traceback's end is within them)."""
MAX_REASON_CHARS = 900
"""Longest reason (the job's reason is one line shown in lists and pages)."""
TRACEBACK_HEADER = "Traceback (most recent call last):"
MISSING_MODULE = re.compile(r"^ModuleNotFoundError: No module named '([^']+)'")
LIST_PACKAGES = ("import importlib.metadata as m; print('\\n'.join(sorted("
                 "{f\"{d.name}=={d.version}\" for d in m.distributions() if d.name}, "
                 "key=str.lower)))")
"""Run by the image's python3: one ``name==version`` per line, sorted."""


class OutputTail:
    """Passes every output line on and keeps the last :data:`TAIL_LINES` of stdout and stderr.

    Args:
        on_output: the consumer of ``(stream, line)``, or None.
    """

    def __init__(self, on_output: OnOutput | None) -> None:
        self._on_output = on_output
        self._lines: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def __call__(self, stream: LogStream, line: str) -> None:
        """Keep ``line`` (user output only), then hand it on."""
        if stream is not LogStream.SYSTEM:
            self._lines.append(line)
        if self._on_output is not None:
            self._on_output(stream, line)

    @property
    def lines(self) -> list[str]:
        """The kept lines, oldest first."""
        return list(self._lines)


def exception_line(lines: list[str]) -> str | None:
    """The last line of the last Python traceback in ``lines`` (``"KeyError: 'x'"``), or None.

    After ``Traceback (most recent call last):`` the frames are indented; the first line that is
    not is the exception and its message.
    """
    starts = [i for i, line in enumerate(lines) if line.strip() == TRACEBACK_HEADER]
    if not starts:
        return None
    for line in lines[starts[-1] + 1:]:
        if line and not line[0].isspace():
            return line.strip()
    return None


def failure_reason(lines: list[str], exit_code: int,
                   provided: Callable[[], list[str]] | None = None) -> str:
    """One line saying why the job failed.

    Args:
        lines: the end of the job's output (:attr:`OutputTail.lines`).
        exit_code: the container's exit status (non-zero).
        provided: lists the image's packages (``name==version``); called only for a missing
            module.

    Returns:
        ``"<exception line> (exit code N)"``, with ``; the runner image provides: ...`` for a
        ``ModuleNotFoundError``; ``"exit code N"`` without a traceback.
    """
    code = f"exit code {exit_code}"
    exc = exception_line(lines)
    if exc is None:
        return code
    reason = f"{exc} ({code})"
    missing = MISSING_MODULE.match(exc)
    if missing and provided is not None:
        packages = provided()
        if packages:
            reason += (f"; {missing.group(1).split('.')[0]} is not in the runner image, which "
                       f"provides: {', '.join(packages)}")
    return reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS - 1] + "…"


class ImagePackages:
    """The Python packages of runner images, listed once per image id.

    Args:
        client: a ``docker.DockerClient``.
        timeout_s: longest wait for the listing container [s].
    """

    def __init__(self, client: Any, timeout_s: float = 30.0) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._cache: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def of(self, image_id: str) -> list[str]:
        """``name==version`` of each distribution in ``image_id``; empty if it cannot be listed."""
        with self._lock:
            if image_id not in self._cache:
                self._cache[image_id] = self._list(image_id)
            return self._cache[image_id]

    def _list(self, image_id: str) -> list[str]:
        try:
            out = self._client.containers.run(
                image_id, ["python3", "-I", "-c", LIST_PACKAGES], remove=True,
                network_mode="none", read_only=True, user="10001:10001", cap_drop=["ALL"],
                security_opt=["no-new-privileges"], mem_limit="256m", stdout=True, stderr=False)
        except Exception as e:  # noqa: BLE001 - a missing list must not hide the failure itself
            log.warning("cannot list the packages of %s: %s", image_id, e)
            return []
        return [line for line in out.decode("utf-8", "replace").splitlines() if "==" in line]
