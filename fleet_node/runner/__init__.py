"""The job runner: one job's user code in a locked-down Docker container, and how it ended.

:mod:`~fleet_node.runner.config` holds the limits and the outcome,
:mod:`~fleet_node.runner.container` the container's hardening, :mod:`~fleet_node.runner.output`
the output reader, :mod:`~fleet_node.runner.supervisor` the container's main process (it ends the
job when the agent is gone) and :mod:`~fleet_node.runner.docker_runner` the engine calls.
"""

from fleet_node.runner.config import (INSTALLATION_LABEL, JOB_LABEL, NODE_LABEL, OnOutput,
                                      RunnerConfig, RunnerError, RunOutcome)
from fleet_node.runner.docker_runner import DockerRunner, run_job

__all__ = ["RunnerConfig", "RunOutcome", "DockerRunner", "RunnerError", "run_job", "JOB_LABEL",
           "NODE_LABEL", "INSTALLATION_LABEL", "OnOutput"]
