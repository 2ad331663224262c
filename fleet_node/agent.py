"""The fleet agent: node presence on the central broker and the execution of assigned jobs.

One agent per node. It keeps two connections: the **central** broker (as ``node-<id>``: presence,
assignments, job updates, job logs) and the node's **local** broker (as ``agent``: motor state,
job binding, e-stop, self-test, per-job client accounts). Protocol and state machines:
docs/job-lifecycle.md and shared/reference/bus-protocol.md.

Threads: paho's two network threads only decode and hand over (a callback never raises); the
**control** thread owns presence and reacts to assignments, commands and motor state; one **job**
thread at a time runs :meth:`Agent._perform` — the whole life of one job execution, top to bottom::

    running? ─rejected→ (abandon, stay idle)
       │accepted
    busy → fetch code → job credentials + JobBinding → run container (log streamed)
         → unbind, delete credentials, e-stop → result bundle → upload → final update
         → resetting → self-test ─ok→ idle
                                 └fail→ maintenance (until clear_maintenance)

Outcomes: the user's fault → ``failed``; wall-clock limit → ``timed_out``; cancel_job →
``canceled``; platform faults (clone infrastructure, Docker, motor node lost, upload) → ``error``,
which the dispatcher requeues elsewhere. A rejected update or a withdrawn assignment means the
execution was taken from this node: the job is abandoned (container stopped, nothing reported).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from fleet_node import bundle
from fleet_node.config import AgentConfig
from fleet_node.joblog import LogStreamer
from fleet_node.session import SessionCounter
from fleet_node.source import (
    FetchLimits,
    SourceRejected,
    SourceUnavailable,
    describe_source,
    fetch_source,
)
from gym_raas_mqtt import __version__, protocol, results
from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.mqtt import BrokerAddress, Link, MqttError, Will
from gym_raas_mqtt.protocol import (
    EStop,
    JobAssignment,
    JobBinding,
    JobState,
    JobUpdate,
    JobUpdateReply,
    MotorState,
    MotorStatus,
    NodeCommand,
    NodeCommandKind,
    NodeMeta,
    NodeState,
    NodeStatus,
    SelfTestReply,
    SelfTestRequest,
    TopicKind,
)

log = logging.getLogger(__name__)


class AgentError(RaasError):
    """The agent cannot start (broker unreachable or refused)."""


class PlatformFault(RaasError):
    """Something of the node's failed while running a job (the job ends ``error``)."""


class Runner(Protocol):
    """What the agent needs from a job runner (:class:`fleet_node.runner.DockerRunner`)."""

    def run_job(self, job_id: str, code_dir: Path, env: dict[str, str], socket_path: Path,
                time_limit_s: float | None = None, on_output: Any = None,
                cancel: threading.Event | None = None) -> Any: ...


@dataclass(frozen=True)
class Outcome:
    """How a job execution ended, as reported in the final update."""

    state: JobState
    reason: str | None = None
    run: Any = None  # the runner's RunOutcome when the container ran


@dataclass
class ActiveJob:
    """The execution this node is working on (owned by the job thread; flags set by control)."""

    assignment: JobAssignment
    version: int
    stop_event: threading.Event = field(default_factory=threading.Event)
    stop_kind: str | None = None  # canceled | error | abandoned | shutdown
    stop_reason: str | None = None
    reported: bool = False  # the final update was sent: a withdrawn assignment is expected now
    commit_sha: str | None = None
    started_at: float | None = None
    workdir: Path | None = None
    job_client: str | None = None
    logs: LogStreamer | None = None

    @property
    def id(self) -> str:
        return self.assignment.job_id

    @property
    def key(self) -> tuple[str, int]:
        return self.assignment.job_id, self.assignment.execution

    def stop(self, kind: str, reason: str) -> bool:
        """Ask the job to stop (first caller wins); returns False if already stopping."""
        if self.stop_kind is not None:
            return False
        self.stop_kind, self.stop_reason = kind, reason
        self.stop_event.set()
        return True

    def stopped_outcome(self) -> Outcome:
        kind = {"canceled": JobState.CANCELED}.get(self.stop_kind or "", JobState.ERROR)
        return Outcome(kind, self.stop_reason)


