"""One job execution as the agent tracks it: its progress and stop request, its outcome, its runner.

Outcomes: the user's fault → ``failed``; wall-clock limit → ``timed_out``; cancel_job →
``canceled``; platform faults (clone infrastructure, Docker, motor node lost, upload) → ``error``,
which the dispatcher requeues elsewhere. A rejected update or a withdrawn assignment means the
execution was taken from this node: the job is *abandoned* (container stopped, nothing reported).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

from fleet_node.joblog import LogStreamer
from fleet_node.runner import DockerRunner, RunnerConfig
from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.protocol import JobAssignment, JobState

log = logging.getLogger(__name__)


class PlatformFault(RaasError):
    """Something of the node's failed while running a job (the job ends ``error``)."""


class Runner(Protocol):
    """What the agent needs from a job runner (:class:`fleet_node.runner.DockerRunner`)."""

    def run_job(self, job_id: str, code_dir: Path, env: dict[str, str], socket_path: Path,
                time_limit_s: float | None = None, on_output: Any = None,
                cancel: threading.Event | None = None, args: Sequence[str] = ()) -> Any:
        """Run ``run.py ARGS...`` of ``code_dir``; block until it ends, the limit [s] passes or
        ``cancel`` is set. Returns a :class:`fleet_node.runner.RunOutcome`-like result."""


@dataclass(frozen=True)
class Outcome:
    """How a job execution ended, as reported in the final update.

    Attributes:
        state: the final job state.
        reason: one line for the researcher; None on success.
        run: the runner's :class:`~fleet_node.runner.RunOutcome` when the container ran.
    """

    state: JobState
    reason: str | None = None
    run: Any = None


@dataclass
class ActiveJob:
    """The execution this node is working on (owned by the job thread; stop flags set by control).

    Attributes:
        assignment: what the dispatcher assigned.
        version: the dispatcher's version of the job, advanced by each accepted update.
        stop_event: set when the job must stop (the runner kills the container).
        stop_kind: why it stops: ``canceled``, ``error``, ``abandoned`` or ``shutdown``; None
            while it may run on.
        stop_reason: one line saying why it stops.
        reported: the final update was sent (a withdrawn assignment is expected now).
        commit_sha: the fetched commit (git sources).
        started_at: when the dispatcher accepted ``running`` [s since the epoch].
        workdir: the job's work folder on the node.
        job_client: the job's account on the local broker while it exists.
        logs: the job's output (file and live log).
    """

    assignment: JobAssignment
    version: int
    stop_event: threading.Event = field(default_factory=threading.Event)
    stop_kind: str | None = None
    stop_reason: str | None = None
    reported: bool = False
    commit_sha: str | None = None
    started_at: float | None = None
    workdir: Path | None = None
    job_client: str | None = None
    logs: LogStreamer | None = None

    @property
    def id(self) -> str:
        """The job id."""
        return self.assignment.job_id

    @property
    def key(self) -> tuple[str, int]:
        """``(job id, execution)``: one execution of a job, the unit of every update."""
        return self.assignment.job_id, self.assignment.execution

    def stop(self, kind: str, reason: str) -> bool:
        """Ask the job to stop (first caller wins); returns False if already stopping."""
        if self.stop_kind is not None:
            return False
        self.stop_kind, self.stop_reason = kind, reason
        self.stop_event.set()
        return True

    def stopped_outcome(self) -> Outcome:
        """The outcome of a job stopped on request: ``canceled``, else ``error``."""
        kind = {"canceled": JobState.CANCELED}.get(self.stop_kind or "", JobState.ERROR)
        return Outcome(kind, self.stop_reason)


class RunnerSlot:
    """The node's job runner: the one given, or a Docker runner made when first needed.

    Without a Docker engine the node still comes online; every later need tries again, so an
    engine that comes up later is picked up.

    Args:
        runner: the runner to use; None to make a :class:`~fleet_node.runner.DockerRunner`.
        config: limits and image of that Docker runner (default :class:`RunnerConfig`'s).
    """

    def __init__(self, runner: Runner | None, config: RunnerConfig | None = None) -> None:
        self.runner = runner
        self.config = config

    def get(self) -> Runner | None:
        """The runner, made now if missing; None (logged) while Docker is unreachable."""
        if self.runner is None:
            try:
                self.runner = DockerRunner(self.config)
            except (RaasError, ImportError) as e:  # ImportError: no docker package (node extra)
                log.error("no job runner: %s", e)
        return self.runner


class Handled:
    """The executions this node started or refused lately: none is started twice.

    Args:
        keep: how many to remember (the dispatcher clears or replaces an assignment long before).
    """

    def __init__(self, keep: int = 32) -> None:
        self.keep = keep
        self._keys: list[tuple[str, int]] = []

    def first_time(self, a: JobAssignment) -> bool:
        """Whether ``a`` was neither started nor refused here yet; remembers it."""
        key = (a.job_id, a.execution)
        if key in self._keys:
            return False
        self._keys = (self._keys + [key])[-self.keep:]
        return True
