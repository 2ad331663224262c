"""The job runner's settings and results: container limits, labels, and how a run ended.

Outcomes (``protocol.JobState``): exit 0 → ``succeeded``; the wall-clock limit → ``timed_out`` (the
run is still valid data); non-zero exit or the memory limit → ``failed``; anything wrong with the
platform (image missing, Docker unreachable or failing) → ``error``, which the dispatcher requeues.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gym_raas_mqtt.config import setting
from gym_raas_mqtt.errors import ConfigError, RaasError
from gym_raas_mqtt.protocol import ID_PATTERN, JobState, LogStream
from raas_platform.settings import DATA_DIR

JOB_LABEL = "raas.job"
"""Container label holding the job id; every container the runner creates carries it."""
NODE_LABEL = "raas.node"
"""Container label holding the node id, so two nodes sharing one engine never sweep each other."""
INSTALLATION_LABEL = "raas.installation"
"""Container label holding :attr:`RunnerConfig.installation`, so two installations sharing one
engine (even with the same node ids) never sweep each other."""

OnOutput = Callable[[LogStream, str], None]
"""Called ``(stream, line)`` for each output line of the job (no newline)."""


class RunnerError(RaasError):
    """The platform could not run the job (bad arguments from the agent, Docker failing)."""


@dataclass(frozen=True)
class RunnerConfig:
    """Resource limits and the image of job containers (defaults suit a Raspberry Pi 4, 4 GB)."""

    image: str = setting("RAAS_RUNNER_IMAGE", "raas-runner:latest",
                         "job runner image (images/build.sh builds and tags it)")
    memory_mib: int = setting("RAAS_RUNNER_MEMORY_MIB", 512,
                              "container memory limit; swap is disabled", unit="MiB")
    pids: int = setting("RAAS_RUNNER_PIDS", 128, "maximum processes + threads in the container")
    cpus: float = setting("RAAS_RUNNER_CPUS", 1.0, "CPU limit (fraction of cores)", unit="CPUs")
    tmpfs_mib: int = setting("RAAS_RUNNER_TMPFS_MIB", 64,
                             "size of the writable /tmp (also $HOME); counts as memory", unit="MiB")
    default_time_limit_s: float = setting("RAAS_RUNNER_TIME_LIMIT_S", 120.0,
                                          "wall-clock limit when a job asks for none", unit="s")
    max_time_limit_s: float = setting("RAAS_RUNNER_MAX_TIME_LIMIT_S", 600.0,
                                      "largest wall-clock limit a job may ask for", unit="s")
    output_cap_bytes: int = setting("RAAS_RUNNER_OUTPUT_CAP_BYTES", 1024 * 1024,
                                    "stdout+stderr passed on per job; the rest is dropped",
                                    unit="bytes")
    docker_timeout_s: float = setting("RAAS_RUNNER_DOCKER_TIMEOUT_S", 30.0,
                                      "timeout of one Docker API call", unit="s")
    installation_id: str | None = setting(
        "RAAS_INSTALLATION_ID", None,
        "label of this installation's job containers; an agent removes only its own "
        "installation's (default: derived from RAAS_DATA_DIR, so installations differ)")
    data_dir: Path = DATA_DIR.field()

    def __post_init__(self) -> None:
        if self.installation_id is not None and not ID_PATTERN.match(self.installation_id):
            raise ConfigError(f"RAAS_INSTALLATION_ID={self.installation_id!r} must match "
                              f"{ID_PATTERN.pattern}")
        if self.memory_mib < 32 or self.pids < 8 or self.cpus <= 0 or self.tmpfs_mib < 1:
            raise ConfigError(f"runner limits too small: {self}")
        if not 0 < self.default_time_limit_s <= self.max_time_limit_s:
            raise ConfigError("need 0 < RAAS_RUNNER_TIME_LIMIT_S <= RAAS_RUNNER_MAX_TIME_LIMIT_S")
        if self.output_cap_bytes < 1024:
            raise ConfigError("RAAS_RUNNER_OUTPUT_CAP_BYTES must be at least 1024")

    @property
    def installation(self) -> str:
        """This installation's id: ``RAAS_INSTALLATION_ID``, else ``data-`` + 12 hex digits of
        the SHA-256 of the absolute data dir (stable across restarts of one installation)."""
        if self.installation_id is not None:
            return self.installation_id
        folder = str(Path(self.data_dir).resolve())
        return "data-" + hashlib.sha256(folder.encode()).hexdigest()[:12]

    def time_limit(self, requested_s: float | None) -> float:
        """The limit a job gets: ``requested_s`` clamped to (0, max], default when None (s)."""
        if requested_s is None or requested_s <= 0:
            return self.default_time_limit_s
        return min(float(requested_s), self.max_time_limit_s)


@dataclass(frozen=True)
class RunOutcome:
    """How a job's container ended.

    Attributes:
        state: ``succeeded``, ``failed``, ``timed_out``, ``canceled`` (``cancel`` was set) or
            ``error``.
        exit_code: the process's exit status (128+n when killed by signal n); None when it never
            ran or its status is unknown.
        reason: one human-readable line ("exit code 3", "out of memory (limit 512 MiB)", ...);
            None on success.
        oom_killed: the kernel's OOM killer hit the container.
        duration_s: container start to exit (s); 0 when it never started.
        output_bytes: bytes the code wrote to stdout+stderr, including those dropped.
        truncated: output went past ``RunnerConfig.output_cap_bytes`` and the rest was dropped.
        image_id: ID (``sha256:...``) of the image the job ran in; None if unresolved.
        time_limit_s: the wall-clock limit applied (s).
    """

    state: JobState
    exit_code: int | None = None
    reason: str | None = None
    oom_killed: bool = False
    duration_s: float = 0.0
    output_bytes: int = 0
    truncated: bool = False
    image_id: str | None = None
    time_limit_s: float = 0.0
