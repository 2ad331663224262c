"""The fleet agent: its two broker connections, message routing, the control thread, job starts.

One agent per node. It keeps two connections: the **central** broker (as ``node-<id>``: presence,
assignments, job updates, job logs) and the node's **local** broker (as ``agent-<id>``: motor
state, job binding, e-stop, self-test, per-job client accounts). Protocol and state machines:
docs/job-lifecycle.md and shared/reference/bus-protocol.md.

Threads: paho's two network threads only decode and hand over (a callback never raises); the
**control** thread owns presence and reacts to assignments, commands and motor state; one **job**
thread at a time carries a job execution through :class:`~fleet_node.agent.pipeline.JobPipeline`
and then resets the node::

    busy → (the pipeline) → resetting → self-test ─ok→ idle ─standby→ standby ─wake→ resetting
                                                  └fail→ maintenance (until clear_maintenance)

Self-test results and heartbeats go to the dispatcher; ``drain`` holds new assignments until
``resume``; ``maintenance`` (the dispatcher's or an operator's) holds it until clear_maintenance;
``standby`` (:mod:`~fleet_node.agent.standby`) turns the motor off until ``wake``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable

from fleet_node.agent.connections import connect_central, connect_local
from fleet_node.agent.job import ActiveJob, Handled, Runner, RunnerSlot
from fleet_node.agent.jobpath import JobPathCheck
from fleet_node.agent.motor_view import MotorView
from fleet_node.agent.pipeline import JobPipeline
from fleet_node.agent.presence import Presence, node_meta
from fleet_node.agent.recovery import CrashRecord
from fleet_node.agent.replies import SelfTest, UpdateChannel
from fleet_node.agent.standby import Standby
from fleet_node.config import AgentConfig
from fleet_node.node_key import NodeKey
from fleet_node.runner import RunnerConfig
from fleet_node.session import SessionCounter
from gym_raas_mqtt import protocol
from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.mqtt import BrokerAddress, Link, MqttError
from gym_raas_mqtt.protocol import (JobAssignment, JobBinding, JobUpdateReply, MotorState,
                                    MotorStatus, NodeCommand, NodeCommandKind, NodeStatus,
                                    SelfTestReply, TopicKind)
from raas_platform.storage import open_store

log = logging.getLogger(__name__)


class AgentError(RaasError):
    """The agent cannot start (broker unreachable or refused)."""


class Agent:
    """A fleet node's agent: :meth:`start` then :meth:`stop`, or :meth:`run` (the CLI).

    Args:
        config: settings.
        runner: job runner; default a :class:`fleet_node.runner.DockerRunner` made at start
            (without Docker every job ends ``error`` and the self-test fails).
        runner_config: limits and image of that Docker runner (default ``RunnerConfig()``).
        store: object store for archives and bundles; default ``open_store(config.store_url)``.
        central: central broker address; default from the config.
        local: node-local broker address (the agent's account); default from the config.
        local_admin: the node-local broker's ``admin``, which creates and deletes job logins.
        clock: wall clock [s since the epoch] for timestamps.
    """

    def __init__(self, config: AgentConfig, *, runner: Runner | None = None,
                 runner_config: RunnerConfig | None = None, store: Any = None,
                 central: BrokerAddress | None = None, local: BrokerAddress | None = None,
                 local_admin: BrokerAddress | None = None, clock: Callable[[], float] = time.time
                 ) -> None:
        self.config = c = config
        self.node_id, self.clock = c.node_id, clock
        self.central_address = central or c.central_address()
        self.local_address = local or c.local_address()
        self.local_admin = local_admin or c.local_address(admin=True)
        self.runners = RunnerSlot(runner, runner_config)
        self.store = store
        self.state_dir = Path(c.data_dir) / "agent"
        self.session = SessionCounter(self.state_dir / "session")  # creates state_dir
        self.crash = CrashRecord(self.state_dir)
        self.key = NodeKey.load_or_create(c.node_key_path)  # signs bundles; enrolled by meta
        self.motor = MotorView()
        self.topics = {k: protocol.topic(k, node=self.node_id) for k in (
            TopicKind.NODE_CMD, TopicKind.NODE_JOB_NEXT, TopicKind.ENV_MOTOR_STATE,
            TopicKind.ENV_JOB, TopicKind.ENV_ESTOP, TopicKind.ENV_SELFTEST,
            TopicKind.ENV_SELFTEST_REPLY, TopicKind.ENV_STATE)}
        self._stopping, self._stopped = threading.Event(), threading.Event()
        self.presence = Presence(
            self.node_id, self.session,
            lambda: node_meta(self.motor.state, self._image_digest, self.clock(), self.key),
            self._send_central,
            status=NodeStatus.RESETTING if c.selftest else NodeStatus.IDLE,
            will_delay_s=c.will_delay_s, heartbeat_s=c.heartbeat_s, clock=clock)
        self.updates = UpdateChannel(self._send_central, self.node_id, c.update_retry_s,
                                     self._stopping, clock)
        job_path = JobPathCheck(c, self.local_admin, self._publish_local, self.crash)
        self.selftest = SelfTest(self._publish_local, self.motor, self.runners,
                                 enabled=c.selftest, timeout_s=c.selftest_timeout_s,
                                 stopping=self._stopping, clock=clock, job_path=job_path.run,
                                 report=self.presence.report_selftest)
        self.standby = Standby(self.node_id, self._publish_local, self.updates, clock)
        self.pipeline: JobPipeline | None = None  # made at start, with the store
        self._events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()  # _job and _worker
        self._job: ActiveJob | None = None
        self._worker: threading.Thread | None = None
        self._maintenance_retry_at: float | None = None  # None: waits for clear_maintenance
        self._held: str | None = None  # maintenance by command: why (until clear_maintenance)
        self._desired: JobAssignment | None = None
        self._handled = Handled()
        self._draining = False
        self._image_digest: str | None = None
        self._control: threading.Thread | None = None
        self._central: Link | None = None
        self._local: Link | None = None

    # ======================================================================== lifecycle
    def start(self, timeout_s: float = 10.0) -> "Agent":
        """Connect both brokers, clean up after a crash, announce; returns when online.

        Raises:
            AgentError: a broker is unreachable or refused the connection within ``timeout_s``.
        """
        self._prepare_pipeline()
        c = self.config
        try:
            self._local = connect_local(self.local_address, self.node_id,
                                        on_message=self._on_local_message,
                                        keepalive_s=c.keepalive_s, timeout_s=timeout_s)
            self._publish_local(TopicKind.ENV_JOB, JobBinding(self.clock(), None, None))
            self.crash.recover(node_id=self.node_id, runner=self.runners.runner,
                               local_admin=self.local_admin,
                               keep_workdirs=self.config.keep_workdirs)
            self._central = connect_central(
                self.central_address, self.node_id, on_message=self._on_central_message,
                on_up=lambda: self._events.put(("connected", None)),
                on_down=self.presence.connection_lost, will=self.presence.will,
                keepalive_s=c.keepalive_s, will_delay_s=c.will_delay_s, timeout_s=timeout_s)
        except MqttError as e:
            if self._local is not None:
                self._local.close()
            raise AgentError(str(e)) from e
        self._control = threading.Thread(target=self._control_loop, name="agent-control",
                                         daemon=True)
        self._control.start()
        if self.config.selftest:
            self._spawn(self._reset_node, "agent-reset")
        return self

    def run(self) -> None:
        """:meth:`start`, then block until :meth:`request_stop` (signal handlers), then stop."""
        self.start()
        self._stopping.wait()
        self.stop()

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop cleanly (safe from signal handlers)."""
        self._stopping.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Clean exit: stop a running job (reported ``error``: requeued), publish ``offline``
        and wait for its PUBACK, then disconnect both brokers. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopping.set()
        with self._lock:
            job, worker = self._job, self._worker
        if job is not None:
            job.stop("shutdown", "the node's agent is shutting down")
        if worker is not None:
            worker.join(timeout_s)
        self._events.put(("stop", None))
        if self._control is not None:
            self._control.join(5.0)
        if self._central is not None:
            self._central.close(goodbye=self.presence.goodbye())
        if self._local is not None:
            self._local.close()
        self._stopped.set()

    @property
    def status(self) -> NodeStatus:
        """The node state last published."""
        return self.presence.status

    @property
    def reason(self) -> str | None:
        """Why the node is in its state (maintenance), as last published."""
        return self.presence.reason

    @property
    def runner(self) -> Runner | None:
        """The job runner, once there is one."""
        return self.runners.runner

    # ======================================================================== connections
    def _prepare_pipeline(self) -> None:
        if self.store is None:
            self.store = open_store(self.config.store_url)
        image_id = getattr(self.runners.get(), "image_id", None)
        if image_id is not None:
            try:
                self._image_digest = image_id()
            except RaasError as e:
                log.warning("runner image unknown: %s", e)
        self.pipeline = JobPipeline(
            self.config, runners=self.runners, store=self.store, updates=self.updates,
            publish_local=self._publish_local, send_central=self._send_central,
            motor=self.motor, crash=self.crash, local_admin=self.local_admin, key=self.key,
            stopping=self._stopping, clock=self.clock, image_digest=self._image_digest)

    def _send_central(self, topic: str, msg: protocol.Message) -> Any:
        link = self._central
        return None if link is None else link.send(topic, msg)

    def _publish_local(self, kind: TopicKind, msg: protocol.Message | None) -> None:
        if self._local is not None:
            self._local.send(self.topics[kind], msg)

    # ======================================================================== inbound messages
    def _on_central_message(self, parsed: protocol.ParsedTopic, message: Any) -> None:
        if parsed.node not in (None, self.node_id):
            return
        kind = parsed.kind
        if kind in (TopicKind.NODE_JOB_ACCEPTED, TopicKind.NODE_JOB_REJECTED):
            if isinstance(message, JobUpdateReply):
                self.updates.on_reply(message, accepted=kind is TopicKind.NODE_JOB_ACCEPTED)
        elif kind is TopicKind.NODE_JOB_NEXT:
            self._events.put(("assignment", message))
        elif kind is TopicKind.NODE_CMD and message is not None:
            self._events.put(("command", message))
        elif kind is TopicKind.DISPATCHER_STATE and message is not None:
            self._events.put(("dispatcher", message))

    def _on_local_message(self, parsed: protocol.ParsedTopic, message: Any) -> None:
        if parsed.kind is TopicKind.ENV_MOTOR_STATE:
            self.motor.update(message)
            self._events.put(("motor", message))
        elif parsed.kind is TopicKind.ENV_SELFTEST_REPLY and isinstance(message, SelfTestReply):
            self.selftest.on_reply(message)

    # ======================================================================== control thread
    def _control_loop(self) -> None:
        while True:
            try:
                kind, payload = self._events.get(timeout=min(1.0, self.config.heartbeat_s))
            except queue.Empty:
                kind, payload = "tick", None
            self.presence.beat(time.monotonic())
            if kind == "stop":
                return
            try:
                getattr(self, f"_handle_{kind}")(payload)
            except Exception:  # a bug in one handler must not take the node offline
                log.exception("agent: handling %s failed", kind)

    def _handle_connected(self, _: Any) -> None:
        self.presence.announce()

    def _handle_dispatcher(self, msg: protocol.DispatcherState) -> None:
        self.presence.on_dispatcher_state(msg)

    def _handle_command(self, cmd: NodeCommand) -> None:
        log.info("command %s (job %s): %s", cmd.command.value, cmd.job_id, cmd.reason)
        if cmd.command is NodeCommandKind.REBIRTH:
            self.presence.announce()
        elif cmd.command is NodeCommandKind.CANCEL_JOB:
            job = self._job
            if job is not None and cmd.job_id in (None, job.id):
                job.stop("canceled", cmd.reason or "canceled")
        elif cmd.command is NodeCommandKind.DRAIN:
            self._draining = True
        elif cmd.command is NodeCommandKind.RESUME:
            self._draining = False
            self._maybe_start_job()
        elif cmd.command is NodeCommandKind.MAINTENANCE:
            self._held = cmd.reason or "maintenance by command"
            self._handle_job_done(None)  # now, unless a job or reset is in progress: after it
        elif cmd.command is NodeCommandKind.CLEAR_MAINTENANCE:
            self._held = None
            if self.status is NodeStatus.MAINTENANCE and self._worker is None:
                self._spawn(self._reset_node, "agent-reset")
        elif cmd.command is NodeCommandKind.STANDBY:
            self.standby.wanted = True
            self._handle_job_done(None)  # now if idle, else once it is
        elif cmd.command is NodeCommandKind.WAKE:
            self.standby.wanted = False
            if self.status is NodeStatus.STANDBY and self._worker is None:
                self._spawn(self._reset_node, "agent-wake")  # idle only after its self-test

    def _handle_assignment(self, assignment: JobAssignment | None) -> None:
        self._desired = assignment
        job = self._job
        if job is not None and not job.reported and (
                assignment is None or (assignment.job_id, assignment.execution) != job.key):
            if job.stop("abandoned", "the dispatcher withdrew the assignment"):
                log.warning("job %s: assignment withdrawn; abandoning", job.id)
        if (assignment is not None and self.status is NodeStatus.STANDBY
                and self._handled.first_time(assignment)):
            self.standby.refuse(assignment)
        self._maybe_start_job()

    def _handle_motor(self, motor: MotorState | None) -> None:
        lost = motor is None or motor.state is MotorStatus.LOST
        job = self._job
        if lost and job is not None and not job.reported:
            job.stop("error", "the motor node was lost during the job")
        if lost and self.status is NodeStatus.IDLE and self._worker is None:
            self._enter_maintenance("the motor node is not running", retry=True)
        elif not lost and self._maintenance_retry_at is not None:
            self._maintenance_retry_at = time.monotonic()  # it is back: retry now
        self.presence.announce_meta_if_changed()

    def _handle_job_done(self, _: Any) -> None:
        held = self._held  # a maintenance command that came while the worker ran applies now
        if held is not None and self._worker is None and self.reason != held:
            self._enter_maintenance(held, retry=False)
        if self.standby.wanted and self._worker is None and self.status is NodeStatus.IDLE:
            self.standby.stop_motor()
            self._set_status(NodeStatus.STANDBY)
        self._maybe_start_job()

    def _handle_tick(self, _: Any) -> None:
        retry_at = self._maintenance_retry_at
        if (self.status is NodeStatus.MAINTENANCE and retry_at is not None
                and time.monotonic() >= retry_at and self._worker is None):
            self._spawn(self._reset_node, "agent-reset")

    def _maybe_start_job(self) -> None:
        a = self._desired
        if (a is None or self._worker is not None or self.status is not NodeStatus.IDLE
                or self._draining or self._stopping.is_set()):
            return
        if not self._handled.first_time(a):
            return  # finished or refused already; the dispatcher will clear or replace it
        job = ActiveJob(a, a.version)
        with self._lock:
            self._job = job
        self._spawn(lambda: self._perform(job), f"job-{a.job_id}")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        def main() -> None:
            try:
                target()
            except Exception:  # last resort: never leave the node stuck in busy
                log.exception("agent worker %s crashed", name)
                self._enter_maintenance(f"agent worker {name} crashed", retry=True)
            finally:
                with self._lock:
                    self._worker, self._job = None, None
                self._events.put(("job_done", None))

        worker = threading.Thread(target=main, name=name, daemon=True)
        with self._lock:
            self._worker = worker
        worker.start()

    # ======================================================================== node state
    def _set_status(self, status: NodeStatus, reason: str | None = None,
                    job_id: str | None = None) -> None:
        if status is not NodeStatus.MAINTENANCE:
            self._maintenance_retry_at = None
        self.presence.set(status, reason, job_id)

    def _enter_maintenance(self, reason: str, retry: bool) -> None:
        """Take no jobs: until clear_maintenance, or (``retry``) the next self-test retry."""
        self._maintenance_retry_at = (time.monotonic() + self.config.maintenance_retry_s
                                      if retry else None)
        self._set_status(NodeStatus.MAINTENANCE, reason)

    # ======================================================================== job thread
    def _perform(self, job: ActiveJob) -> None:
        """One job execution (the pipeline), then reset the node unless the agent stops."""
        pipeline = self.pipeline
        assert pipeline is not None, "start() makes the pipeline before any assignment"
        if not pipeline.claim(job):
            return
        self._set_status(NodeStatus.BUSY, job_id=job.id)
        pipeline.execute(job)
        if job.stop_kind == "abandoned" or not self._stopping.is_set():
            self._reset_node()

    def _reset_node(self) -> None:
        """resetting → self-test → idle, or maintenance when it fails."""
        self._set_status(NodeStatus.RESETTING)
        verdict = self.selftest.run()
        with self._lock:
            self._job = None
        held = self._held
        if verdict.ok and held is None:
            self._set_status(NodeStatus.IDLE)
        else:
            self._enter_maintenance(held or verdict.reason, retry=verdict.retry and held is None)
