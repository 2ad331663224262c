"""The dispatcher worker's inbox: raw messages and control items, and the order they are handled in.

paho's thread and the ticker only put items here; the worker takes them in batches. A node's state
message may overtake job updates of *other* nodes (never its own, nor a control item such as the
start-up reconcile), so the idle → assignment latency stays bounded by one chunk of updates even
when the whole fleet is busy reporting.
"""

from __future__ import annotations

import collections
import queue
import threading
from dataclasses import dataclass
from typing import Any

from gym_raas_mqtt import protocol
from gym_raas_mqtt.errors import ProtocolError
from gym_raas_mqtt.protocol import TopicKind

CHUNK = 8
"""Job updates (and other non-presence items) handled between two dispatch passes."""
PRESENCE_WINDOW = 1024
"""How far ahead the worker looks for node-state messages."""

TICK = "tick"
"""Control item: run the timeout checks."""
CONNECTED = "connected"
"""Control item: the broker connection is up (republish, then birth)."""
RECONCILE = "reconcile"
"""Control item: reload the active executions from the database."""
STOP = "stop"
"""Control item: the worker ends."""
AUTOSCALE = "autoscale"
"""Control item: record a fleet sample and, when the autoscaler is on, scale."""


@dataclass(frozen=True)
class Message:
    """A raw MQTT message, classified on arrival (``kind``/``node`` None: not a protocol topic)."""

    topic: str
    payload: bytes
    kind: TopicKind | None
    node: str | None

    @classmethod
    def classify(cls, topic: str, payload: bytes) -> "Message":
        """Wrap a raw message with its topic's kind and node (validation comes later)."""
        try:
            parsed = protocol.parse_topic(topic)
        except ProtocolError:
            return cls(topic, payload, None, None)
        return cls(topic, payload, parsed.kind, parsed.node)


@dataclass(frozen=True)
class Barrier:
    """Control item: set ``event`` once everything put before it has been handled (tests)."""

    event: threading.Event


def presence_first(pending: collections.deque) -> list[Any]:
    """Take out of ``pending`` the node-state messages that may go ahead of it: those of nodes with
    no earlier item waiting, up to the first control item (a fence)."""
    fast, keep, blocked = [], collections.deque(), set()
    for _ in range(min(len(pending), PRESENCE_WINDOW)):
        it = pending.popleft()
        if not isinstance(it, Message):
            keep.append(it)
            break
        if it.kind == TopicKind.NODE_STATE and it.node not in blocked:
            fast.append(it)
        else:
            if it.node is not None:
                blocked.add(it.node)
            keep.append(it)
    pending.extendleft(reversed(keep))
    return fast


class Inbox:
    """A thread-safe queue of items with the handling order above."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()
        self._pending: collections.deque[Any] = collections.deque()

    def put(self, item: Any) -> None:
        """Add a control item, a :class:`Barrier` or a :class:`Message` (any thread)."""
        self._queue.put(item)

    def batch(self, reorder: bool, wait_s: float = 1.0) -> list[Any]:
        """The next items to handle (worker thread): with ``reorder``, presence first, then up to
        :data:`CHUNK` others in arrival order. Empty after ``wait_s`` without any item."""
        pending = self._pending
        if not pending:
            try:
                pending.append(self._queue.get(timeout=wait_s))
            except queue.Empty:
                return []
        while True:
            try:
                pending.append(self._queue.get_nowait())
            except queue.Empty:
                break
        work = presence_first(pending) if reorder else []
        for _ in range(min(CHUNK, len(pending))):
            work.append(pending.popleft())
        return work
