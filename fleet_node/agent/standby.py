"""The node's standby: motor off and no job taken until ``wake``; assignments refused meanwhile.

The dispatcher (its autoscaler, or an operator through it) sends ``standby`` to an idle node and
``wake`` to bring it back. Entering standby stops the motor the way the end of a job does (an
e-stop on the node-local broker: torque off until the next reset) and reports ``standby``; a wake
goes through ``resetting`` and the self-test before the node reports ``idle`` again, so a woken
node never takes a job before it passed. A ``standby`` that arrives while the node is busy,
resetting or in maintenance is kept and applied once it is idle. An assignment that reaches a node
in standby anyway is refused with an ``error`` update: the dispatcher requeues the job.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from fleet_node.agent.job import ActiveJob
from fleet_node.agent.replies import PublishLocal, UpdateChannel
from gym_raas_mqtt.protocol import EStop, JobAssignment, JobState, TopicKind

log = logging.getLogger(__name__)

REFUSE_TIMEOUT_S = 30.0
"""How long a refusal is resent until the dispatcher answers it [s]."""


class Standby:
    """Whether the node should be in standby, and what entering it and refusing a job do.

    Owned by the agent's control thread (:attr:`wanted` is read and written there only).

    Args:
        node_id: this node.
        publish_local: publishes on the node-local broker (the motor's e-stop).
        updates: the versioned job updates to the dispatcher (a refusal is one).
        clock: wall clock [s since the epoch] for timestamps.
    """

    def __init__(self, node_id: str, publish_local: PublishLocal, updates: UpdateChannel,
                 clock: Callable[[], float]) -> None:
        self.node_id = node_id
        self.wanted = False
        self._publish_local = publish_local
        self._updates = updates
        self._clock = clock

    def stop_motor(self) -> None:
        """Turn the motor off as the end of a job does (torque off until the next reset)."""
        self._publish_local(TopicKind.ENV_ESTOP, EStop("standby", self._clock()))

    def refuse(self, assignment: JobAssignment) -> threading.Thread:
        """Refuse an assignment that reached the node in standby: an ``error`` update, so the
        dispatcher requeues the job. Sent from a thread of its own (the control thread never
        waits for the dispatcher); returns that thread."""
        reason = f"refused: node {self.node_id} is in standby"
        log.warning("job %s#%d: %s", assignment.job_id, assignment.execution, reason)
        job = ActiveJob(assignment, assignment.version)
        sender = threading.Thread(
            target=self._updates.update, args=(job, JobState.ERROR, {"reason": reason}),
            kwargs={"timeout_s": REFUSE_TIMEOUT_S}, name=f"refuse-{assignment.job_id}",
            daemon=True)
        sender.start()
        return sender