class _Waiter:
    """One pending request (job update or self-test) answered from a paho callback."""

    def __init__(self, expected_version: int = 0) -> None:
        self.expected_version = expected_version
        self.event = threading.Event()
        self.reply: Any = None


class _Stopped(Exception):
    """Internal: the job was asked to stop before its container started."""


class Agent:
    """A fleet node's agent: :meth:`start` then :meth:`stop`, or :meth:`run` (the CLI).

    Args:
        config: settings.
        runner: job runner; default a :class:`fleet_node.runner.DockerRunner` made at start
            (without Docker every job ends ``error`` and the self-test fails).
        store: object store for archives and bundles; default ``open_store(config.store_url)``.
        central: central broker address; default from the config.
        local: node-local broker address (the agent's account); default from the config.
        clock: wall clock [s since the epoch] for timestamps.
    """

    def __init__(self, config: AgentConfig, *, runner: Runner | None = None, store: Any = None,
                 central: BrokerAddress | None = None, local: BrokerAddress | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = c = config
        self.node_id = c.node_id
        self.clock = clock
        self.central_address = central or BrokerAddress.parse(
            c.central_mqtt_url, username=c.central_user, password_file=c.central_password_file)
        self.local_address = local or BrokerAddress.parse(
            c.local_mqtt_url, username=c.local_username, password_file=c.local_password_file)
        self.runner = runner
        self.store = store
        self.state_dir = Path(c.data_dir) / "agent"
        self.session = SessionCounter(self.state_dir / "session")
        self._events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._lock = threading.RLock()
        self._status = NodeStatus.RESETTING if c.selftest else NodeStatus.IDLE
        self._reason: str | None = None
        self._maintenance_retry_at: float | None = None  # None: waits for clear_maintenance
        self._job: ActiveJob | None = None
        self._worker: threading.Thread | None = None
        self._desired: JobAssignment | None = None
        self._handled: list[tuple[str, int]] = []  # recent executions, never started twice
        self._draining = False
        self._dispatcher_ts = 0.0
        self._motor: MotorState | None = None
        self._image_digest: str | None = None
        self._update_waiters: dict[tuple[str, int], _Waiter] = {}
        self._selftest_waiters: dict[str, _Waiter] = {}
        self._motor_changed = threading.Condition(self._lock)
        self._born = False  # meta + state announced on the current connection
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._control: threading.Thread | None = None
        self._central: Link | None = None
        self._local: Link | None = None
        self.topics = {k: protocol.topic(k, node=self.node_id) for k in (
            TopicKind.NODE_STATE, TopicKind.NODE_META, TopicKind.NODE_CMD, TopicKind.NODE_JOB_NEXT,
            TopicKind.ENV_MOTOR_STATE, TopicKind.ENV_JOB, TopicKind.ENV_ESTOP,
            TopicKind.ENV_SELFTEST, TopicKind.ENV_SELFTEST_REPLY)}

    # ======================================================================== lifecycle
    def start(self, timeout_s: float = 10.0) -> "Agent":
        """Connect both brokers, clean up after a crash, announce; returns when online.

        Raises:
            AgentError: a broker is unreachable or refused the connection within ``timeout_s``.
        """
        self._prepare_runner_and_store()
        try:
            self._local = self._connect_local(timeout_s)
            self._recover_leftovers()
            self._central = self._connect_central(timeout_s)
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
            with self._lock:
                self._status, self._reason = NodeStatus.OFFLINE, "agent stopped"
                info = self._publish_state()
            try:
                if info is not None:
                    info.wait_for_publish(5.0)  # the PUBACK: offline is stored before we go
            except (RuntimeError, ValueError) as e:
                log.warning("offline state not acknowledged: %s", e)
            self._central.close()
        if self._local is not None:
            self._local.close()
        self._stopped.set()

    @property
    def status(self) -> NodeStatus:
        """The node state last published."""
        return self._status

    # ======================================================================== connections
    def _prepare_runner_and_store(self) -> None:
        if self.store is None:
            from raas_platform.storage import open_store

            self.store = open_store(self.config.store_url)
        if self.runner is None:
            self.runner = self._make_docker_runner()
        image_id = getattr(self.runner, "image_id", None)
        if image_id is not None:
            try:
                self._image_digest = image_id()
            except RaasError as e:
                log.warning("runner image unknown: %s", e)

    @staticmethod
    def _make_docker_runner() -> Runner | None:
        try:
            from fleet_node.runner import DockerRunner, RunnerConfig
            from gym_raas_mqtt.config import load

            return DockerRunner(load(RunnerConfig))
        except (RaasError, ImportError) as e:
            log.error("no job runner: %s", e)
            return None

    def _connect_central(self, timeout_s: float) -> Link:
        node = self.node_id
        return Link(
            self.central_address, f"node-{node}", name="central",
            subscriptions=[(self.topics[TopicKind.NODE_JOB_NEXT], 1),
                           (self.topics[TopicKind.NODE_CMD], 1),
                           (protocol.topic_filter(TopicKind.NODE_JOB_ACCEPTED, node=node), 1),
                           (protocol.topic_filter(TopicKind.NODE_JOB_REJECTED, node=node), 1),
                           (protocol.topic(TopicKind.DISPATCHER_STATE), 1)],
            on_message=self._on_central_message,
            on_up=lambda: self._events.put(("connected", None)),
            on_down=self._on_central_down, keepalive_s=self.config.keepalive_s,
            will=self._will, session_expiry_s=self.config.will_delay_s,
        ).start(timeout_s)

    def _connect_local(self, timeout_s: float) -> Link:
        return Link(
            self.local_address, f"agent-{self.node_id}", name="local",
            subscriptions=[(self.topics[TopicKind.ENV_MOTOR_STATE], 1),
                           (self.topics[TopicKind.ENV_SELFTEST_REPLY], 1)],
            on_message=self._on_local_message, keepalive_s=self.config.keepalive_s,
        ).start(timeout_s)

    def _will(self) -> Will:
        """The retained last will of the next CONNECT: ``lost`` with a new session number, so a
        late will is always older than the birth that follows it (raised and fsync'd first)."""
        try:
            session = self.session.next()
        except OSError as e:  # keep going: presence still works, ordering by session degrades
            log.error("session counter not written: %s", e)
            session = self.session.value
        return Will(self.topics[TopicKind.NODE_STATE],
                    NodeState(NodeStatus.LOST, session, self.clock(),
                              reason="agent connection lost").to_bytes(),
                    delay_s=self.config.will_delay_s)

    def _on_central_down(self) -> None:
        self._born = False  # the next connection announces itself again (no lock: paho thread)

    # ======================================================================== inbound messages
    def _on_central_message(self, parsed: protocol.ParsedTopic, message: Any) -> None:
        if parsed.node not in (None, self.node_id):
            return
        kind = parsed.kind
        if kind in (TopicKind.NODE_JOB_ACCEPTED, TopicKind.NODE_JOB_REJECTED):
            if isinstance(message, JobUpdateReply):
                self._on_update_reply(message, accepted=kind is TopicKind.NODE_JOB_ACCEPTED)
        elif kind is TopicKind.NODE_JOB_NEXT:
            self._events.put(("assignment", message))
        elif kind is TopicKind.NODE_CMD and message is not None:
            self._events.put(("command", message))
        elif kind is TopicKind.DISPATCHER_STATE and message is not None:
            self._events.put(("dispatcher", message))

    def _on_local_message(self, parsed: protocol.ParsedTopic, message: Any) -> None:
        if parsed.kind is TopicKind.ENV_MOTOR_STATE:
            with self._lock:
                self._motor = message
                self._motor_changed.notify_all()
            self._events.put(("motor", message))
        elif parsed.kind is TopicKind.ENV_SELFTEST_REPLY and isinstance(message, SelfTestReply):
            waiter = self._selftest_waiters.get(message.request_id)
            if waiter is not None:
                waiter.reply = message
                waiter.event.set()

    def _on_update_reply(self, reply: JobUpdateReply, accepted: bool) -> None:
        waiter = self._update_waiters.get((reply.job_id, reply.execution))
        if waiter is None:
            return
        # An accepted reply must move the version past what we sent: older ones are duplicates.
        if accepted and reply.version <= waiter.expected_version:
            return
        waiter.reply = dataclasses.replace(reply, accepted=accepted)
        waiter.event.set()

    # ======================================================================== control thread
    def _control_loop(self) -> None:
        while True:
            try:
                kind, payload = self._events.get(timeout=1.0)
            except queue.Empty:
                kind, payload = "tick", None
            if kind == "stop":
                return
            try:
                getattr(self, f"_handle_{kind}")(payload)
            except Exception:  # a bug in one handler must not take the node offline
                log.exception("agent: handling %s failed", kind)

    def _handle_connected(self, _: Any) -> None:
        self._announce()

    def _handle_dispatcher(self, msg: protocol.DispatcherState) -> None:
        if msg.online and msg.ts > self._dispatcher_ts:
            first = self._dispatcher_ts == 0.0
            self._dispatcher_ts = msg.ts
            if not first:  # the first one is the retained birth we just subscribed to
                log.info("dispatcher birth (ts %.3f): re-announcing", msg.ts)
                self._announce()

    def _handle_command(self, cmd: NodeCommand) -> None:
        log.info("command %s (job %s): %s", cmd.command.value, cmd.job_id, cmd.reason)
        if cmd.command is NodeCommandKind.REBIRTH:
            self._announce()
        elif cmd.command is NodeCommandKind.CANCEL_JOB:
            job = self._job
            if job is not None and cmd.job_id in (None, job.id):
                job.stop("canceled", cmd.reason or "canceled")
        elif cmd.command is NodeCommandKind.DRAIN:
            self._draining = True
        elif cmd.command is NodeCommandKind.RESUME:
            self._draining = False
            self._maybe_start_job()
        elif cmd.command is NodeCommandKind.CLEAR_MAINTENANCE:
            if self._status is NodeStatus.MAINTENANCE and self._worker is None:
                self._spawn(self._reset_node, "agent-reset")

    def _handle_assignment(self, assignment: JobAssignment | None) -> None:
        self._desired = assignment
        job = self._job
        if job is not None and not job.reported and (
                assignment is None or (assignment.job_id, assignment.execution) != job.key):
            if job.stop("abandoned", "the dispatcher withdrew the assignment"):
                log.warning("job %s: assignment withdrawn; abandoning", job.id)
        self._maybe_start_job()

    def _handle_motor(self, motor: MotorState | None) -> None:
        lost = motor is None or motor.state is MotorStatus.LOST
        job = self._job
        if lost and job is not None and not job.reported:
            job.stop("error", "the motor node was lost during the job")
        if lost and self._status is NodeStatus.IDLE and self._worker is None:
            self._enter_maintenance("the motor node is not running", retry=True)
        elif not lost and self._maintenance_retry_at is not None:
            self._maintenance_retry_at = time.monotonic()  # it is back: retry now
        self._announce_meta_if_changed()

    def _handle_job_done(self, _: Any) -> None:
        self._maybe_start_job()

    def _handle_tick(self, _: Any) -> None:
        retry_at = self._maintenance_retry_at
        if (self._status is NodeStatus.MAINTENANCE and retry_at is not None
                and time.monotonic() >= retry_at and self._worker is None):
            self._spawn(self._reset_node, "agent-reset")

    def _maybe_start_job(self) -> None:
        a = self._desired
        if (a is None or self._worker is not None or self._status is not NodeStatus.IDLE
                or self._draining or self._stopping.is_set()):
            return
        if (a.job_id, a.execution) in self._handled:
            return  # finished or refused already; the dispatcher will clear or replace it
        self._handled = (self._handled + [(a.job_id, a.execution)])[-32:]
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

    # ======================================================================== presence
    def _meta(self) -> NodeMeta:
        motor = self._motor
        return NodeMeta(backend=(motor.backend if motor and motor.backend else "unknown"),
                        software_version=__version__,
                        calibration_id=(motor.calibration_id if motor and motor.calibration_id
                                        else "unknown"),
                        ts=self.clock(), image_digest=self._image_digest,
                        hostname=socket.gethostname()[:64])

    def _announce(self) -> None:
        """Publish retained meta, then retained state (birth; also on rebirth)."""
        link = self._central
        if link is None:
            return
        with self._lock:  # nobody publishes a state between this meta and this state
            meta = self._meta()
            self._last_meta = (meta.backend, meta.calibration_id, meta.image_digest)
            link.publish(self.topics[TopicKind.NODE_META], meta.to_bytes(), qos=1, retain=True)
            self._born = True
            self._publish_state()

    def _announce_meta_if_changed(self) -> None:
        meta = self._meta()
        if (meta.backend, meta.calibration_id, meta.image_digest) != getattr(self, "_last_meta",
                                                                              None):
            self._announce()

    def _publish_state(self) -> Any:
        link = self._central
        if link is None:
            return None
        with self._lock:
            job = self._job
            msg = NodeState(self._status, self.session.value, self.clock(),
                            job_id=job.id if job and self._status is NodeStatus.BUSY else None,
                            reason=self._reason)
            return link.publish(self.topics[TopicKind.NODE_STATE], msg.to_bytes(), qos=1,
                                retain=True)

    def _set_status(self, status: NodeStatus, reason: str | None = None) -> None:
        with self._lock:
            self._status, self._reason = status, reason
            if status is not NodeStatus.MAINTENANCE:
                self._maintenance_retry_at = None
            born = self._born
        log.info("node %s: %s%s", self.node_id, status.value, f" ({reason})" if reason else "")
        if born:  # before the birth (meta first) of this connection, the birth carries it
            self._publish_state()

    def _enter_maintenance(self, reason: str, retry: bool) -> None:
        """Take no jobs: until clear_maintenance, or (``retry``) the next self-test retry."""
        with self._lock:
            self._maintenance_retry_at = (time.monotonic() + self.config.maintenance_retry_s
                                          if retry else None)
        self._set_status(NodeStatus.MAINTENANCE, reason)

    # ======================================================================== the job thread
    def _perform(self, job: ActiveJob) -> None:
        """The life of one job execution (see the module docstring)."""
        reply = self._update(job, JobState.RUNNING, {}, timeout_s=self.config.start_timeout_s)
        if reply is None or not reply.accepted:
            log.warning("job %s#%d not started: %s", job.id, job.assignment.execution,
                        reply.reason if reply else "no answer from the dispatcher")
            return
        job.started_at = self.clock()
        self._set_status(NodeStatus.BUSY)
        outcome = self._execute(job)
        if job.stop_kind == "abandoned":
            log.warning("job %s abandoned: %s", job.id, job.stop_reason)
            self._cleanup(job)
            self._reset_node()
            return
        result_key, summary, outcome = self._save_results(job, outcome)
        self._report(job, outcome, result_key, summary)
        self._cleanup(job)
        if not self._stopping.is_set():
            self._reset_node()

    def _execute(self, job: ActiveJob) -> Outcome:
        """Fetch, bind, run; always unbind. Returns the outcome (never raises for the job)."""
        a = job.assignment
        job.workdir = Path(self.config.data_dir) / "jobs" / f"{a.job_id}-{a.execution}"
        shutil.rmtree(job.workdir, ignore_errors=True)
        job.workdir.mkdir(parents=True)
        self._remember_job(job)
        job.logs = LogStreamer(a.job_id, job.workdir / results.STDOUT_FILE,
                               self._log_publisher(a), flush_s=self.config.log_flush_s,
                               max_lines=self.config.log_chunk_lines, clock=self.clock)
        run = None
        try:
            job.logs.system(f"job {a.job_id} execution {a.execution} on node {self.node_id}")
            code = self._fetch(job)
            if job.stop_event.is_set():
                raise _Stopped
            username, password = self._bind(job)
            run = self._run(job, code, username, password)
        except SourceRejected as e:
            return self._log_outcome(job, Outcome(JobState.FAILED, str(e)))
        except (SourceUnavailable, PlatformFault) as e:
            return self._log_outcome(job, Outcome(JobState.ERROR, str(e)))
        except _Stopped:
            return self._log_outcome(job, job.stopped_outcome())
        finally:
            self._unbind(job)
        if job.stop_kind is not None:
            return self._log_outcome(job, dataclasses.replace(job.stopped_outcome(), run=run))
        return self._log_outcome(job, Outcome(run.state, run.reason, run))

    def _log_outcome(self, job: ActiveJob, outcome: Outcome) -> Outcome:
        log.info("job %s#%d: %s%s", job.id, job.assignment.execution, outcome.state.value,
                 f" ({outcome.reason})" if outcome.reason else "")
        if job.logs is not None:
            job.logs.system(f"{outcome.state.value}" + (f": {outcome.reason}"
                                                         if outcome.reason else ""))
        return outcome

    def _fetch(self, job: ActiveJob) -> Path:
        c = self.config
        limits = FetchLimits(max_bytes=c.clone_max_bytes, max_files=c.clone_max_files,
                             timeout_s=c.clone_timeout_s, allowed_schemes=c.clone_schemes)
        src = job.assignment.source
        assert job.workdir is not None and job.logs is not None
        job.logs.system(f"fetching {describe_source(src)}")
        fetched = fetch_source(src, job.workdir / "code", limits, self.store)
        job.commit_sha = fetched.commit_sha
        job.logs.system(f"code ready: {fetched.files} files, {fetched.size_bytes} bytes"
                        + (f", commit {fetched.commit_sha}" if fetched.commit_sha else ""))
        return fetched.path

    def _bind(self, job: ActiveJob) -> tuple[str, str]:
        """Create the job's local broker account and bind the motor node's recording to it."""
        from broker_config.provision import create_job_client

        motor = self._motor
        if motor is None or motor.state is MotorStatus.LOST:
            raise PlatformFault("the motor node is not running")
        try:
            username, password = create_job_client(self.local_address, self.node_id, job.id)
        except RaasError as e:
            raise PlatformFault(f"cannot create the job's broker account: {e}") from e
        job.job_client = username
        self._remember_job(job)
        self._telemetry_path(job).unlink(missing_ok=True)  # the motor appends: start afresh
        self._publish_local(TopicKind.ENV_JOB, JobBinding(self.clock(), job.id,
                                                          job.assignment.owner))
        return username, password

    def _run(self, job: ActiveJob, code: Path, username: str, password: str) -> Any:
        if self.runner is None:
            self.runner = self._make_docker_runner()
            if self.runner is None:
                raise PlatformFault("no job runner: the Docker engine is unreachable")
        socket_path = self.config.socket_path
        if socket_path is None:
            raise PlatformFault("RAAS_LOCAL_SOCKET is not set: containers cannot reach the "
                                "local broker")
        env = {"RAAS_NODE_ID": self.node_id, "RAAS_MQTT_USERNAME": username,
               "RAAS_MQTT_PASSWORD": password, "RAAS_OWNER": job.assignment.owner,
               "PYTHONUNBUFFERED": "1"}
        assert job.logs is not None
        job.logs.system(f"running run.py (time limit {job.assignment.time_limit_s:g} s)")
        try:
            return self.runner.run_job(job.id, code.resolve(), env, socket_path.resolve(),
                                       job.assignment.time_limit_s, job.logs.add,
                                       job.stop_event)
        except RaasError as e:  # RunnerError: the runner refused its arguments
            raise PlatformFault(f"runner: {e}") from e

    def _unbind(self, job: ActiveJob) -> None:
        """Unbind the motor's recording, delete the job's account, stop the motor."""
        self._publish_local(TopicKind.ENV_JOB, JobBinding(self.clock(), None, None))
        if job.job_client is not None:
            from broker_config.provision import delete_job_client

            try:
                delete_job_client(self.local_address, job.job_client)
                job.job_client = None
            except RaasError as e:
                log.error("job %s: could not delete account %s: %s", job.id, job.job_client, e)
        self._publish_local(TopicKind.ENV_ESTOP, EStop("job ended", self.clock()))
        # The motor node closes the telemetry file when it sees the unbinding: wait for it.
        deadline = time.monotonic() + self.config.motor_wait_s
        with self._motor_changed:
            while (self._motor is not None and self._motor.job_id == job.id
                   and time.monotonic() < deadline):
                self._motor_changed.wait(max(0.0, deadline - time.monotonic()))

    def _save_results(self, job: ActiveJob, outcome: Outcome
                      ) -> tuple[str | None, dict[str, Any] | None, Outcome]:
        """Build the bundle and upload it; an upload failure turns the outcome into error."""
        a = job.assignment
        assert job.workdir is not None
        if job.logs is not None:
            job.logs.close()
        run = outcome.run
        motor = self._motor
        telemetry = self._telemetry_path(job)
        try:
            summary = bundle.build_bundle(
                job.workdir / "bundle", telemetry_path=telemetry,
                stdout_path=job.workdir / results.STDOUT_FILE,
                job_id=a.job_id, owner=a.owner, node_id=self.node_id, execution=a.execution,
                state=outcome.state.value, reason=outcome.reason, commit_sha=job.commit_sha,
                image_digest=getattr(run, "image_id", None) or self._image_digest,
                calibration_id=motor.calibration_id if motor else None,
                time_limit_s=getattr(run, "time_limit_s", None) or a.time_limit_s,
                duration_s=getattr(run, "duration_s", None), started_at=job.started_at,
                finished_at=self.clock(), exit_code=getattr(run, "exit_code", None),
                output_truncated=bool(getattr(run, "truncated", False)))
        except (OSError, RaasError) as e:
            log.exception("job %s: result bundle not built", a.job_id)
            return None, None, Outcome(JobState.ERROR, f"result bundle not built: {e}", run)
        for attempt in range(1, self.config.upload_attempts + 1):
            try:
                key = bundle.upload_bundle(self.store, a.job_id, job.workdir / "bundle")
                return key, summary, outcome
            except RaasError as e:
                log.warning("job %s: upload attempt %d failed: %s", a.job_id, attempt, e)
                if attempt < self.config.upload_attempts:
                    time.sleep(min(2.0 ** attempt, 10.0))
                last = e
        return None, summary, Outcome(JobState.ERROR, f"result upload failed: {last}", run)

    def _report(self, job: ActiveJob, outcome: Outcome, result_key: str | None,
                summary: dict[str, Any] | None) -> None:
        compact = {k: v for k, v in (summary or {}).items() if k != "per_episode"}
        details = {"reason": outcome.reason, "commit_sha": job.commit_sha,
                   "result_key": result_key, "summary": compact or None}
        job.reported = True
        timeout = 10.0 if self._stopping.is_set() else None
        reply = self._update(job, outcome.state, {k: v for k, v in details.items()
                                                  if v is not None}, timeout_s=timeout)
        if reply is None:
            log.error("job %s: final update %s not answered", job.id, outcome.state.value)
        elif not reply.accepted:
            log.warning("job %s: final update %s rejected: %s", job.id, outcome.state.value,
                        reply.reason)

    def _cleanup(self, job: ActiveJob) -> None:
        if job.logs is not None:
            job.logs.close()
        self._telemetry_path(job).unlink(missing_ok=True)  # uploaded, or of no use
        if job.workdir is not None and not self.config.keep_workdirs:
            shutil.rmtree(job.workdir, ignore_errors=True)
        (self.state_dir / "current-job.json").unlink(missing_ok=True)

    def _update(self, job: ActiveJob, status: JobState, details: dict[str, Any],
                timeout_s: float | None) -> JobUpdateReply | None:
        """Send a versioned update and wait for its answer, resending every update_retry_s.

        Returns:
            The reply (``accepted`` tells which topic it came on), or None after ``timeout_s``
            (None = until answered or the agent stops). An accepted reply advances
            ``job.version``.
        """
        a = job.assignment
        waiter = _Waiter(job.version)
        self._update_waiters[job.key] = waiter
        msg = JobUpdate(job_id=a.job_id, execution=a.execution, expected_version=job.version,
                        status=status, ts=self.clock(), details=details)
        name = protocol.topic(TopicKind.NODE_JOB_UPDATE, node=self.node_id, job=a.job_id)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while True:
                if self._central is not None:
                    self._central.publish(name, msg.to_bytes(), qos=1)
                if self._wait(waiter.event, self.config.update_retry_s,
                              give_up_on_stop=status is JobState.RUNNING):
                    break
                now = time.monotonic()
                if deadline is not None and now >= deadline or (
                        status is JobState.RUNNING and self._stopping.is_set()):
                    return None
                if deadline is None and self._stopping.is_set():
                    deadline = now + 5.0
                log.info("job %s: update %s unanswered; resending", a.job_id, status.value)
        finally:
            self._update_waiters.pop(job.key, None)
        reply: JobUpdateReply = waiter.reply
        if reply.accepted:
            job.version = reply.version
        else:
            job.stop("abandoned", f"update {status.value} rejected: {reply.reason}")
        return reply

    # ======================================================================== between jobs
    def _reset_node(self) -> None:
        """resetting → self-test → idle, or maintenance when it fails."""
        self._set_status(NodeStatus.RESETTING)
        ok, reason, retry = self._selftest()
        with self._lock:
            self._job = None
        if ok:
            self._set_status(NodeStatus.IDLE)
        else:
            self._enter_maintenance(reason, retry=retry)

    def _selftest(self) -> tuple[bool, str, bool]:
        """Ask the motor node for its self-test. Returns (ok, reason, retry automatically)."""
        motor = self._motor
        if motor is not None and motor.state is MotorStatus.LOST:
            return False, "the motor node is not running", True
        if not self.config.selftest:
            return True, "", False
        if self.runner is None:
            self.runner = self._make_docker_runner()
            if self.runner is None:
                return False, "no job runner: the Docker engine is unreachable", True
        request = SelfTestRequest(uuid.uuid4().hex[:16], self.clock())
        waiter = _Waiter()
        self._selftest_waiters[request.request_id] = waiter
        try:
            self._publish_local(TopicKind.ENV_SELFTEST, request)
            if not self._wait(waiter.event, self.config.selftest_timeout_s,
                              give_up_on_stop=True):
                return False, "the motor node did not answer the self-test", True
        finally:
            self._selftest_waiters.pop(request.request_id, None)
        reply: SelfTestReply = waiter.reply
        if reply.ok:
            return True, "", False
        why = reply.details.get("error") or reply.details.get("reason") or "no reason given"
        return False, f"self-test failed: {str(why)[:300]}", False

    # ======================================================================== helpers
    def _wait(self, event: threading.Event, timeout_s: float, give_up_on_stop: bool) -> bool:
        """Wait for ``event`` up to ``timeout_s``; with ``give_up_on_stop``, return False as soon
        as the agent is stopping (nothing worth finishing waits on it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return event.is_set()
            if event.wait(min(remaining, 0.1) if give_up_on_stop else remaining):
                return True
            if give_up_on_stop and self._stopping.is_set():
                return False

    def _telemetry_path(self, job: ActiveJob) -> Path:
        """Where the motor node records this job (fleet_node.motor.telemetry.telemetry_path)."""
        return Path(self.config.data_dir) / "telemetry" / f"{job.id}.csv"

    def _publish_local(self, kind: TopicKind, msg: protocol.Message) -> None:
        if self._local is None:
            return
        spec = protocol.TOPICS[kind]
        self._local.publish(self.topics[kind], msg.to_bytes(), qos=spec.qos, retain=spec.retain)

    def _log_publisher(self, a: JobAssignment) -> Callable[[protocol.LogChunk], None]:
        name = protocol.topic(TopicKind.JOB_LOG, owner=a.owner, job=a.job_id)

        def publish(chunk: protocol.LogChunk) -> None:
            if self._central is not None:
                self._central.publish(name, chunk.to_bytes(), qos=0)
        return publish

    def _remember_job(self, job: ActiveJob) -> None:
        """Note what a crash would leave behind, so the next start can clean it up."""
        path = self.state_dir / "current-job.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"job_id": job.id, "execution": job.assignment.execution,
                                   "job_client": job.job_client,
                                   "workdir": str(job.workdir) if job.workdir else None}))
        tmp.replace(path)

    def _recover_leftovers(self) -> None:
        """After a crash: unbind the motor, delete the dead job's account, container and files.

        The dispatcher requeues that job itself (this node comes back without it)."""
        path = self.state_dir / "current-job.json"
        self._publish_local(TopicKind.ENV_JOB, JobBinding(self.clock(), None, None))
        sweep = getattr(self.runner, "sweep", None)
        if sweep is not None:
            try:
                sweep(self.node_id)
            except Exception as e:  # noqa: BLE001 - Docker trouble shows up again per job
                log.warning("could not sweep leftover containers: %s", e)
        try:
            left = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except ValueError:
            path.unlink(missing_ok=True)
            return
        log.warning("cleaning up after job %s, interrupted by a crash", left.get("job_id"))
        if left.get("job_client"):
            from broker_config.provision import delete_job_client

            try:
                delete_job_client(self.local_address, str(left["job_client"]))
            except RaasError as e:
                log.error("could not delete leftover account %s: %s", left["job_client"], e)
        if left.get("workdir") and not self.config.keep_workdirs:
            shutil.rmtree(left["workdir"], ignore_errors=True)
        path.unlink(missing_ok=True)


__all__ = ["Agent", "AgentError", "ActiveJob", "Outcome", "Runner"]
