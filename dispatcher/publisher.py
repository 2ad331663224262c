"""What the dispatcher publishes: its birth, retained assignments and job states, update answers
and node commands — each with its topic's QoS and retain flag from the protocol."""

from __future__ import annotations

import collections
from typing import Any, Callable, Mapping

from dispatcher.models import Execution, Job
from dispatcher.queue import UpdateOutcome, assignment, job_status
from gym_raas_mqtt import mqtt, protocol
from gym_raas_mqtt.protocol import NodeCommandKind, TopicKind

STATUS_MEMORY = 100_000
"""Job states remembered to skip republishing an unchanged one (then the memory starts over)."""
SENT_MEMORY = 1024
"""Node commands remembered to recognise their copies on the dispatcher's subscription."""


class Publisher:
    """Publishes through the dispatcher's :class:`~gym_raas_mqtt.mqtt.Link`.

    Args:
        link: the connection (messages published while it is down are queued by paho).
        clock: wall clock [s since the epoch] for the messages' ``ts``.
        command_expiry_s: message expiry of node commands [s].
    """

    def __init__(self, link: mqtt.Link, clock: Callable[[], float],
                 command_expiry_s: int) -> None:
        self.link = link
        self.clock = clock
        self.command_expiry_s = command_expiry_s
        self.assigned: dict[str, tuple[str, int] | None] = {}  # node id → retained jobs/next
        self._status_sent: dict[str, tuple] = {}
        self._sent: collections.deque[tuple[str, bytes]] = collections.deque(maxlen=SENT_MEMORY)
        self._sent_set: set[tuple[str, bytes]] = set()

    def birth(self, ts: float) -> None:
        """The retained ``online`` state (nodes re-announce when they see a newer one)."""
        self.link.send(protocol.topic(TopicKind.DISPATCHER_STATE),
                       protocol.DispatcherState(online=True, ts=ts))

    def assignment(self, node_id: str, job: Job, ex: Execution) -> None:
        """Retain execution ``ex`` of ``job`` on the node's ``jobs/next``."""
        self.link.send(protocol.topic(TopicKind.NODE_JOB_NEXT, node=node_id),
                       assignment(job, ex, self.clock()))
        self.assigned[node_id] = (job.id, ex.number)

    def clear_assignment(self, node_id: str) -> None:
        """Clear the node's retained ``jobs/next`` (it holds nothing)."""
        self.link.send(protocol.topic(TopicKind.NODE_JOB_NEXT, node=node_id), None)
        self.assigned[node_id] = None

    def clear_stale_assignments(self, holding: Mapping[str, Any]) -> None:
        """Clear ``jobs/next`` of nodes we published to that hold nothing now."""
        for node_id, held in list(self.assigned.items()):
            if held is not None and node_id not in holding:
                self.clear_assignment(node_id)

    def status(self, job: Job) -> None:
        """The job's retained state, unless unchanged since last published."""
        key = (job.state, job.attempts, job.node_id, job.reason, job.result_key)
        if self._status_sent.get(job.id) == key:
            return
        if len(self._status_sent) >= STATUS_MEMORY:
            self._status_sent.clear()
        self._status_sent[job.id] = key
        self.link.send(protocol.topic(TopicKind.JOB_STATE, owner=job.owner_id, job=job.id),
                       job_status(job, self.clock()))

    def forget_statuses(self) -> None:
        """Publish every job state again from now on (after a reconnect)."""
        self._status_sent.clear()

    def update_reply(self, node_id: str, update: protocol.JobUpdate,
                     outcome: UpdateOutcome) -> None:
        """Answer a node's update on ``.../accepted`` or ``.../rejected``."""
        reply = protocol.JobUpdateReply(job_id=update.job_id, execution=update.execution,
                                        version=outcome.version, accepted=outcome.accepted,
                                        ts=self.clock(), reason=outcome.reason)
        kind = TopicKind.NODE_JOB_ACCEPTED if outcome.accepted else TopicKind.NODE_JOB_REJECTED
        self.link.send(protocol.topic(kind, node=node_id, job=update.job_id), reply)

    def cancel(self, node_id: str, job_id: str, reason: str) -> None:
        """Tell a node to stop a job (``cancel_job``, with a message expiry)."""
        self.command(node_id, NodeCommandKind.CANCEL_JOB, reason, job_id=job_id)

    def command(self, node_id: str, kind: NodeCommandKind, reason: str | None = None,
                job_id: str | None = None) -> None:
        """Send a node a command (with a message expiry); remembered, so that its copy coming
        back on the dispatcher's own subscription is recognised (:meth:`sent_by_me`)."""
        cmd = protocol.NodeCommand(command=kind, ts=self.clock(), job_id=job_id,
                                   reason=reason and reason[:500])
        name, payload = protocol.topic(TopicKind.NODE_CMD, node=node_id), cmd.to_bytes()
        if len(self._sent) == self._sent.maxlen:
            self._sent_set.discard(self._sent[0])
        self._sent.append((name, payload))
        self._sent_set.add((name, payload))
        spec = protocol.TOPICS[TopicKind.NODE_CMD]
        self.link.publish(name, payload, spec.qos, spec.retain,
                          mqtt.message_expiry(self.command_expiry_s))

    def sent_by_me(self, topic: str, payload: bytes) -> bool:
        """Whether a message on a node's cmd topic is one of the last commands sent here."""
        return (topic, payload) in self._sent_set
