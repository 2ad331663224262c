"""The job queue's errors: one family, each naming what the caller did wrong."""

from __future__ import annotations

from gym_raas_mqtt.errors import RaasError


class QueueError(RaasError):
    """Base of the job queue's errors."""


class InvalidSubmission(QueueError, ValueError):
    """A submission is refused (unknown owner, bad time limit, bad source); message says why."""


class UnknownJob(QueueError, LookupError):
    """No such job or job execution."""


class TransitionError(QueueError):
    """The transition is not allowed from the current state, or another writer changed it first."""


class StaleVersion(TransitionError):
    """An update quoted an execution version that is no longer current."""
