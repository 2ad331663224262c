"""The dispatcher service: MQTT glue between the fleet and the job queue (which owns the state).

Threads: paho's network thread only decodes nothing and enqueues raw messages; one worker thread
does every database call and every decision (SQLite has a single writer anyway); a ticker thread
enqueues a tick every ``tick_s`` for the timeouts. The database is the truth: on start the worker
reloads the active executions, republishes their retained assignments and job states, and then
reconciles them with the nodes' retained states as those arrive. See docs/job-lifecycle.md.
"""

from __future__ import annotations

import collections
import logging
import queue as queue_mod
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from dispatcher import queue
from dispatcher.config import DispatcherConfig
from dispatcher.limits import QueueLimits
from dispatcher.models import Job, JobEvent, init_db
from gym_raas_mqtt import mqtt, protocol
from gym_raas_mqtt.errors import ProtocolError
from gym_raas_mqtt.protocol import JobState, NodeStatus, TopicKind

log = logging.getLogger(__name__)

_TICK = object()
_CONNECTED = object()
_DISCONNECTED = object()
_STOP = object()
_CHUNK = 8  # job updates handled between two dispatch passes
_PRESENCE_WINDOW = 1024  # how far ahead the worker looks for node-state messages
_ASSIGN_CHUNK = 16  # assignments per transaction in a burst of idle nodes
_FOLLOW_EVERY_S = 0.02  # how often other writers' events are looked for (besides every tick)


@dataclass
class NodeView:
    """What the dispatcher believes about one node (rebuilt from retained messages)."""

    state: NodeStatus | None = None  # None: not heard from since start
    session: int = -1
    job_id: str | None = None
    suspect_since: float | None = None  # a current `lost` (or silence after start) since then
    seen_at: float | None = None


@dataclass
class Holding:
    """The execution a node holds (assigned or running), as last written by the queue."""

    job_id: str
    execution: int
    state: JobState


