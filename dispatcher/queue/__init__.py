"""The job queue: the only code that changes job and job-execution state (its import surface).

=================  ===========================================================================
``transitions``    the TRANSITIONS table and the one writer of job/execution rows and events
``submissions``    what users do: :func:`enqueue`, :func:`cancel`
``fairness``       the fair-queue rule (FIFO, per-owner ``max_running``), written once
``assignment``     idle nodes get the fair queue's next jobs: :func:`assign_batch`
``executions``     what nodes and time do: :func:`apply_update`, :func:`expire_leases`, ...
``positions``      queue positions played out with the fair-queue rule
``reads``          jobs, executions, events, and the protocol messages made from them
=================  ===========================================================================

Every function that changes state takes the queue's policy (:class:`~dispatcher.limits.QueueLimits`,
built once at start-up) where it needs one, and an optional ``now`` [s since the epoch] so tests
can inject the clock.
"""

from dispatcher.errors import (InvalidSubmission, QueueError, StaleVersion, TransitionError,
                               UnknownJob)
from dispatcher.limits import QueueLimits
from dispatcher.queue.assignment import assign, assign_batch, errored_on, retry_reason
from dispatcher.queue.executions import (Expired, UpdateOutcome, apply_update, error_and_requeue,
                                         expire_leases, extend_accept_deadlines, fail, finish,
                                         node_lost, note_wait, requeue_reason, start)
from dispatcher.queue.positions import queue_position, queue_positions
from dispatcher.queue.reads import (Requeued, active_executions, assignment, current_execution,
                                    ensure_owner, events, events_by_others, get_execution,
                                    get_job, iter_jobs, job_source, job_status, last_event_id,
                                    recent_jobs, requeued_jobs)
from dispatcher.queue.submissions import cancel, enqueue
from dispatcher.queue.transitions import ACTIVE_STATES, SUMMARY_COLUMNS, TRANSITIONS, allowed

__all__ = [
    "ACTIVE_STATES", "Expired", "InvalidSubmission", "QueueError", "QueueLimits", "Requeued",
    "SUMMARY_COLUMNS", "StaleVersion", "TRANSITIONS", "TransitionError", "UnknownJob", "UpdateOutcome",
    "active_executions", "allowed", "apply_update", "assign", "assign_batch", "assignment",
    "cancel", "current_execution", "enqueue", "ensure_owner", "error_and_requeue", "errored_on",
    "events", "events_by_others", "expire_leases", "extend_accept_deadlines", "fail", "finish",
    "get_execution", "get_job", "iter_jobs", "job_source", "job_status", "last_event_id",
    "node_lost", "note_wait", "queue_position", "queue_positions", "recent_jobs", "requeue_reason",
    "requeued_jobs", "retry_reason", "start",
]
