"""Live-update fan-out: ONE MQTT subscriber per dashboard process feeding bounded per-stream queues.

The subscriber (paho's network thread) decodes every message with :mod:`gym_raas_mqtt.protocol`,
turns it into an :class:`Event` and appends it to the queue of every open stream allowed to see it.
Queues are bounded deques: when a slow browser falls behind, the oldest events are dropped and
counted, so one stuck client can never grow the process's memory or stall the subscriber.

Authorization happens here, per event: job events go only to streams of the job's owner (or of an
admin); fleet events go to every logged-in stream. Recent state, telemetry and log lines are kept in
small bounded caches so a page opened mid-job starts with context instead of a blank chart.
"""

from __future__ import annotations

import collections
import functools
import itertools
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from gym_raas_mqtt import protocol
from gym_raas_mqtt.errors import ProtocolError, RaasError
from gym_raas_mqtt.mqtt import BrokerAddress, Link
from gym_raas_mqtt.protocol import TopicKind

log = logging.getLogger(__name__)

SUBSCRIBED_KINDS = (TopicKind.JOB_STATE, TopicKind.JOB_TELEMETRY, TopicKind.JOB_LOG,
                    TopicKind.NODE_STATE, TopicKind.NODE_META, TopicKind.NODE_HEARTBEAT)
EVENT_NAMES = {TopicKind.JOB_STATE: "state", TopicKind.JOB_TELEMETRY: "telemetry",
               TopicKind.JOB_LOG: "log", TopicKind.NODE_STATE: "node", TopicKind.NODE_META: "meta",
               TopicKind.NODE_HEARTBEAT: "heartbeat"}
JOB_CACHE_JOBS = 256  # jobs whose recent events are kept (least recently updated evicted)
JOB_CACHE_TELEMETRY = 100  # telemetry batches kept per job (~ 25 s at 20 Hz in 5-step batches)
JOB_CACHE_LOG = 200  # log chunks kept per job
SUBSCRIPTIONS = [(protocol.topic_filter(k), protocol.TOPICS[k].qos) for k in SUBSCRIBED_KINDS]
"""``(filter, QoS)`` of the subscriber: every kind the streams show, at its topic's QoS."""
KEEPALIVE_S = 15  # MQTT keepalive of the subscriber [s]


class TooManyStreams(RaasError):
    """The process-wide or per-user cap on open streams is reached (HTTP 503)."""


@dataclass(frozen=True)
class Event:
    """One live update.

    Attributes:
        name: SSE event name: ``state``, ``telemetry``, ``log`` (job events), ``node``, ``meta``,
            ``heartbeat`` (fleet events) or ``bus`` (the dashboard's own broker connection came
            or went).
        data: the message as JSON-ready data (protocol field names), plus ``node_id`` for fleet
            events.
        owner: owning user of a job event, None for fleet/bus events.
        job_id: job of a job event, None otherwise.
        id: process-wide increasing event number (the SSE ``id:``).
    """

    name: str
    data: dict[str, Any]
    owner: str | None = None
    job_id: str | None = None
    id: int = 0

    def encode(self) -> bytes:
        """The event in ``text/event-stream`` framing (encoded once, shared by every stream)."""
        return self._encoded

    @functools.cached_property
    def _encoded(self) -> bytes:
        body = json.dumps(self.data, separators=(",", ":"), allow_nan=False)
        return f"id: {self.id}\nevent: {self.name}\ndata: {body}\n\n".encode()


