"""The motor node's state machine: episodes, actions and safety, with no MQTT, threads or clock.

Inputs are decoded messages (:meth:`MotorMachine.handle`) and control periods
(:meth:`MotorMachine.tick`, with the time [s] passed in by a clock). Outputs — observations, reset
and self-test replies, motor state changes, telemetry batches — go out through the ``emit``
callback as ``emit(kind, message, **topic_ids)``. Real time and lockstep run the same code; only
the clock differs (see clock.py):

    tick k: sample s_k → emit Observation(seq=n-1, s_k) → env computes a_n → a_n applied
    tick k+1: sample s_{k+1} (a_n held for one period) → emit Observation(seq=n, s_{k+1}) → ...

An action that has not arrived by the next tick is *late*: the previous command is held, the
step's observation comes one tick later with ``deadline_miss`` set, and after
``watchdog_periods`` ticks without a fresh action the torque goes to zero.

Safety lives here, never in user code: the action is clamped to ±max_action; zero torque on the
watchdog, on an EStop (until the next reset), on the env's last will, and on over-speed (a fault,
reported in MotorState and in the Observation); resets are closed-loop (see procedures.py).
What a job may send is bounded (bounds.py); its episodes are forgotten when its binding ends.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import threading
from dataclasses import dataclass
from typing import Any, Callable

from gym_raas_mqtt.physics import reward
from gym_raas_mqtt.protocol import (Action, EnvState, EnvStatus, EStop, JobBinding, MotorState,
                                    MotorStatus, Observation, ResetReply, ResetRequest,
                                    SelfTestReply, SelfTestRequest, TelemetryBatch, TopicKind)
from fleet_node.motor.base import Motor
from fleet_node.motor.bounds import reset_refusal, seq_in_window
from fleet_node.motor.clock import LoopStats
from fleet_node.motor.config import MotorConfig
from fleet_node.motor.procedures import Operation, SettleLimits, SettleResult, selftest, settle
from fleet_node.motor.telemetry import JobTelemetry

log = logging.getLogger(__name__)

REPLY_CACHE = 32
"""Reset replies kept for idempotent answers to duplicate requests (by episode id)."""

Emit = Callable[..., None]
"""``emit(kind: TopicKind, message, **topic_ids)``: publish ``message`` on ``kind``'s topic; ids
beyond the node's own (``owner``, ``job``) are given for central topics. Must not block."""


@dataclass
class _Pending:
    """An action applied and waiting for the tick that samples its result."""

    seq: int
    desired: float
    u: float  # desired clamped to ±max_action
    applied: float
    pre: tuple[float, float, float]  # (θ, θ̇, t) the env saw when it chose the action
    late: bool


