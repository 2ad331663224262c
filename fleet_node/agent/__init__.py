"""The fleet agent: node presence on the central broker and the execution of assigned jobs.

:mod:`~fleet_node.agent.service` holds the :class:`Agent` (connections, routing, presence, job
starts), :mod:`~fleet_node.agent.pipeline` one job execution from ``running`` to its final update,
:mod:`~fleet_node.agent.replies` the requests it waits on (job updates, self-test),
:mod:`~fleet_node.agent.jobpath` the between-jobs drive of the env through a job login,
:mod:`~fleet_node.agent.recovery` the clean-up after a crash, :mod:`~fleet_node.agent.presence`
the retained meta, state and will, and :mod:`~fleet_node.agent.job` what one execution is.
Protocol and state machines: docs/job-lifecycle.md.
"""

from fleet_node.agent.job import ActiveJob, Outcome, PlatformFault, Runner
from fleet_node.agent.service import Agent, AgentError

__all__ = ["Agent", "AgentError", "ActiveJob", "Outcome", "PlatformFault", "Runner"]