class Dispatcher:
    """Run the dispatcher: :meth:`start`, then :meth:`stop` (or :meth:`run_forever`).

    Args:
        config: settings.
        limits: the queue's policy (built once at start-up).
        clock: wall clock [s since the epoch]; tests inject a fake one and call :meth:`tick_now`.
    """

    def __init__(self, config: DispatcherConfig, limits: QueueLimits, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.limits = limits
        self.nodes: dict[str, NodeView] = {}
        self.holding: dict[str, Holding] = {}  # node id → its active execution
        self.published: dict[str, tuple[str, int] | None] = {}  # node id → retained jobs/next
        self.cancel_sent: set[tuple[str, int]] = set()
        self.draining: set[str] = set()
        self.connected = threading.Event()
        self.ready = threading.Event()  # first connect handled (reconciled, birth published)
        self._inbox: queue_mod.Queue[Any] = queue_mod.Queue()
        self._dirty_nodes: dict[str, dict[str, Any]] = {}
        self._event_cursor = 0
        self._followed_at = 0.0
        self._seen_events: set[int] = set()
        self._status_sent: dict[str, tuple] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._birth_ts = 0.0
        self._client: Any = None
        self.stats = {"assigned": 0, "updates": 0, "dropped": 0, "stale_states": 0}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Open the database, connect to the broker (retrying in the background), start threads."""
        url = self.config.database_url
        if url.startswith("sqlite:///"):
            from pathlib import Path
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        init_db(url)
        address = mqtt.BrokerAddress.parse(self.config.mqtt_url,
                                           username=self.config.mqtt_username,
                                           password_file=self.config.mqtt_password_file)
        self._birth_ts = self.clock()
        will = mqtt.Will(protocol.topic(TopicKind.DISPATCHER_STATE),
                         protocol.DispatcherState(online=False, ts=self._birth_ts).to_bytes())
        client = mqtt.make_client(address, self.config.client_id, will=will,
                                  session_expiry_s=self.config.session_expiry_s,
                                  clean_start=False)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(0.1, 2)
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        self._client = client
        worker = threading.Thread(target=self._work, name="dispatcher-worker", daemon=True)
        ticker = threading.Thread(target=self._tick_loop, name="dispatcher-tick", daemon=True)
        self._threads = [worker, ticker]
        self._inbox.put(("reconcile",))
        worker.start()
        ticker.start()
        mqtt.connect(client, self.config.keepalive_s, async_=True)
        client.loop_start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Clean exit: publish ``online: false`` ourselves (a clean DISCONNECT sends no will)."""
        self._stop.set()
        self._inbox.put(_STOP)
        for t in self._threads:
            t.join(timeout_s)
        client = self._client
        if client is not None:
            if self.connected.is_set():
                info = client.publish(protocol.topic(TopicKind.DISPATCHER_STATE),
                                      protocol.DispatcherState(online=False,
                                                               ts=self._birth_ts).to_bytes(),
                                      qos=1, retain=True)
                try:
                    info.wait_for_publish(timeout_s)
                except (RuntimeError, ValueError):
                    pass
            mqtt.shutdown(client)

    def run_forever(self) -> None:
        """Start, then block until SIGTERM/SIGINT; then stop cleanly."""
        import signal

        done = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: done.set())
        self.start()
        log.info("dispatcher running (database %s, broker %s)", _safe_url(self.config.database_url),
                 self.config.mqtt_url.split("@")[-1])
        while not done.wait(1.0):
            pass
        self.stop()

    def tick_now(self) -> None:
        """Run the timeout checks now (tests advance an injected clock, then call this)."""
        self._inbox.put(_TICK)

    def wait_idle(self, timeout_s: float = 5.0) -> None:
        """Block until the worker has handled everything enqueued so far (tests)."""
        ev = threading.Event()
        self._inbox.put(("barrier", ev))
        ev.wait(timeout_s)

    # ------------------------------------------------------------------ paho callbacks
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any = None
                    ) -> None:
        if rc.is_failure:
            log.error("broker refused the connection: %s", rc)
            return
        client.subscribe([(protocol.topic_filter(k), 1) for k in
                          (TopicKind.NODE_STATE, TopicKind.NODE_META, TopicKind.NODE_JOB_UPDATE)])
        self.connected.set()
        self._inbox.put(_CONNECTED)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any = None
                       ) -> None:
        self.connected.clear()
        if self._stop.is_set():
            return
        log.warning("disconnected from the broker (%s); reconnecting", rc)
        # The next birth must be newer than anything nodes saw; the will carries the same ts.
        self._birth_ts = max(self.clock(), self._birth_ts + 1e-3)
        client.will_set(protocol.topic(TopicKind.DISPATCHER_STATE),
                        protocol.DispatcherState(online=False, ts=self._birth_ts).to_bytes(),
                        qos=1, retain=True)
        self._inbox.put(_DISCONNECTED)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        kind, node = _kind_and_node(msg.topic)  # classified here: the worker reorders by it
        self._inbox.put(("msg", msg.topic, bytes(msg.payload), kind, node))

    # ------------------------------------------------------------------ worker
    def _tick_loop(self) -> None:
        while not self._stop.wait(self.config.tick_s):
            self._inbox.put(_TICK)

    def _work(self) -> None:
        """The worker loop: presence first, then job updates in small chunks, then dispatch.

        A node's ``idle`` may overtake queued job updates of *other* nodes (never its own, nor a
        control item such as the start-up reconcile), so the idle → assignment latency stays
        bounded by one chunk of updates even when the whole fleet is busy reporting.
        """
        pending: collections.deque[Any] = collections.deque()
        while True:
            if not pending:
                try:
                    pending.append(self._inbox.get(timeout=1.0))
                except queue_mod.Empty:
                    continue
            while True:
                try:
                    pending.append(self._inbox.get_nowait())
                except queue_mod.Empty:
                    break
            work = self._presence_first(pending) if self.ready.is_set() else []
            for _ in range(min(_CHUNK, len(pending))):
                work.append(pending.popleft())
            barriers = []
            for it in work:
                if it is _STOP:
                    self._flush_nodes()
                    return
                if isinstance(it, tuple) and it[0] == "barrier":
                    barriers.append(it[1])
                    continue
                try:
                    self._handle(it)
                except Exception:  # noqa: BLE001 - the worker must survive anything
                    log.exception("dispatcher worker: failed to handle %r", _describe(it))
            try:
                if time.monotonic() - self._followed_at >= _FOLLOW_EVERY_S:
                    self._followed_at = time.monotonic()
                    self._follow_events()  # first: publish `queued` before the job is assigned
                self._dispatch()
                self._flush_nodes()
            except Exception:  # noqa: BLE001
                log.exception("dispatcher worker: dispatch pass failed")
            for ev in barriers:
                ev.set()

    @staticmethod
    def _presence_first(pending: collections.deque) -> list[Any]:
        """Take node-state messages out of ``pending`` that may go ahead (see :meth:`_work`)."""
        fast, keep, blocked = [], collections.deque(), set()
        for _ in range(min(len(pending), _PRESENCE_WINDOW)):
            it = pending.popleft()
            if not (isinstance(it, tuple) and it[0] == "msg"):  # control item: a fence
                keep.append(it)
                break
            kind, node = it[3], it[4]
            if kind == TopicKind.NODE_STATE and node not in blocked:
                fast.append(it)
            else:
                if node is not None:
                    blocked.add(node)
                keep.append(it)
        pending.extendleft(reversed(keep))
        return fast

    def _handle(self, item: Any) -> None:
        if item is _TICK:
            self._on_tick()
        elif item is _CONNECTED:
            self._on_connected()
        elif item is _DISCONNECTED:
            pass
        elif item[0] == "reconcile":
            self._reconcile()
        elif item[0] == "msg":
            self._on_raw(item[1], item[2])

    def _on_raw(self, name: str, payload: bytes) -> None:
        try:
            parsed, msg = protocol.decode(name, payload)
        except ProtocolError as e:
            self.stats["dropped"] += 1
            log.warning("dropped malformed message on %s (%s): %r", name[:120], e, payload[:200])
            return
        if parsed.kind == TopicKind.NODE_STATE:
            self.on_node_state(parsed.node, msg)
        elif parsed.kind == TopicKind.NODE_META:
            self.on_node_meta(parsed.node, msg)
        elif parsed.kind == TopicKind.NODE_JOB_UPDATE:
            if msg is None:
                return
            if msg.job_id != parsed.job:
                log.warning("dropped update on %s: payload is for job %s", name, msg.job_id)
                self.stats["dropped"] += 1
                return
            self.on_job_update(parsed.node, msg)

    # ------------------------------------------------------------------ start / reconnect
    def _reconcile(self) -> None:
        """The DB is the truth: reload who holds what (before any MQTT message is handled)."""
        for ex in queue.active_executions():
            self.holding[ex.node_id] = Holding(ex.job_id, ex.number, JobState(ex.state))
        self._event_cursor = queue._exec('SELECT MAX("id") FROM "jobevent"').fetchone()[0] or 0
        self.draining = _draining_nodes()
        log.info("reconciled: %d active execution(s)", len(self.holding))

    def _on_connected(self) -> None:
        """Republish everything retained we own (a broker restart may have lost it), then the
        birth."""
        now = self.clock()
        # Nodes had no way to accept while we were away: give them a fresh acceptance window.
        queue.extend_accept_deadlines(now, limits=self.limits)
        for node_id, h in list(self.holding.items()):
            view = self.nodes.setdefault(node_id, NodeView())
            if view.state != NodeStatus.LOST or view.suspect_since is None:
                # Unconfirmed until its (retained) state arrives on this connection; a node that
                # never shows up (silent since our start, or gone with a broker that lost its
                # retained messages) is handled like a lost one after the grace period.
                view.suspect_since = now
            job = queue.get_job(h.job_id)
            ex = queue.get_execution(h.job_id, h.execution)
            self._publish_assignment(node_id, job, ex)
        for node_id, held in list(self.published.items()):
            if held is None:
                continue
            if node_id not in self.holding:
                self._clear_assignment(node_id)
        window = now - self.config.republish_window_s
        recent = Job.select().where(Job.state.in_(["queued", "assigned", "running"])
                                    | (Job.finished_at > window))
        self._status_sent.clear()
        for job in recent:
            self._publish_status(job)
        # Birth last: retained state first, then "online" (nodes re-announce when they see it).
        self._publish(protocol.topic(TopicKind.DISPATCHER_STATE),
                      protocol.DispatcherState(online=True, ts=self._birth_ts))
        self.ready.set()

    # ------------------------------------------------------------------ node presence
    def on_node_state(self, node_id: str, msg: protocol.NodeState | None) -> None:
        """Apply a node's retained state (presence rules in docs/job-lifecycle.md)."""
        now = self.clock()
        view = self.nodes.setdefault(node_id, NodeView())
        if msg is None:  # retained state cleared: the node was removed from the fleet
            view.state, view.suspect_since = NodeStatus.OFFLINE, view.suspect_since or now
            self._node_row(node_id, state=NodeStatus.OFFLINE.value, last_seen=now)
            return
        if msg.session < view.session:
            self.stats["stale_states"] += 1
            log.info("ignored %s of node %s: session %d is older than %d (late will)",
                     msg.state.value, node_id, msg.session, view.session)
            return
        view.session, view.job_id, view.seen_at = msg.session, msg.job_id, now
        view.state = msg.state
        if msg.state == NodeStatus.LOST:
            if view.suspect_since is None:
                view.suspect_since = now
                log.warning("node %s lost (session %d); grace %g s", node_id, msg.session,
                            self.config.lost_grace_s)
        else:
            view.suspect_since = None
        self._node_row(node_id, state=msg.state.value, session=msg.session,
                       current_job=msg.job_id, last_seen=now,
                       suspect_since=view.suspect_since)
        held = self.holding.get(node_id)
        if held is None:
            if msg.state == NodeStatus.BUSY and msg.job_id:
                self._send_cancel(node_id, msg.job_id, "this node holds no execution of the job")
            return
        if msg.state in (NodeStatus.IDLE, NodeStatus.OFFLINE, NodeStatus.MAINTENANCE) \
                and held.state == JobState.RUNNING:
            self._end_node_executions(node_id, f"node {node_id} reported {msg.state.value} "
                                               f"while running the job")
        elif msg.state == NodeStatus.BUSY and msg.job_id and msg.job_id != held.job_id:
            self._send_cancel(node_id, msg.job_id, "this node holds no execution of the job")

    def on_node_meta(self, node_id: str, msg: protocol.NodeMeta | None) -> None:
        """Record a node's retained description for the dashboard."""
        if msg is None:
            return
        self._node_row(node_id, backend=msg.backend[:16],
                       software_version=msg.software_version[:64],
                       calibration_id=msg.calibration_id[:64],
                       image_digest=(msg.image_digest or None) and msg.image_digest[:128])

    # ------------------------------------------------------------------ job updates
    def on_job_update(self, node_id: str, update: protocol.JobUpdate) -> None:
        """Apply a node's update and answer on ``.../accepted`` or ``.../rejected``."""
        self.stats["updates"] += 1
        outcome = queue.apply_update(node_id, update, limits=self.limits, now=self.clock())
        reply = protocol.JobUpdateReply(job_id=update.job_id, execution=update.execution,
                                        version=outcome.version, accepted=outcome.accepted,
                                        ts=self.clock(), reason=outcome.reason)
        kind = TopicKind.NODE_JOB_ACCEPTED if outcome.accepted else TopicKind.NODE_JOB_REJECTED
        self._publish(protocol.topic(kind, node=node_id, job=update.job_id), reply)
        if not outcome.accepted:
            log.info("rejected %s of job %s#%d from %s: %s", update.status.value, update.job_id,
                     update.execution, node_id, outcome.reason)
        if outcome.changed:
            self._sync_job(queue.get_job(update.job_id))

    # ------------------------------------------------------------------ timeouts
    def _on_tick(self) -> None:
        if not self.connected.is_set():
            return  # trust presence (and deadlines that need the node) only while connected
        now = self.clock()
        self.draining = _draining_nodes()
        for exp in queue.expire_leases(now, limits=self.limits):
            log.warning("execution %s#%d on %s expired → %s", exp.job_id, exp.execution,
                        exp.node_id, exp.state.value)
            if exp.state != JobState.ERROR:
                self._send_cancel(exp.node_id, exp.job_id, f"job {exp.state.value}")
            self._sync_job(queue.get_job(exp.job_id))
        for node_id, view in list(self.nodes.items()):
            if (view.suspect_since is not None and node_id in self.holding
                    and now - view.suspect_since >= self.config.lost_grace_s):
                self._end_node_executions(node_id, f"node {node_id} lost for "
                                                   f"{now - view.suspect_since:.0f} s")

    def _end_node_executions(self, node_id: str, reason: str) -> None:
        for exp in queue.node_lost(node_id, reason, now=self.clock()):
            log.warning("execution %s#%d: %s → %s", exp.job_id, exp.execution, reason,
                        exp.job_state.value)
            self._sync_job(queue.get_job(exp.job_id))

    # ------------------------------------------------------------------ assignment
    def _idle_nodes(self) -> list[str]:
        return [n for n, v in self.nodes.items()
                if v.state == NodeStatus.IDLE and v.suspect_since is None
                and n not in self.holding and n not in self.draining]

    def _dispatch(self) -> None:
        """Give every idle node the fair queue's next job (requeued jobs avoid their old node)."""
        if not self.ready.is_set() or not self.connected.is_set():
            return
        idle = self._idle_nodes()
        if not idle:
            return
        # Chunks: the first nodes of a burst get their jobs/next before the rest are written.
        for k in range(0, len(idle), _ASSIGN_CHUNK):
            made = queue.assign_batch(idle[k:k + _ASSIGN_CHUNK], limits=self.limits,
                                      now=self.clock())
            for node_id, job, ex in made:
                self.stats["assigned"] += 1
                self.holding[node_id] = Holding(job.id, ex.number, JobState.ASSIGNED)
                self._publish_assignment(node_id, job, ex)
            for _, job, _ in made:
                self._publish_status(job)
            if len(made) < len(idle[k:k + _ASSIGN_CHUNK]):
                return  # nothing more is eligible

    # ------------------------------------------------------------------ side effects of state
    def _sync_job(self, job: Job) -> None:
        """Make the world match the DB for ``job``: holdings, jobs/next, cancel, status."""
        state = job.job_state
        for node_id, h in list(self.holding.items()):
            if h.job_id != job.id:
                continue
            if state in queue.ACTIVE_STATES and h.execution == job.attempts:
                h.state = state
            else:  # that execution ended (finished, expired, errored, canceled)
                del self.holding[node_id]
                self._clear_assignment(node_id)
        if state == JobState.RUNNING and job.cancel_requested and job.node_id:
            key = (job.id, job.attempts)
            if key not in self.cancel_sent:
                self.cancel_sent.add(key)
                self._send_cancel(job.node_id, job.id, job.reason or "canceled by the user")
        self._publish_status(job)

    def _follow_events(self) -> None:
        """Pick up changes other processes made (the dashboard's enqueue/cancel) from JobEvent."""
        # Our own transitions (actor "dispatcher:*" or "node:<id>") were synced when made; the
        # overlap of 64 ids catches PostgreSQL transactions that commit out of id order.
        top = queue._exec('SELECT MAX("id") FROM "jobevent"').fetchone()[0] or 0
        rows = list(JobEvent.raw(queue._sql(
            'SELECT "id", "job_id" FROM "jobevent" WHERE "id" > ? AND "actor" NOT LIKE ? '
            'AND "actor" NOT LIKE ? ORDER BY "id"'), self._event_cursor - 64, "dispatcher:%",
            "node:%"))
        fresh = [r for r in rows if r.id not in self._seen_events]
        self._event_cursor = max(self._event_cursor, top)
        if not fresh:
            return
        self._seen_events.update(r.id for r in fresh)
        self._seen_events = {i for i in self._seen_events if i > self._event_cursor - 64}
        for job in queue.iter_jobs({r.job_id for r in fresh}):
            self._sync_job(job)

    # ------------------------------------------------------------------ publishing
    def _publish(self, name: str, msg: protocol.Message | None, *, retain: bool = False,
                 props: Any = None) -> None:
        if self._client is None:
            return
        payload = b"" if msg is None else msg.to_bytes()
        spec = protocol.parse_topic(name).spec
        self._client.publish(name, payload, qos=spec.qos, retain=retain or spec.retain,
                             properties=props)

    def _publish_assignment(self, node_id: str, job: Job, ex: Any) -> None:
        self._publish(protocol.topic(TopicKind.NODE_JOB_NEXT, node=node_id),
                      queue.assignment(job, ex, self.clock()))
        self.published[node_id] = (job.id, ex.number)

    def _clear_assignment(self, node_id: str) -> None:
        self._publish(protocol.topic(TopicKind.NODE_JOB_NEXT, node=node_id), None, retain=True)
        self.published[node_id] = None

    def _publish_status(self, job: Job) -> None:
        key = (job.state, job.attempts, job.node_id, job.reason, job.result_key)
        if self._status_sent.get(job.id) == key:
            return
        self._status_sent[job.id] = key
        if len(self._status_sent) > 100_000:
            self._status_sent.clear()
        self._publish(protocol.topic(TopicKind.JOB_STATE, owner=job.owner_id, job=job.id),
                      queue.job_status(job, self.clock()))

    def _send_cancel(self, node_id: str, job_id: str, reason: str) -> None:
        cmd = protocol.NodeCommand(command=protocol.NodeCommandKind.CANCEL_JOB, ts=self.clock(),
                                   job_id=job_id, reason=reason[:500])
        self._publish(protocol.topic(TopicKind.NODE_CMD, node=node_id), cmd,
                      props=mqtt.message_expiry(self.config.command_expiry_s))

    # ------------------------------------------------------------------ node rows
    def _node_row(self, node_id: str, **fields: Any) -> None:
        self._dirty_nodes.setdefault(node_id, {}).update(fields)

    def _flush_nodes(self) -> None:
        if not self._dirty_nodes:
            return
        dirty, self._dirty_nodes = self._dirty_nodes, {}
        with queue._tx():
            for node_id, fields in dirty.items():
                cols = ", ".join(f'"{c}"' for c in fields)
                marks = ", ".join("?" for _ in fields)
                sets = ", ".join(f'"{c}" = excluded."{c}"' for c in fields)
                queue._exec(f'INSERT INTO "node" ("id", "draining", "run_seconds", {cols}) '
                            f'VALUES (?, ?, 0, {marks}) ON CONFLICT ("id") DO UPDATE SET {sets}',
                            node_id, False, *fields.values())


def _kind_and_node(name: str) -> tuple[TopicKind | None, str | None]:
    try:
        parsed = protocol.parse_topic(name)
    except ProtocolError:
        return None, None
    return parsed.kind, parsed.node


def _draining_nodes() -> set[str]:
    """Nodes an operator set to drain (``Node.draining``): they get no new job."""
    return {row[0] for row in queue._exec('SELECT "id" FROM "node" WHERE "draining" = ?',
                                          True).fetchall()}


def _safe_url(url: str) -> str:
    return url.split("@")[-1] if "@" in url else url


def _describe(item: Any) -> Any:
    if isinstance(item, tuple) and item and item[0] == "msg":
        return (item[1], item[2][:120])
    return item