class MotorMachine:
    """Episodes, actions, watchdog, e-stop and env-state latches, job telemetry and procedures.

    Called from one thread at a time (the loop's, or paho's under the transport's lock in
    lockstep); only :meth:`go_safe` may come from any thread.

    Args:
        cfg: the node's settings (limits, watchdog, lockstep, telemetry).
        motor: the driver.
        stats: counters shared with the clock and the transport.
        emit: where outputs go (see :data:`Emit`).
        wall_clock: wall-clock time [s since the epoch] for message timestamps (``time.time``).

    Attributes:
        status, reason: the motor's state and why. episode_id: the current or last episode.
        motor_state: the latest :class:`MotorState` (retained; re-sent on reconnect).
    """

    def __init__(self, cfg: MotorConfig, motor: Motor, stats: LoopStats, emit: Emit, *,
                 wall_clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.motor = motor
        self.params = motor.params
        self.period = cfg.period_s
        self.lockstep = cfg.lockstep
        self.stats = stats
        self._emit = emit
        self._wall_clock = wall_clock
        self._limits = SettleLimits(cfg.reset_angle_tol_rad, cfg.reset_speed_tol_rad_s,
                                    cfg.reset_still_s)
        self._safe_latch = threading.Event()  # set from any thread: no torque until a reset
        self.status = MotorStatus.READY
        self.reason: str | None = None
        self.episode_id: int | None = None
        self._episode_active = False
        self._t0 = 0.0
        self._last_pub: tuple[float, float, float] = (math.pi, 0.0, 0.0)
        self._last_seq = 0
        self._pending: _Pending | None = None
        self._awaiting = False
        self._late = False
        self._ticks_since_apply = 0
        self._watchdog_tripped = False
        self._op: Operation | None = None
        self._replies: collections.OrderedDict[int, ResetReply] = collections.OrderedDict()
        self._job = JobTelemetry(cfg.data_dir, cfg.node_id, cfg.telemetry_batch,
                                 self._publish_telemetry)
        self.motor_state: MotorState = self._make_state()
        self._handlers: dict[TopicKind, Callable[[Any], None]] = {
            TopicKind.ENV_ACT: self._on_action, TopicKind.ENV_RESET: self._on_reset,
            TopicKind.ENV_STATE: self._on_env_state, TopicKind.ENV_ESTOP: self._on_estop,
            TopicKind.ENV_JOB: self._on_job, TopicKind.ENV_SELFTEST: self._on_selftest}

    # ------------------------------------------------------------------------------- inputs
    def go_safe(self) -> None:
        """Latch zero torque until the next reset, at once (any thread: the safety fast path)."""
        self._safe_latch.set()
        self.motor.stop()

    def needs_time(self) -> bool:
        """Whether work waits for a tick: an action to answer or a procedure running."""
        return self._pending is not None or self._op is not None

    def handle(self, kind: TopicKind, msg: Any) -> None:
        """Act on a decoded message of one of the motor node's subscriptions.

        Args:
            kind: the topic's kind, one of the transport's subscriptions (ENV_ACT, ENV_RESET,
                ENV_STATE, ENV_ESTOP, ENV_JOB, ENV_SELFTEST).
            msg: its message; None for a cleared retained ENV_JOB or ENV_STATE.
        """
        self._handlers[kind](msg)

    def tick(self, now: float, miss: bool) -> None:
        """One control period: sample the pendulum, then observe, feed a procedure or watch.

        Args:
            now: the tick's time [s] on the clock driving the machine.
            miss: the tick came later than its deadline.
        """
        theta, theta_dot = self.motor.read()
        op = self._op
        if op is not None:
            self._feed_op(op, theta, theta_dot, now)
            return
        if abs(theta_dot) > self.cfg.overspeed_rad_s and self.status is not MotorStatus.FAULT:
            self.fault(f"over-speed: |θ̇| = {abs(theta_dot):.2f} rad/s > "
                       f"{self.cfg.overspeed_rad_s:g} rad/s")
        if not self._episode_active:
            return
        self._ticks_since_apply += 1  # the tick observing an action counts as the first
        pending = self._pending
        if pending is not None:
            self._pending = None
            self._observe(pending, theta, theta_dot, now, miss or pending.late)
            return
        if self._awaiting:
            self._late = True  # the answer to the last observation did not come in time
        if (self._ticks_since_apply >= self.cfg.watchdog_periods and not self._watchdog_tripped
                and self.status is MotorStatus.RUNNING):
            self.motor.stop()
            self._watchdog_tripped = True
            self.stats.watchdog_trips += 1
            self._set_status(MotorStatus.RUNNING, f"watchdog: no action for "
                             f"{self.cfg.watchdog_periods} periods, torque off")

    def fault(self, reason: str) -> None:
        """Zero torque, latched until the next reset, and report a FAULT with ``reason``."""
        log.error("motor fault: %s", reason)
        self.go_safe()
        self._set_status(MotorStatus.FAULT, reason)

    def abort_procedure(self, why: str) -> None:
        """End a running reset or self-test, answering its requests with the failure ``why``."""
        op, self._op = self._op, None
        if op is None:
            return
        self.motor.stop()
        if op.kind == "reset" and op.episode_id is not None:
            for rid in op.request_ids:
                self._emit(TopicKind.ENV_RESET_REPLY, ResetReply(
                    rid, op.episode_id, ok=False, error=f"reset aborted: {why}"))
        elif op.kind == "selftest":
            self._selftest_done(op, {"ok": False, "error": f"self-test aborted: {why}"})

    def close(self) -> None:
        """Flush and close the telemetry file of the bound job, if any."""
        self._job.close()

    # ------------------------------------------------------------------------------ actions
    def _fresh(self, action: Action) -> bool:
        if not self._episode_active or action.episode_id != self.episode_id:
            return False
        return seq_in_window(self._last_seq, action.seq)

    def _on_action(self, action: Action) -> None:
        if not self._fresh(action):
            self.stats.dropped += 1
            log.debug("dropped stale action ep=%s seq=%s", action.episode_id, action.seq)
            return
        a = self.params.max_action
        desired = action.action
        u = -a if desired < -a else a if desired > a else desired
        if self.status is MotorStatus.RUNNING and not self._safe_latch.is_set():
            applied = self.motor.apply(u)
        else:
            self.motor.stop()
            applied = 0.0
        self._last_seq = action.seq
        self.stats.steps += 1
        if self._pending is not None:  # a second action in one period supersedes the first
            log.debug("action seq %s superseded by %s", self._pending.seq, action.seq)
        if self._late:
            self.stats.late_actions += 1
        self._pending = _Pending(action.seq, desired, u, applied, self._last_pub, self._late)
        self._late = False
        self._awaiting = False
        self._ticks_since_apply = 0
        if self._watchdog_tripped:
            self._watchdog_tripped = False
            self._set_status(MotorStatus.RUNNING, None)

    def _observe(self, p: _Pending, theta: float, theta_dot: float, now: float,
                 miss: bool) -> None:
        """Emit the observation of action ``p`` and record its telemetry row."""
        # lockstep: virtual time, seq periods since the episode began (exact, so reproducible)
        t = p.seq * self.period if self.lockstep else now - self._t0
        fault = None if self.status is MotorStatus.RUNNING else (self.reason or self.status.value)
        obs = Observation(self.episode_id or 0, p.seq, theta, theta_dot, p.applied, t, miss, fault)
        self._emit(TopicKind.ENV_OBS, obs)
        self._last_pub = (theta, theta_dot, t)
        self._awaiting = True
        if self._job.recording:
            th, thd, t_pre = p.pre
            self._job.record(self.episode_id or 0, (p.seq, t_pre, th, thd, p.desired, p.applied,
                                                    reward(th, thd, p.u), miss, theta, theta_dot))

    # ------------------------------------------------------------------------------ episodes
    def _on_reset(self, req: ResetRequest) -> None:
        cached = self._replies.get(req.episode_id)
        if cached is not None:  # duplicate: same answer
            self._emit(TopicKind.ENV_RESET_REPLY,
                       dataclasses.replace(cached, request_id=req.request_id))
            return
        op = self._op
        if op is not None and op.kind == "reset" and op.episode_id == req.episode_id:
            op.request_ids.append(req.request_id)  # answered when the running reset ends
            return
        refusal = reset_refusal(req, self.episode_id, self.params, self.motor.placeable)
        if refusal is not None:
            log.warning("reset refused: %s", refusal)
            self._emit(TopicKind.ENV_RESET_REPLY, ResetReply(
                req.request_id, req.episode_id, ok=False, error=refusal))
            return
        self.abort_procedure("preempted by a reset")
        self._end_episode()
        self._safe_latch.clear()  # a reset clears an e-stop or a fault
        self.motor.stop()
        self.episode_id = req.episode_id
        self._set_status(MotorStatus.RESETTING, None)
        timeout = min(req.timeout_s, self.cfg.reset_timeout_s)
        op = Operation("reset", self.motor, None, [req.request_id], req.episode_id,
                       limits=self._limits, timeout_s=timeout)
        if req.initial_state is not None and self.motor.placeable:
            op.place = (req.initial_state[0], req.initial_state[1])
        else:
            op.proc = settle(self._limits, timeout)
        self._start_op(op)

    def _reset_done(self, op: Operation, result: SettleResult, theta: float,
                    theta_dot: float) -> None:
        assert op.episode_id is not None
        if result.ok:
            reply = ResetReply("x", op.episode_id, True, result.theta, result.theta_dot, 0.0)
            self._begin_episode(result.theta, result.theta_dot, result.t)
            self._set_status(MotorStatus.RUNNING, None)
        else:
            reply = ResetReply("x", op.episode_id, False, theta, theta_dot, 0.0, result.error)
            self.fault(result.error or "reset failed")
        self._replies[op.episode_id] = reply
        while len(self._replies) > REPLY_CACHE:
            self._replies.popitem(last=False)
        for rid in op.request_ids:
            self._emit(TopicKind.ENV_RESET_REPLY, dataclasses.replace(reply, request_id=rid))

    def _begin_episode(self, theta: float, theta_dot: float, now: float) -> None:
        self._episode_active = True
        self._t0 = now
        self._last_pub = (theta, theta_dot, 0.0)
        self._last_seq = 0
        self._pending = None
        self._awaiting = True
        self._late = False
        self._ticks_since_apply = 0
        self._watchdog_tripped = False

    def _end_episode(self) -> None:
        self._episode_active = False
        self._pending = None
        self._awaiting = False
        self._job.flush()

    def _on_env_state(self, msg: EnvState | None) -> None:
        if msg is None or msg.state not in (EnvStatus.LOST, EnvStatus.IDLE):
            return
        if self._op is not None and self._op.kind == "reset":
            self.abort_procedure(f"env {msg.state.value}")
        if self._episode_active:
            self.motor.stop()
            self._end_episode()
            why = "env lost: torque off" if msg.state is EnvStatus.LOST else "env idle"
            if self.status is MotorStatus.RUNNING:
                self._set_status(MotorStatus.READY, why)

    def _on_estop(self, msg: EStop) -> None:
        self.go_safe()
        self.abort_procedure(f"e-stop: {msg.reason}")
        self._set_status(MotorStatus.ESTOP, f"e-stop: {msg.reason}")

    # ---------------------------------------------------------------------------- job binding
    def _on_job(self, msg: JobBinding | None) -> None:
        job_id, owner = (None, None) if msg is None else (msg.job_id, msg.owner)
        ended = self._job.job_id is not None and job_id != self._job.job_id
        status, reason = self.status, self.reason
        if ended or (job_id is not None and job_id != self._job.job_id):  # episodes per job from 1
            self._forget_episodes()  # before the file closes: the episode's last rows go in it
            if status is MotorStatus.RUNNING:
                status, reason = MotorStatus.READY, "job ended: torque off"
        if self._job.bind(job_id, owner) or ended:
            self._set_status(status, reason)

    def _forget_episodes(self) -> None:
        """Drop what a job set up (episode, ids, cached replies): the next job starts afresh."""
        if self._op is not None and self._op.kind == "reset":
            self.abort_procedure("the job ended")
        self._end_episode()
        self.motor.stop()
        self.episode_id = None  # (sequence numbers and late/watchdog flags restart per episode)
        self._replies.clear()

    def _publish_telemetry(self, owner: str, job_id: str, batch: TelemetryBatch) -> None:
        self._emit(TopicKind.NODE_JOB_TELEMETRY, batch, node=self.cfg.node_id, job=job_id)

    # ---------------------------------------------------------------------------- procedures
    def _on_selftest(self, req: SelfTestRequest) -> None:
        if self._op is not None or (self._episode_active and self.status is MotorStatus.RUNNING):
            self._emit(TopicKind.ENV_SELFTEST_REPLY, SelfTestReply(
                req.request_id, ok=False, ts=self._wall_clock(),
                details={"error": "busy: an episode or a reset is in progress"}))
            return
        self._forget_episodes()  # between jobs: the next one starts at episode 1
        self._safe_latch.clear()
        self.motor.set_state(math.pi, 0.0)  # a simulated pendulum starts at rest; no-op on hardware
        self._set_status(MotorStatus.RESETTING, "self-test")
        proc = selftest(self.params, self._limits, self.cfg.reset_timeout_s,
                        self.cfg.selftest_tol_rad)
        self._start_op(Operation("selftest", self.motor, proc, [req.request_id]))

    def _selftest_done(self, op: Operation, details: dict[str, Any]) -> None:
        ok = bool(details.get("ok"))
        if ok:
            self._set_status(MotorStatus.READY, None)
        else:
            self.fault(f"self-test failed: {details.get('error')}")
        for rid in op.request_ids:
            self._emit(TopicKind.ENV_SELFTEST_REPLY,
                       SelfTestReply(rid, ok=ok, ts=self._wall_clock(), details=details))

    def _start_op(self, op: Operation) -> None:
        self._op = op
        op.start()

    def _feed_op(self, op: Operation, theta: float, theta_dot: float, now: float) -> None:
        result = op.feed(theta, theta_dot, now, torque_off=self._safe_latch.is_set())
        if result is None:
            return
        self._op = None
        if op.kind == "reset":
            self._reset_done(op, result, theta, theta_dot)
        else:
            self._selftest_done(op, result)

    # -------------------------------------------------------------------------------- status
    def _make_state(self) -> MotorState:
        p = self.params
        return MotorState(self.status, self._wall_clock(), job_id=self._job.job_id,
                          episode_id=self.episode_id, reason=self.reason, rate_hz=self.cfg.rate_hz,
                          lockstep=self.lockstep, backend=self.motor.name,
                          calibration_id=p.calibration_id, max_action=p.max_action,
                          max_speed=p.max_speed, calibration_sha256=p.calibration_sha256 or None)

    def _set_status(self, status: MotorStatus, reason: str | None) -> None:
        self.status, self.reason = status, reason
        self.motor_state = self._make_state()
        self._emit(TopicKind.ENV_MOTOR_STATE, self.motor_state)

