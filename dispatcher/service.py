"""The dispatcher service: MQTT glue between the fleet and the job queue (which owns the state).

Threads: paho's network thread only classifies and enqueues raw messages; one worker thread does
every database call and every decision (SQLite has a single writer anyway); a ticker thread
enqueues a tick every ``tick_s`` for the timeouts, another an autoscale pass every
``RAAS_AUTOSCALE_INTERVAL_S`` (:mod:`dispatcher.autoscale`). The database is the truth: on start the worker
reloads the active executions, republishes their retained assignments and job states, and then
reconciles them with the nodes' retained states as those arrive. See docs/job-lifecycle.md.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

from dispatcher import health, nodes, queue
from dispatcher.autoscale.config import AutoscaleConfig
from dispatcher.autoscale.scaler import Autoscaler
from dispatcher.config import DispatcherConfig
from dispatcher.fleet import FleetView, Holding
from dispatcher.inbox import (AUTOSCALE, CONNECTED, RECONCILE, STOP, TICK, Barrier, Inbox,
                              Message)
from dispatcher.limits import QueueLimits
from dispatcher.models import Job, init_db
from dispatcher.publisher import Publisher
from dispatcher.relay import RELAYED, Relay
from dispatcher.webhooks import WebhookConfig
from dispatcher.webhooks.worker import DeliveryWorker
from gym_raas_mqtt import mqtt, protocol
from gym_raas_mqtt.errors import ProtocolError
from gym_raas_mqtt.protocol import JobState, NodeStatus, TopicKind

log = logging.getLogger(__name__)

_ASSIGN_CHUNK = 16  # assignments per transaction in a burst of idle nodes
_FOLLOW_EVERY_S = 0.02  # how often other writers' events are looked for (besides every tick)
_SUBSCRIPTIONS = (TopicKind.NODE_STATE, TopicKind.NODE_META, TopicKind.NODE_JOB_UPDATE,
                  TopicKind.NODE_JOB_TELEMETRY, TopicKind.NODE_JOB_LOG, *health.KINDS)


class Dispatcher:
    """Run the dispatcher: :meth:`start`, then :meth:`stop` (or :meth:`run_forever`).

    Args:
        config: settings.
        limits: the queue's policy (built once at start-up).
        clock: wall clock [s since the epoch]; tests inject a fake one and call :meth:`tick_now`.
        webhooks: webhook policy and delivery timing (default: https to public addresses).
        autoscale: the autoscaler's settings (default: off; fleet samples are still recorded).
    """

    def __init__(self, config: DispatcherConfig, limits: QueueLimits, *,
                 clock: Callable[[], float] = time.time,
                 webhooks: WebhookConfig | None = None,
                 autoscale: AutoscaleConfig | None = None) -> None:
        self.config = config
        self.autoscale = autoscale or AutoscaleConfig()
        self.clock = clock
        self.limits = limits
        self.fleet = FleetView()
        self.registry = nodes.NodeRegistry()
        self.cancel_sent: set[tuple[str, int]] = set()
        self.connected = threading.Event()
        self.ready = threading.Event()  # first connect handled (reconciled, birth published)
        self.stats = {"assigned": 0, "updates": 0, "dropped": 0, "stale_states": 0}
        self._inbox = Inbox()
        self._event_cursor = 0
        self._followed_at = 0.0
        self._seen_events: set[int] = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._birth_ts = 0.0
        self._link: mqtt.Link | None = None
        self.publisher: Publisher | None = None
        self.relay: Relay | None = None
        self.health: health.FleetHealth | None = None
        self.autoscaler: Autoscaler | None = None
        self.webhooks = DeliveryWorker(webhooks or WebhookConfig(), clock)

    @property
    def nodes(self) -> dict[str, Any]:
        """Node id → :class:`~dispatcher.fleet.NodeView` (the fleet as last heard)."""
        return self.fleet.nodes

    @property
    def holding(self) -> dict[str, Holding]:
        """Node id → the execution it holds."""
        return self.fleet.holding

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Open the database, connect to the broker (retrying in the background), start threads."""
        url = self.config.database_url
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        init_db(url)
        address = mqtt.BrokerAddress.parse(self.config.mqtt_url,
                                           username=self.config.mqtt_username,
                                           password_file=self.config.mqtt_password_file,
                                           ca_file=self.config.mqtt_ca_file)
        self._link = mqtt.Link(
            address, self.config.client_id or address.username or "dispatcher", name="dispatcher",
            subscriptions=[(protocol.topic_filter(k), 1) for k in _SUBSCRIPTIONS],
            on_message=self._on_message, raw=True, on_up=self._on_up, on_down=self._on_down,
            will=self._next_will, keepalive_s=self.config.keepalive_s,
            session_expiry_s=self.config.session_expiry_s, reconnect_delay_s=(0.1, 2.0))
        self.publisher = Publisher(self._link, self.clock, self.config.command_expiry_s)
        self.relay = Relay(self._link, self.fleet, self.clock)
        self.health = health.FleetHealth(self.publisher, self.fleet, self.registry, self.clock,
                                         self.config.maintenance_after_errors)
        self.autoscaler = Autoscaler(self.autoscale, self.fleet, self.health, self.clock,
                                     self.limits.default_time_limit_s)
        self._threads = [
            threading.Thread(target=self._work, name="dispatcher-worker", daemon=True),
            threading.Thread(target=self._every, args=(self.config.tick_s, TICK),
                             name="dispatcher-tick", daemon=True),
            threading.Thread(target=self._every, args=(self.autoscale.interval_s, AUTOSCALE),
                             name="dispatcher-autoscale", daemon=True)]
        self._inbox.put(RECONCILE)
        for t in self._threads:
            t.start()
        self.webhooks.start()
        self._link.start(timeout_s=None)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Clean exit: publish ``online: false`` ourselves (a clean DISCONNECT sends no will)."""
        self._stop.set()
        self._inbox.put(STOP)
        for t in self._threads:
            t.join(timeout_s)
        self.webhooks.stop(timeout_s)
        if self._link is not None:
            self._link.close(goodbye=self._will(), timeout_s=timeout_s)

    def run_forever(self) -> None:
        """Start, then block until SIGTERM/SIGINT; then stop cleanly."""
        done = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: done.set())
        self.start()
        log.info("dispatcher running (database %s, broker %s)",
                 self.config.database_url.split("@")[-1], self.config.mqtt_url.split("@")[-1])
        while not done.wait(1.0):
            pass
        self.stop()

    def tick_now(self) -> None:
        """Run the timeout checks now (tests advance an injected clock, then call this)."""
        self._inbox.put(TICK)

    def wait_idle(self, timeout_s: float = 5.0) -> None:
        """Block until the worker has handled everything enqueued so far (tests)."""
        barrier = Barrier(threading.Event())
        self._inbox.put(barrier)
        barrier.event.wait(timeout_s)

    # ------------------------------------------------------------------ connection (paho thread)
    def _will(self) -> mqtt.Will:
        return mqtt.Will(protocol.topic(TopicKind.DISPATCHER_STATE),
                         protocol.DispatcherState(online=False, ts=self._birth_ts).to_bytes())

    def _next_will(self) -> mqtt.Will:
        # Each connection's birth must be newer than anything nodes saw; its will carries the
        # same ts, so a late will of an old connection never overrides a newer birth.
        self._birth_ts = max(self.clock(), self._birth_ts + 1e-3)
        return self._will()

    def _on_up(self) -> None:
        self.connected.set()
        self._inbox.put(CONNECTED)

    def _on_down(self) -> None:
        self.connected.clear()

    def _on_message(self, topic: str, payload: bytes) -> None:
        msg = Message.classify(topic, payload)
        if msg.kind in RELAYED:  # straight through, never behind the worker's database work
            self.relay.forward(protocol.parse_topic(topic), payload)
        else:
            self._inbox.put(msg)

    # ------------------------------------------------------------------ worker
    def _every(self, period_s: float, item: str) -> None:
        while not self._stop.wait(period_s):
            self._inbox.put(item)

    def _work(self) -> None:
        """The worker loop: a batch of the inbox (presence first), then one dispatch pass."""
        while True:
            barriers = []
            for it in self._inbox.batch(reorder=self.ready.is_set()):
                if it == STOP:
                    self.registry.flush()
                    return
                if isinstance(it, Barrier):
                    barriers.append(it.event)
                    continue
                try:
                    self._handle(it)
                except Exception:  # noqa: BLE001 - the worker must survive anything
                    log.exception("dispatcher worker: failed to handle %.200r", it)
            try:
                if time.monotonic() - self._followed_at >= _FOLLOW_EVERY_S:
                    self._followed_at = time.monotonic()
                    self._follow_events()  # first: publish `queued` before the job is assigned
                self._dispatch()
                self.registry.flush()
            except Exception:  # noqa: BLE001
                log.exception("dispatcher worker: dispatch pass failed")
            for ev in barriers:
                ev.set()

    def _handle(self, item: Any) -> None:
        if isinstance(item, Message):
            self._on_raw(item.topic, item.payload)
        elif item == TICK:
            self._on_tick()
        elif item == CONNECTED:
            self._on_connected()
        elif item == RECONCILE:
            self._reconcile()
        elif item == AUTOSCALE and self.connected.is_set() and self.ready.is_set():
            self.autoscaler.run()  # presence is trusted only while connected

    def _on_raw(self, name: str, payload: bytes) -> None:
        try:
            parsed, msg = protocol.decode(name, payload)
        except ProtocolError as e:
            self.stats["dropped"] += 1
            log.warning("dropped malformed message on %.120s (%s): %r", name, e, payload[:200])
            return
        if parsed.kind == TopicKind.NODE_STATE:
            self.on_node_state(parsed.node, msg)
        elif parsed.kind == TopicKind.NODE_META:
            self.on_node_meta(parsed.node, msg)
        elif parsed.kind in health.KINDS and msg is not None:
            self.health.on_message(parsed, msg, name, payload)
        elif parsed.kind == TopicKind.NODE_JOB_UPDATE and msg is not None:
            if msg.job_id != parsed.job:
                log.warning("dropped update on %s: payload is for job %s", name, msg.job_id)
                self.stats["dropped"] += 1
                return
            self.on_job_update(parsed.node, msg)

    # ------------------------------------------------------------------ start / reconnect
    def _reconcile(self) -> None:
        """The DB is the truth: reload who holds what (before any MQTT message is handled)."""
        for ex in queue.active_executions():
            owner = queue.get_job(ex.job_id).owner_id
            self.holding[ex.node_id] = Holding(ex.job_id, ex.number, JobState(ex.state), owner)
        self._event_cursor = queue.last_event_id()
        self.health.load()
        log.info("reconciled: %d active execution(s)", len(self.holding))

    def _on_connected(self) -> None:
        """Republish everything retained we own (a broker restart may have lost it), then the
        birth."""
        now = self.clock()
        # Nodes had no way to accept while we were away: give them a fresh acceptance window.
        queue.extend_accept_deadlines(now, limits=self.limits)
        self.fleet.suspect_all_holders(now)
        pub = self.publisher
        assert pub is not None
        for node_id, h in list(self.holding.items()):
            pub.assignment(node_id, queue.get_job(h.job_id),
                           queue.get_execution(h.job_id, h.execution))
        pub.clear_stale_assignments(self.holding)
        pub.forget_statuses()
        for job in queue.recent_jobs(now - self.config.republish_window_s):
            pub.status(job)
        # Birth last: retained state first, then "online" (nodes re-announce when they see it).
        pub.birth(self._birth_ts)
        self.ready.set()

    # ------------------------------------------------------------------ node presence
    def on_node_state(self, node_id: str, msg: protocol.NodeState | None) -> None:
        """Apply a node's retained state (presence rules in :mod:`dispatcher.fleet`)."""
        now = self.clock()
        verdict = self.fleet.on_state(node_id, msg, now)
        if verdict.stale:
            self.stats["stale_states"] += 1
            return
        view = self.nodes[node_id]
        if msg is None:
            self.registry.note(node_id, state=NodeStatus.OFFLINE.value, last_seen=now)
        else:
            self.registry.note(node_id, state=msg.state.value, session=msg.session,
                               current_job=msg.job_id, last_seen=now,
                               suspect_since=view.suspect_since, reason=msg.reason)
        if verdict.born:
            self.health.on_born(node_id)
        if verdict.dropped_job is not None:
            self._end_node_executions(node_id, f"node {node_id} reported {msg.state.value} "
                                               f"while running the job")
        if verdict.foreign_job is not None:
            self.publisher.cancel(node_id, verdict.foreign_job,
                                  "this node holds no execution of the job")

    def on_node_meta(self, node_id: str, msg: protocol.NodeMeta | None) -> None:
        """Record a node's retained description for the dashboard."""
        if msg is None:
            return
        self.registry.note(node_id, backend=msg.backend[:16],
                           software_version=msg.software_version[:64],
                           calibration_id=msg.calibration_id[:64],
                           image_digest=(msg.image_digest or None) and msg.image_digest[:128])
        if msg.public_key is not None:  # the first key a node id announces is kept
            nodes.enroll_key(node_id, msg.public_key, self.clock())

    # ------------------------------------------------------------------ job updates
    def on_job_update(self, node_id: str, update: protocol.JobUpdate) -> None:
        """Apply a node's update and answer on ``.../accepted`` or ``.../rejected``."""
        self.stats["updates"] += 1
        outcome = queue.apply_update(node_id, update, limits=self.limits, now=self.clock())
        self.publisher.update_reply(node_id, update, outcome)
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
        self.health.refresh()
        for exp in queue.expire_leases(now, limits=self.limits):
            log.warning("execution %s#%d on %s expired → %s", exp.job_id, exp.execution,
                        exp.node_id, exp.state.value)
            if exp.state != JobState.ERROR:
                self.publisher.cancel(exp.node_id, exp.job_id, f"job {exp.state.value}")
            self._sync_job(queue.get_job(exp.job_id))
        for node_id, for_s in self.fleet.lost_too_long(now, self.config.lost_grace_s):
            self._end_node_executions(node_id, f"node {node_id} lost for {for_s:.0f} s")
        self.health.refresh_waits()

    def _end_node_executions(self, node_id: str, reason: str) -> None:
        for exp in queue.node_lost(node_id, reason, now=self.clock()):
            log.warning("execution %s#%d: %s → %s", exp.job_id, exp.execution, reason,
                        exp.job_state.value)
            self._sync_job(queue.get_job(exp.job_id))

    # ------------------------------------------------------------------ assignment
    def _dispatch(self) -> None:
        """Give every idle node the fair queue's next job (requeued jobs avoid their old node)."""
        if not self.ready.is_set() or not self.connected.is_set():
            return
        idle, busy = self.health.assignable()
        # Chunks: the first nodes of a burst get their jobs/next before the rest are written.
        for k in range(0, len(idle), _ASSIGN_CHUNK):
            chunk = idle[k:k + _ASSIGN_CHUNK]
            made = queue.assign_batch(chunk, limits=self.limits, now=self.clock(), busy=busy)
            for node_id, job, ex in made:
                self.stats["assigned"] += 1
                self.holding[node_id] = Holding(job.id, ex.number, JobState.ASSIGNED, job.owner_id)
                self.publisher.assignment(node_id, job, ex)
            for _, job, _ in made:
                self.publisher.status(job)
            if len(made) < len(chunk):
                return  # nothing more is eligible

    # ------------------------------------------------------------------ side effects of state
    def _sync_job(self, job: Job) -> None:
        """Make the world match the DB for ``job``: holdings, jobs/next, cancel, status."""
        for node_id in self.fleet.release(job.id, job.job_state, job.attempts, self.clock()):
            self.publisher.clear_assignment(node_id)
        if job.job_state == JobState.RUNNING and job.cancel_requested and job.node_id:
            key = (job.id, job.attempts)
            if key not in self.cancel_sent:
                self.cancel_sent.add(key)
                self.publisher.cancel(job.node_id, job.id, job.reason or "canceled by the user")
        self.publisher.status(job)
        self.health.after_change(job)  # a platform error counts against its node

    def _follow_events(self) -> None:
        """Pick up changes other processes made (the dashboard's enqueue/cancel) from JobEvent."""
        # Our own transitions (actor "dispatcher:*" or "node:<id>") were synced when made; the
        # overlap of 64 ids catches PostgreSQL transactions that commit out of id order.
        top = queue.last_event_id()
        rows = queue.events_by_others(self._event_cursor - 64)
        fresh = [r for r in rows if r.id not in self._seen_events]
        self._event_cursor = max(self._event_cursor, top)
        if not fresh:
            return
        self._seen_events.update(r.id for r in fresh)
        self._seen_events = {i for i in self._seen_events if i > self._event_cursor - 64}
        for job in queue.iter_jobs({r.job_id for r in fresh}):
            self._sync_job(job)
