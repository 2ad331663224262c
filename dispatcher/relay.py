"""The relay of job telemetry and logs: from a node's own subtree to the job's owner, only for the
job that node holds.

A node publishes ``raas/v1/nodes/<node>/jobs/<job>/telemetry`` (the motor node, through its bridge)
and ``.../log`` (the agent); its broker login can write nothing under ``raas/v1/jobs/``. The
dispatcher, which knows which execution each node holds, republishes a message to
``raas/v1/jobs/<owner>/<job>/...`` when the node holds that job (or released it moments ago) and
the payload names the same job (and node); anything else is dropped with one log line. It runs on
paho's network thread: a lookup and a decode per message, no database.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from dispatcher.fleet import FleetView
from gym_raas_mqtt import mqtt, protocol
from gym_raas_mqtt.errors import ProtocolError
from gym_raas_mqtt.protocol import LogChunk, TelemetryBatch, TopicKind

log = logging.getLogger(__name__)

RELAYED = {TopicKind.NODE_JOB_TELEMETRY: TopicKind.JOB_TELEMETRY,
           TopicKind.NODE_JOB_LOG: TopicKind.JOB_LOG}
"""Node-scoped kind → the user-facing kind it is relayed to."""


class Relay:
    """Checks and forwards node-scoped job messages.

    Args:
        link: the dispatcher's connection (publishes the relayed messages).
        fleet: who holds which execution (written by the dispatcher's worker).
        clock: wall clock [s since the epoch].
    """

    def __init__(self, link: mqtt.Link, fleet: FleetView,
                 clock: Callable[[], float] = time.time) -> None:
        self.link = link
        self.fleet = fleet
        self.clock = clock
        self.relayed = 0
        self.dropped = 0

    def forward(self, parsed: protocol.ParsedTopic, payload: bytes) -> None:
        """Relay one message of a :data:`RELAYED` kind (paho's thread; never raises)."""
        node, job = parsed.node, parsed.job
        owner = self.fleet.owner_of(node, job, self.clock())
        if owner is None:
            return self._drop(parsed, payload, "the node does not hold this job")
        try:
            msg = protocol.TOPICS[parsed.kind].message.from_bytes(payload)
        except ProtocolError as e:
            return self._drop(parsed, payload, str(e))
        if msg.job_id != job or (isinstance(msg, TelemetryBatch) and msg.node_id != node):
            return self._drop(parsed, payload, "the payload names another job or node")
        assert isinstance(msg, (TelemetryBatch, LogChunk))
        kind = RELAYED[parsed.kind]
        self.link.publish(protocol.topic(kind, owner=owner, job=job), payload,
                          qos=protocol.TOPICS[kind].qos)
        self.relayed += 1

    def _drop(self, parsed: protocol.ParsedTopic, payload: bytes, why: str) -> None:
        self.dropped += 1
        log.warning("relay: dropped %s of job %s from node %s: %s (payload %r)",
                    parsed.kind.value, parsed.job, parsed.node, why, payload[:80])
