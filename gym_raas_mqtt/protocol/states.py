"""Every state and enumeration of the wire contract (lower-case values, stored as-is in the
database and in JSON)."""

from __future__ import annotations

import enum


class NodeStatus(str, enum.Enum):
    """A fleet node's availability, published retained on its state topic."""

    IDLE = "idle"
    BUSY = "busy"
    RESETTING = "resetting"
    MAINTENANCE = "maintenance"
    STANDBY = "standby"  # motor off, takes no job until ``wake`` (then reset and self-test)
    OFFLINE = "offline"  # clean shutdown, published by the node itself
    LOST = "lost"  # the node's last will: it vanished without saying goodbye


class JobState(str, enum.Enum):
    """A job's (and a job execution's) state; the dispatcher owns the truth."""

    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the user's code failed (non-zero exit, OOM, exception)
    TIMED_OUT = "timed_out"  # wall-clock limit reached; the run is still valid data
    CANCELED = "canceled"
    ERROR = "error"  # platform fault: the job is requeued on another node

    @property
    def terminal(self) -> bool:
        """True for states a job execution never leaves."""
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELED, JobState.ERROR}
)


class MotorStatus(str, enum.Enum):
    """The motor node's state on the node-local broker."""

    READY = "ready"
    RUNNING = "running"
    RESETTING = "resetting"
    FAULT = "fault"
    ESTOP = "estop"
    LOST = "lost"


class EnvStatus(str, enum.Enum):
    """The env client's (user code's) state on the node-local broker."""

    IDLE = "idle"
    RESETTING = "resetting"
    RUNNING = "running"
    LOST = "lost"


class NodeCommandKind(str, enum.Enum):
    """Commands the dispatcher or an operator sends to a node."""

    REBIRTH = "rebirth"  # republish meta and state
    DRAIN = "drain"  # finish the current job, take no more
    RESUME = "resume"  # undo drain
    CANCEL_JOB = "cancel_job"
    CLEAR_MAINTENANCE = "clear_maintenance"
    MAINTENANCE = "maintenance"  # take no job until clear_maintenance (``reason`` says why)
    STANDBY = "standby"  # an idle node turns its motor off and takes no job until ``wake``
    WAKE = "wake"  # leave standby: reset and self-test, then idle


class SourceKind(str, enum.Enum):
    """Where a job's code comes from."""

    GIT = "git"
    ARCHIVE = "archive"


class LogStream(str, enum.Enum):
    """Which output stream a log chunk came from."""

    STDOUT = "stdout"
    STDERR = "stderr"
    SYSTEM = "system"  # platform messages about the job (clone, image, limits)