@dataclass(eq=False)
class Stream:
    """One client's subscription: what it may see and its bounded queue of pending events.

    Args:
        user: the logged-in user's name.
        admin: admins see every user's job events.
        jobs: job ids whose state/telemetry/log this stream wants (empty = none).
        all_jobs: wants the state events of every job it may see (the jobs list).
        fleet: wants node events.
        maxlen: queue bound; older events are dropped (and counted) beyond it.
    """

    user: str
    admin: bool = False
    jobs: frozenset[str] = frozenset()
    all_jobs: bool = False
    fleet: bool = False
    maxlen: int = 256
    dropped: int = 0
    _queue: collections.deque = field(default_factory=collections.deque)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False

    def wants(self, ev: Event) -> bool:
        """Whether this stream may and wants to see ``ev`` (authorization + filter)."""
        if ev.job_id is None:
            return self.fleet or ev.name == "bus"
        if not (self.admin or ev.owner == self.user):
            return False
        if ev.job_id in self.jobs:
            return True
        return self.all_jobs and ev.name == "state"

    def put(self, ev: Event) -> None:
        """Queue ``ev``, dropping (and counting) the oldest event when the queue is full."""
        with self._cond:
            if len(self._queue) >= self.maxlen:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(ev)
            self._cond.notify()

    def get(self, timeout_s: float) -> list[Event]:
        """Every pending event, waiting up to ``timeout_s`` for the first (``[]`` on timeout)."""
        with self._cond:
            if not self._queue and not self.closed:
                self._cond.wait(timeout_s)
            out = list(self._queue)
            self._queue.clear()
            return out

    def close(self) -> None:
        """End the stream: a waiting :meth:`get` returns at once."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()


@dataclass
class _JobCache:
    owner: str
    state: Event | None = None
    telemetry: collections.deque = field(
        default_factory=lambda: collections.deque(maxlen=JOB_CACHE_TELEMETRY))
    log: collections.deque = field(default_factory=lambda: collections.deque(maxlen=JOB_CACHE_LOG))
    episode_id: int | None = None
    step: int | None = None
    episode_reward: float = 0.0
    theta: float | None = None


class Hub:
    """Fans decoded MQTT messages out to open :class:`Stream` objects.

    Thread-safe: :meth:`publish_message` runs on paho's thread, :meth:`open`/:meth:`close` on
    request threads.

    Args:
        max_streams: process-wide cap on open streams.
        max_streams_per_user: per-user cap.
        queue_size: bound of each stream's queue (events).
    """

    def __init__(self, max_streams: int = 16, max_streams_per_user: int = 6,
                 queue_size: int = 256) -> None:
        self.max_streams = max_streams
        self.max_streams_per_user = max_streams_per_user
        self.queue_size = queue_size
        self._lock = threading.Lock()
        self._streams: set[Stream] = set()
        self._ids = itertools.count(1)
        self._nodes: dict[str, dict[str, Event]] = {}
        self._jobs: collections.OrderedDict[str, _JobCache] = collections.OrderedDict()
        self.connected = False
        self.received = 0
        self.rejected = 0
        self.dropped_total = 0

    # -- streams -------------------------------------------------------------------------------
    def open(self, user: str, *, admin: bool = False, jobs: Iterable[str] = (),
             all_jobs: bool = False, fleet: bool = False) -> Stream:
        """Open a stream and queue the cached snapshot it is allowed to see.

        Raises:
            TooManyStreams: a cap is reached.
        """
        stream = Stream(user, admin, frozenset(jobs), all_jobs, fleet, self.queue_size)
        with self._lock:
            if len(self._streams) >= self.max_streams:
                raise TooManyStreams(f"{len(self._streams)} live streams are open, the limit of "
                                     "this server; retry later")
            mine = sum(1 for s in self._streams if s.user == user)
            if mine >= self.max_streams_per_user:
                raise TooManyStreams(f"you have {mine} live streams open (limit "
                                     f"{self.max_streams_per_user}); close a tab")
            self._streams.add(stream)
            for ev in self._snapshot_locked(stream):
                stream.put(ev)
        return stream

    def close(self, stream: Stream) -> None:
        """Close ``stream``, free its slot and add its dropped events to :attr:`dropped_total`."""
        stream.close()
        with self._lock:
            self._streams.discard(stream)
            self.dropped_total += stream.dropped

    def shutdown(self) -> None:
        """End every open stream (their responses finish; browsers reconnect elsewhere)."""
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.close()

    @property
    def open_streams(self) -> int:
        """How many streams are open."""
        with self._lock:
            return len(self._streams)

    def _snapshot_locked(self, stream: Stream) -> list[Event]:
        out: list[Event] = []
        if stream.fleet:
            for evs in self._nodes.values():
                out.extend(evs.values())
        for job_id, cache in self._jobs.items():
            probe = Event("state", {}, cache.owner, job_id)
            if not stream.wants(probe):
                continue
            if cache.state is not None:
                out.append(cache.state)
            if job_id in stream.jobs:
                out.extend(cache.log)
                out.extend(cache.telemetry)
        out.sort(key=lambda e: e.id)
        return [Event("bus", {"connected": self.connected}, id=next(self._ids))] + out

    # -- input ---------------------------------------------------------------------------------
    def set_connected(self, connected: bool) -> None:
        """Record the subscriber's broker connection and tell every stream (fleet data is stale
        while disconnected)."""
        with self._lock:
            self.connected = connected
            ev = Event("bus", {"connected": connected}, id=next(self._ids))
            for s in self._streams:
                s.put(ev)

    def publish_message(self, topic: str, payload: bytes) -> Event | None:
        """Decode one MQTT message and fan it out. Never raises (it runs on paho's thread).

        Returns:
            The event queued, or None when the message was not for streams (or invalid).
        """
        try:
            parsed, msg = protocol.decode(topic, payload)
            if parsed.kind not in EVENT_NAMES:
                return None
            return self._fan_out(parsed, msg)
        except ProtocolError as e:
            self.rejected += 1
            log.warning("dropped invalid message on %.120s (%s): %.200r", topic, e, payload[:200])
        except Exception:  # a bug here must not kill paho's network thread
            self.rejected += 1
            log.exception("live-update fan-out failed for %.120s", topic)
        return None

    def _fan_out(self, parsed: protocol.ParsedTopic, msg: protocol.Message | None) -> Event | None:
        name = EVENT_NAMES[parsed.kind]
        with self._lock:
            self.received += 1
            if parsed.node is not None:  # fleet: node state/meta (retained), the last heartbeat
                if msg is None:
                    self._nodes.get(parsed.node, {}).pop(name, None)
                    return None
                data = msg.to_dict() | {"node_id": parsed.node}
                ev = Event(name, data, id=next(self._ids))
                self._nodes.setdefault(parsed.node, {})[name] = ev
            else:
                if msg is None:  # a cleared retained job state
                    return None
                ev = Event(name, msg.to_dict(), parsed.owner, parsed.job, next(self._ids))
                self._remember_job(ev, msg)
            for s in self._streams:
                if s.wants(ev):
                    s.put(ev)
            return ev

    def _remember_job(self, ev: Event, msg: protocol.Message) -> None:
        assert ev.job_id is not None and ev.owner is not None
        cache = self._jobs.get(ev.job_id)
        if cache is None:
            cache = self._jobs[ev.job_id] = _JobCache(ev.owner)
            while len(self._jobs) > JOB_CACHE_JOBS:
                self._jobs.popitem(last=False)
        else:
            self._jobs.move_to_end(ev.job_id)
        if ev.name == "state":
            cache.state = ev
        elif ev.name == "log":
            cache.log.append(ev)
        elif isinstance(msg, protocol.TelemetryBatch):
            cache.telemetry.append(ev)
            if msg.episode_id != cache.episode_id:
                cache.episode_id, cache.episode_reward = msg.episode_id, 0.0
            cache.episode_reward += sum(msg.reward)
            if msg.seq:
                cache.step, cache.theta = msg.seq[-1], msg.theta[-1]

    def live_progress(self, job_id: str) -> dict[str, Any] | None:
        """The latest episode/step/return seen for ``job_id`` (for the CLI's progress line)."""
        with self._lock:
            c = self._jobs.get(job_id)
            if c is None or c.step is None:
                return None
            return {"episode_id": c.episode_id, "step": c.step,
                    "episode_reward": round(c.episode_reward, 4), "theta": c.theta}

    def node_snapshot(self) -> dict[str, dict[str, Any]]:
        """Live node data: ``{node_id: {"state": {...}, "meta": {...}, "heartbeat": {...}}}``
        (the retained state and meta, the last heartbeat)."""
        with self._lock:
            return {n: {"state" if k == "node" else k: ev.data for k, ev in evs.items()}
                    for n, evs in self._nodes.items()}


class Subscriber:
    """The process's single MQTT subscriber feeding a :class:`Hub`.

    Its :class:`~gym_raas_mqtt.mqtt.Link` connects in the background (the dashboard serves pages
    while the broker is away) and hands raw messages to :meth:`Hub.publish_message`, which decodes,
    counts rejects and fans out; connection changes go to :meth:`Hub.set_connected`.

    Args:
        hub: where messages go.
        address: central broker address (the read-only ``dashboard`` account).
        link_factory: builds the connection with :class:`~gym_raas_mqtt.mqtt.Link`'s signature
            (tests pass a fake).
    """

    def __init__(self, hub: Hub, address: BrokerAddress,
                 link_factory: Callable[..., Link] = Link) -> None:
        self.hub = hub
        # The broker binds a login to one client id, its username: a second dashboard process needs
        # its own login (RAAS_DASHBOARD_MQTT_USERNAME). Without a login (tests): a unique id.
        cid = address.username or f"dashboard-{uuid.uuid4().hex[:12]}"
        self.link = link_factory(address, cid, name="dashboard",
                                 subscriptions=SUBSCRIPTIONS, on_message=hub.publish_message,
                                 raw=True, on_up=self.on_up, on_down=self.on_down,
                                 keepalive_s=KEEPALIVE_S)

    def start(self) -> None:
        """Connect in the background (paho retries until the broker is reachable)."""
        self.link.start(timeout_s=None)

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self.link.close()

    def on_up(self) -> None:
        """Connected and subscribed: streams learn that live data flows again."""
        self.hub.set_connected(True)
        log.info("live updates: subscribed on the central broker")

    def on_down(self) -> None:
        """Connection lost or closed: streams learn that fleet data may be stale."""
        self.hub.set_connected(False)
        log.warning("live updates: disconnected from the central broker")


def keepalive_comment(now: float | None = None) -> bytes:
    """An SSE comment line that keeps proxies and the browser from timing out an idle stream."""
    return f": keepalive {int(now if now is not None else time.time())}\n\n".encode()
