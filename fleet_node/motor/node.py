"""The motor node: owns the motor and the clock, serves the env over the node-local broker.

Real-time mode (a real or simulated pendulum at ``rate_hz``): one thread runs a fixed-rate loop on
absolute deadlines ``start + k·period`` of ``time.monotonic`` (sleep until shortly before the
deadline, spin the rest, never ``sleep(dt)`` after work, never catch up by bursting: a stall skips
the ticks it covered and counts each as a deadline miss). Each tick samples the pendulum
(:meth:`Motor.read`) and publishes the :class:`Observation` of the action applied during the
period that just ended. Actions arrive on paho's thread and go through a one-slot mailbox to the
loop thread, which applies a fresh one *on arrival* (sub-millisecond after the observation it
answers) so the env gets one step per control period:

    tick k: sample s_k → publish Observation(seq=n-1, s_k) → env computes a_n → a_n applied
    tick k+1: sample s_{k+1} (a_n held for one period) → publish Observation(seq=n, s_{k+1}) → ...

An action that has not arrived by the next tick is *late*: the previous command is held, the
step's observation comes one tick later with ``deadline_miss`` set, and after
``watchdog_periods`` ticks without a fresh action the torque goes to zero.

Lockstep mode (simulation only): there is no clock; each Action advances the model exactly one
period and its Observation is published at once (from paho's thread: the work is a few µs of
physics), so the bus backend reproduces the in-process env bit for bit.

Safety lives here, never in user code: the action is clamped to ±max_action; zero torque on the
watchdog, on an EStop (until the next reset), on the env's last will, and on over-speed (a fault,
reported in MotorState and in the Observation); resets are closed-loop (see procedures.py).
"""

from __future__ import annotations

import array
import collections
import dataclasses
import gc
import logging
import math
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import paho.mqtt.client as paho

from gym_raas_mqtt import protocol
from gym_raas_mqtt.calibration import load_calibration
from gym_raas_mqtt.errors import ConfigError, ProtocolError, RaasError
from gym_raas_mqtt.mqtt import BrokerAddress, Will, connect, make_client, shutdown
from gym_raas_mqtt.physics import reward
from gym_raas_mqtt.protocol import (Action, EnvState, EnvStatus, EStop, JobBinding, MotorState,
                                    MotorStatus, Observation, ResetReply, ResetRequest,
                                    SelfTestReply, SelfTestRequest, TelemetryBatch, TopicKind)
from fleet_node.motor.base import Motor
from fleet_node.motor.config import MotorConfig
from fleet_node.motor.procedures import Procedure, SettleLimits, SettleResult, selftest, settle
from fleet_node.motor.telemetry import TelemetryRecorder, telemetry_path

log = logging.getLogger(__name__)

SUBSCRIPTIONS = ((TopicKind.ENV_ACT, 0), (TopicKind.ENV_RESET, 1), (TopicKind.ENV_STATE, 1),
                 (TopicKind.ENV_ESTOP, 1), (TopicKind.ENV_JOB, 1), (TopicKind.ENV_SELFTEST, 1))
"""What the motor node listens to on its local broker (matches broker_config.acl.motor_role)."""
REPLY_CACHE = 32
"""Reset replies kept for idempotent answers to duplicate requests (by episode id)."""
LATENESS_SAMPLES = 1_000_000
"""Tick lateness samples kept for statistics (8 MB; 14 h at 20 Hz, 17 min at 1 kHz)."""


class MotorNodeError(RaasError, RuntimeError):
    """The motor node cannot start (broker unreachable or refused)."""


def build_motor(cfg: MotorConfig) -> Motor:
    """The motor driver chosen by ``cfg.backend``, with the robot's calibration.

    The simulated motor's model period is the loop period (1/rate_hz).

    Raises:
        ConfigError: bad calibration file.
        ModuleNotFoundError: pigpio backend without the ``hardware`` extra.
    """
    params = load_calibration(cfg.calibration_file)
    if cfg.backend == "pigpio":
        from fleet_node.motor.pigpio_motor import PigpioMotor  # needs pigpio (hardware extra)

        return PigpioMotor(params)
    from fleet_node.motor.sim_motor import SimMotor

    if params.dt != cfg.period_s:
        params = params.replace(dt=cfg.period_s)
    return SimMotor(params, quantize=cfg.sim_quantize, deadband=cfg.sim_deadband)


@dataclass
class LoopStats:
    """Counters of the control loop (read them from any thread; written by the loop only).

    Attributes:
        ticks: ticks run. misses: deadline misses (late ticks plus ticks skipped after a stall).
        skipped: ticks skipped after a stall. late_actions: steps whose action came after the
        tick that should have sampled its result. watchdog_trips: torque cut for lack of
        actions. dropped: malformed or stale messages dropped. steps: actions served.
        lateness_s: per-tick start time
        minus deadline [s] (first :data:`LATENESS_SAMPLES` ticks).
    """

    ticks: int = 0
    misses: int = 0
    skipped: int = 0
    late_actions: int = 0
    watchdog_trips: int = 0
    dropped: int = 0
    steps: int = 0
    lateness_s: array.array = dataclasses.field(default_factory=lambda: array.array("d"))


@dataclass
class _Pending:
    """An action applied and waiting for the tick that samples its result."""

    seq: int
    desired: float
    applied: float
    pre: tuple[float, float, float]  # (θ, θ̇, t) the env saw when it chose the action
    late: bool


@dataclass
class _Op:
    """A running multi-period procedure (reset or self-test)."""

    kind: str  # "reset" | "selftest"
    proc: Procedure | None
    done: Callable[[Any, float, float], None]  # (result, θ, θ̇)
    episode_id: int | None = None
    request_ids: list[str] = dataclasses.field(default_factory=list)
    place: tuple[float, float] | None = None  # sim reset: set this state at the next tick
    timeout_s: float = 30.0


class MotorNode:
    """The motor node of one fleet node.

    Args:
        cfg: settings (node id, local broker, rate, limits...).
        motor: the driver; default :func:`build_motor` (cfg.backend).
        address: local broker; default parsed from ``cfg.local_mqtt_url`` with the motor's
            username and password file.

    Use :meth:`run` (blocks; the CLI) or :meth:`start`/:meth:`close` (a thread; tests, benches).
    """

    def __init__(self, cfg: MotorConfig, motor: Motor | None = None,
                 address: BrokerAddress | None = None) -> None:
        self.cfg = cfg
        self.motor = motor if motor is not None else build_motor(cfg)
        self.params = self.motor.params
        self.period = cfg.period_s
        if address is None:
            try:
                address = BrokerAddress.parse(cfg.local_mqtt_url, username=cfg.mqtt_username,
                                              password_file=cfg.mqtt_password_file)
            except OSError as e:
                raise ConfigError(f"RAAS_MOTOR_MQTT_PASSWORD_FILE: {e}") from e
        self.address = address
        self.node_id = cfg.node_id
        self.stats = LoopStats()
        self._limits = SettleLimits(cfg.reset_angle_tol_rad, cfg.reset_speed_tol_rad_s,
                                    cfg.reset_still_s)
        t = {kind: protocol.topic(kind, node=self.node_id) for kind in TopicKind
             if protocol.TOPICS[kind].local}
        self._t = t
        self._kinds = {t[kind]: kind for kind, _ in SUBSCRIPTIONS}  # exact topics: dict lookup
        # cross-thread plumbing
        self._lock = threading.RLock()  # lockstep: callbacks run the state machine under it
        self._inbox: queue.SimpleQueue[tuple[TopicKind, Any]] = queue.SimpleQueue()
        self._slot_lock = threading.Lock()
        self._slot: Action | None = None
        self._wake = threading.Event()
        self._safe_latch = threading.Event()  # set from paho's thread: no torque until reset
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._connect_rc: Any = None
        self._thread: threading.Thread | None = None
        self._client: paho.Client | None = None
        # state machine (loop thread, or paho thread under _lock in lockstep)
        self.status = MotorStatus.READY
        self.reason: str | None = None
        self.episode_id: int | None = None
        self._episode_active = False
        self._t0 = 0.0
        self._vt = 0.0  # lockstep virtual clock [s]
        self._now = time.monotonic()  # real-time: the current tick's time
        self._last_pub: tuple[float, float, float] = (math.pi, 0.0, 0.0)
        self._last_seq = 0
        self._pending: _Pending | None = None
        self._awaiting = False
        self._late = False
        self._ticks_since_apply = 0
        self._watchdog_tripped = False
        self._op: _Op | None = None
        self._replies: collections.OrderedDict[int, ResetReply] = collections.OrderedDict()
        self._recorder: TelemetryRecorder | None = None
        self._job_id: str | None = None
        self._state_msg: MotorState = self._make_state()

    # -------------------------------------------------------------------------------- lifecycle
    @property
    def lockstep(self) -> bool:
        return self.cfg.lockstep

    def start(self, timeout_s: float = 10.0) -> "MotorNode":
        """Connect and run the loop in a background thread; returns once the state is published.

        Raises:
            MotorNodeError: the broker is unreachable or refused the connection.
        """
        self._connect(timeout_s)
        self._thread = threading.Thread(target=self._run_loop, name=f"motor-{self.node_id}",
                                        daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        """Connect and run the loop in this thread until :meth:`request_stop` (or Ctrl-C)."""
        self._connect(10.0)
        try:
            self._run_loop()
        finally:
            self._shutdown()

    def request_stop(self) -> None:
        """Ask the loop to end (any thread, signal handlers included)."""
        self._stopping.set()
        self._wake.set()

    def close(self) -> None:
        """Stop the loop, zero the torque, publish ``lost`` (reason: stopped) and disconnect."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        self._shutdown()

    def _shutdown(self) -> None:
        self.motor.stop()
        with self._lock:
            if self._recorder is not None:
                self._recorder.close()
                self._recorder = None
        client, self._client = self._client, None
        if client is None:
            self.motor.close()
            return
        try:
            info = client.publish(self._t[TopicKind.ENV_MOTOR_STATE],
                                  MotorState(MotorStatus.LOST, time.time(),
                                             reason="motor node stopped").to_bytes(),
                                  qos=1, retain=True)
            info.wait_for_publish(2.0)
        except (RuntimeError, ValueError) as e:
            log.warning("could not publish the final motor state: %s", e)
        shutdown(client)
        self.motor.close()

    def _connect(self, timeout_s: float) -> None:
        will = Will(self._t[TopicKind.ENV_MOTOR_STATE],
                    MotorState(MotorStatus.LOST, time.time(), reason="motor node vanished").to_bytes())
        client = make_client(self.address, self.cfg.mqtt_client_id or f"motor-{self.node_id}",
                             will=will)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        self._client = client
        try:
            connect(client, self.cfg.keepalive_s)
        except OSError as e:
            raise MotorNodeError(f"cannot reach the local broker {self.address.url()}: {e}") from e
        client.loop_start()
        if not self._connected.wait(timeout_s):
            client.loop_stop()
            raise MotorNodeError(f"local broker {self.address.url()} refused or did not answer: "
                                 f"{self._connect_rc}")

    # ------------------------------------------------------------------------------ paho thread
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                    properties: Any = None) -> None:
        self._connect_rc = rc
        if rc.is_failure:
            log.error("local broker refused the motor node: %s", rc)
            return
        if not self._connected.is_set():
            self._set_rt_priority()  # paho's network thread, once
        client.subscribe([(self._t[kind], qos) for kind, qos in SUBSCRIPTIONS])
        client.publish(self._t[TopicKind.ENV_MOTOR_STATE], self._state_msg.to_bytes(), qos=1,
                       retain=True)
        self._connected.set()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                       properties: Any = None) -> None:
        if not self._stopping.is_set():
            # Without the broker nobody can command us: go safe until the next reset.
            self._safe_latch.set()
            self.motor.stop()
            log.warning("motor node lost the local broker (%s): torque off", rc)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            kind = self._kinds.get(message.topic)
            if kind is None:  # cannot happen with exact subscriptions; a broker bug would do it
                raise ProtocolError("not a topic the motor node serves")
            payload = message.payload
            msg = protocol.TOPICS[kind].message.from_bytes(payload) if payload else None
            if msg is None and kind not in (TopicKind.ENV_JOB, TopicKind.ENV_STATE):
                raise ProtocolError("empty payload")
        except ProtocolError as e:
            self.stats.dropped += 1
            log.warning("dropped message on %.120s: %s (payload %r)", message.topic, e,
                        bytes(message.payload[:80]))
            return
        try:
            if kind is TopicKind.ENV_ESTOP or (kind is TopicKind.ENV_STATE and msg is not None
                                               and msg.state is EnvStatus.LOST):
                self._safe_latch.set()  # safe at once, before the loop even sees it
                self.motor.stop()
            if self.lockstep:
                with self._lock:
                    self._handle(kind, msg, time.monotonic())
            elif kind is TopicKind.ENV_ACT:
                with self._slot_lock:
                    self._slot = msg
                self._wake.set()
            else:
                self._inbox.put((kind, msg))
                self._wake.set()
        except Exception:  # a callback must never raise: it would kill paho's thread
            log.exception("error handling %s", kind.value)

    # ----------------------------------------------------------------------------- the loop
    def _run_loop(self) -> None:
        gc.collect()
        gc.freeze()  # long-lived objects out of the collector's way: shorter pauses
        self._set_rt_priority()
        try:
            if self.lockstep:
                self._stopping.wait()
            else:
                self._run_realtime()
        except Exception:
            log.exception("motor loop crashed: torque off")
            self.motor.stop()
            self._set_status(MotorStatus.FAULT, "motor loop crashed")
            raise

    def _set_rt_priority(self) -> None:
        """SCHED_FIFO for the calling thread (Linux: pid 0 = this thread) when configured.

        Both the loop thread and paho's network thread get it: the loop needs the GIL, so a
        normal-priority paho thread preempted while holding it would stall the loop.
        """
        if not self.cfg.rt_priority or self.lockstep:
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.cfg.rt_priority))
        except (OSError, AttributeError) as e:
            log.warning("cannot use SCHED_FIFO priority %d: %s", self.cfg.rt_priority, e)

    def _run_realtime(self) -> None:
        period, tol, spin = self.period, self.cfg.miss_tolerance_s, self.cfg.spin_s
        # A thread holding the GIL keeps it up to the switch interval (5 ms by default) when the
        # loop wakes: bound that wait below the miss tolerance (process-wide setting).
        sys.setswitchinterval(min(sys.getswitchinterval(), max(tol / 2, 0.0001)))
        stats, lateness = self.stats, self.stats.lateness_s
        start = time.monotonic() + period
        k = 0
        while not self._stopping.is_set():
            deadline = start + k * period
            self._wait_until(deadline, spin)
            if self._stopping.is_set():
                break
            now = time.monotonic()
            late = now - deadline
            miss = late > tol
            self._tick(now, miss)
            stats.ticks += 1
            stats.misses += miss
            if len(lateness) < LATENESS_SAMPLES:
                lateness.append(late)
            # Next deadline on the grid; after a stall longer than a period skip the ticks it
            # covered (each a miss) instead of running them back to back.
            behind = int((time.monotonic() - start) / period)
            nxt = max(k + 1, behind)
            if nxt > k + 1:
                stats.skipped += nxt - k - 1
                stats.misses += nxt - k - 1
            k = nxt

    def _wait_until(self, deadline: float, spin: float) -> None:
        while True:
            self._drain()
            remaining = deadline - time.monotonic()
            if remaining <= spin or self._stopping.is_set():
                break
            if self._wake.wait(remaining - spin):
                self._wake.clear()
        while time.monotonic() < deadline:
            pass

    def _drain(self) -> None:
        """Handle queued commands, then apply a fresh action if one arrived (real-time mode)."""
        while True:
            try:
                kind, msg = self._inbox.get_nowait()
            except queue.Empty:
                break
            try:
                self._handle(kind, msg, time.monotonic())
            except Exception:
                log.exception("error handling %s", kind.value)
        with self._slot_lock:
            action, self._slot = self._slot, None
        if action is not None:
            self._on_action(action, time.monotonic())

    def _tick(self, now: float, miss: bool) -> None:
        theta, theta_dot = self.motor.read()
        self._now = now
        op = self._op
        if op is not None:
            self._feed_op(op, theta, theta_dot, now)
            return
        if abs(theta_dot) > self.cfg.overspeed_rad_s and self.status is not MotorStatus.FAULT:
            self._fault(f"over-speed: |θ̇| = {abs(theta_dot):.2f} rad/s > "
                        f"{self.cfg.overspeed_rad_s:g} rad/s")
        if not self._episode_active:
            return
        self._ticks_since_apply += 1  # the tick observing an action counts as the first
        pending = self._pending
        if pending is not None:
            self._pending = None
            self._observe(pending, theta, theta_dot, now - self._t0, miss or pending.late)
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

    # ---------------------------------------------------------------------- message handling
    def _handle(self, kind: TopicKind, msg: Any, now: float) -> None:
        if kind is TopicKind.ENV_ACT:
            self._on_action(msg, now)
        elif kind is TopicKind.ENV_RESET:
            self._on_reset(msg, now)
        elif kind is TopicKind.ENV_STATE:
            self._on_env_state(msg)
        elif kind is TopicKind.ENV_ESTOP:
            self._on_estop(msg)
        elif kind is TopicKind.ENV_JOB:
            self._on_job(msg)
        elif kind is TopicKind.ENV_SELFTEST:
            self._on_selftest(msg, now)

    def _fresh(self, action: Action) -> bool:
        if not self._episode_active or action.episode_id != self.episode_id:
            return False
        return action.seq > self._last_seq

    def _on_action(self, action: Action, now: float) -> None:
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
        if self.lockstep:
            theta, theta_dot = self.motor.read()
            self._vt += self.period
            if (abs(theta_dot) > self.cfg.overspeed_rad_s
                    and self.status is not MotorStatus.FAULT):
                self._fault(f"over-speed: |θ̇| = {abs(theta_dot):.2f} rad/s > "
                            f"{self.cfg.overspeed_rad_s:g} rad/s")
            # virtual time: seq periods since the episode started (exact, so reproducible)
            self._observe(_Pending(action.seq, desired, applied, self._last_pub, False),
                          theta, theta_dot, action.seq * self.period, False)
            return
        if self._pending is not None:  # a second action in one period supersedes the first
            log.debug("action seq %s superseded by %s", self._pending.seq, action.seq)
        if self._late:
            self.stats.late_actions += 1
        self._pending = _Pending(action.seq, desired, applied, self._last_pub, self._late)
        self._late = False
        self._awaiting = False
        self._ticks_since_apply = 0
        if self._watchdog_tripped:
            self._watchdog_tripped = False
            self._set_status(MotorStatus.RUNNING, None)

    def _observe(self, p: _Pending, theta: float, theta_dot: float, t: float,
                 miss: bool) -> None:
        """Publish the observation of action ``p`` and record its telemetry row."""
        fault = None if self.status is MotorStatus.RUNNING else (self.reason or self.status.value)
        obs = Observation(self.episode_id or 0, p.seq, theta, theta_dot, p.applied, t, miss, fault)
        self._publish(TopicKind.ENV_OBS, obs)
        self._last_pub = (theta, theta_dot, t)
        self._awaiting = True
        if self._recorder is not None:
            a = self.params.max_action
            u = -a if p.desired < -a else a if p.desired > a else p.desired
            th, thd, t_pre = p.pre
            self._recorder.record(self.episode_id or 0, (p.seq, t_pre, th, thd, p.desired,
                                                         p.applied, reward(th, thd, u), miss))

    def _on_reset(self, req: ResetRequest, now: float) -> None:
        cached = self._replies.get(req.episode_id)
        if cached is not None:  # duplicate: same answer
            self._publish(TopicKind.ENV_RESET_REPLY,
                          dataclasses.replace(cached, request_id=req.request_id))
            return
        op = self._op
        if op is not None and op.kind == "reset" and op.episode_id == req.episode_id:
            op.request_ids.append(req.request_id)  # answered when the running reset ends
            return
        if self.episode_id is not None and req.episode_id <= self.episode_id:
            self._publish(TopicKind.ENV_RESET_REPLY, ResetReply(
                req.request_id, req.episode_id, ok=False,
                error=f"episode id {req.episode_id} is not newer than {self.episode_id}"))
            return
        self._abort_op("preempted by a reset")
        self._end_episode()
        self._safe_latch.clear()  # a reset clears an e-stop or a fault
        self.motor.stop()
        self.episode_id = req.episode_id
        self._set_status(MotorStatus.RESETTING, None)
        timeout = min(req.timeout_s, self.cfg.reset_timeout_s)
        op = _Op("reset", None, self._reset_done, req.episode_id, [req.request_id],
                 timeout_s=timeout)
        if req.initial_state is not None:  # honoured by a simulation, closed loop on hardware
            op.place = (req.initial_state[0], req.initial_state[1])
        else:
            op.proc = settle(self._limits, timeout)
        self._start_op(op, now)

    def _reset_done(self, result: SettleResult, theta: float, theta_dot: float) -> None:
        op = self._op
        self._op = None
        assert op is not None and op.episode_id is not None
        if result.ok:
            reply = ResetReply("x", op.episode_id, True, result.theta, result.theta_dot, 0.0)
            self._begin_episode(result.theta, result.theta_dot)
            self._set_status(MotorStatus.RUNNING, None)
        else:
            reply = ResetReply("x", op.episode_id, False, theta, theta_dot, 0.0, result.error)
            self._fault(result.error or "reset failed")
        self._replies[op.episode_id] = reply
        while len(self._replies) > REPLY_CACHE:
            self._replies.popitem(last=False)
        for rid in op.request_ids:
            self._publish(TopicKind.ENV_RESET_REPLY, dataclasses.replace(reply, request_id=rid))

    def _begin_episode(self, theta: float, theta_dot: float) -> None:
        self._episode_active = True
        self._t0 = self._vt if self.lockstep else self._now
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
        if self._recorder is not None:
            self._recorder.flush()

    def _on_selftest(self, req: SelfTestRequest, now: float) -> None:
        if self._op is not None or (self._episode_active and self.status is MotorStatus.RUNNING):
            self._publish(TopicKind.ENV_SELFTEST_REPLY, SelfTestReply(
                req.request_id, ok=False, ts=time.time(),
                details={"error": "busy: an episode or a reset is in progress"}))
            return
        self._end_episode()
        self._safe_latch.clear()
        self.motor.stop()
        self.motor.set_state(math.pi, 0.0)  # a simulated pendulum starts at rest; no-op on hardware
        self._set_status(MotorStatus.RESETTING, "self-test")

        def done(details: dict[str, Any], theta: float, theta_dot: float) -> None:
            self._op = None
            ok = bool(details.get("ok"))
            if ok:
                self._set_status(MotorStatus.READY, None)
            else:
                self._fault(f"self-test failed: {details.get('error')}")
            self._publish(TopicKind.ENV_SELFTEST_REPLY,
                          SelfTestReply(req.request_id, ok=ok, ts=time.time(), details=details))

        proc = selftest(self.params, self._limits, self.cfg.reset_timeout_s,
                        self.cfg.selftest_tol_rad)
        self._start_op(_Op("selftest", proc, done), now)

    def _on_env_state(self, msg: EnvState | None) -> None:
        if msg is None or msg.state not in (EnvStatus.LOST, EnvStatus.IDLE):
            return
        if self._op is not None and self._op.kind == "reset":
            self._abort_op(f"env {msg.state.value}")
        if self._episode_active:
            self.motor.stop()
            self._end_episode()
            why = "env lost: torque off" if msg.state is EnvStatus.LOST else "env idle"
            if self.status is MotorStatus.RUNNING:
                self._set_status(MotorStatus.READY, why)

    def _on_estop(self, msg: EStop) -> None:
        self.motor.stop()
        self._safe_latch.set()
        self._abort_op(f"e-stop: {msg.reason}")
        self._set_status(MotorStatus.ESTOP, f"e-stop: {msg.reason}")

    def _on_job(self, msg: JobBinding | None) -> None:
        job_id = msg.job_id if msg is not None else None
        if job_id == self._job_id:
            return
        if self._recorder is not None:
            self._recorder.close()
            self._recorder = None
        self._job_id = job_id
        if job_id is not None:
            owner = msg.owner if msg is not None else None
            self._recorder = TelemetryRecorder(
                telemetry_path(self.cfg.data_dir, job_id), job_id, owner or "unknown",
                self.node_id, self._telemetry_publisher(job_id, owner), self.cfg.telemetry_batch)
        self._set_status(self.status, self.reason)

    def _telemetry_publisher(self, job_id: str,
                             owner: str | None) -> Callable[[TelemetryBatch], None]:
        if owner is None:
            log.warning("job %s bound without an owner: telemetry recorded, not published", job_id)
            return lambda batch: None
        name = protocol.topic(TopicKind.JOB_TELEMETRY, owner=owner, job=job_id)

        def publish(batch: TelemetryBatch) -> None:
            client = self._client
            if client is not None:
                client.publish(name, batch.to_bytes(), qos=0)
        return publish

    # -------------------------------------------------------------------- procedures, status
    def _start_op(self, op: _Op, now: float) -> None:
        self._op = op
        if op.proc is not None:
            self.motor.apply(next(op.proc))
        if self.lockstep:
            self._run_op_virtually(op)

    def _feed_op(self, op: _Op, theta: float, theta_dot: float, now: float) -> None:
        """One period of a procedure (real-time: called at each tick)."""
        if op.place is not None and self._place(op, now):
            return
        assert op.proc is not None
        try:
            u = op.proc.send((theta, theta_dot, now))
        except StopIteration as e:
            self.motor.stop()
            op.done(e.value, theta, theta_dot)
            return
        if self._safe_latch.is_set():
            self.motor.stop()
        else:
            self.motor.apply(u)

    def _place(self, op: _Op, now: float) -> bool:
        """Sim reset: place the pendulum at the requested state (True, reset done); on hardware
        fall back to the closed-loop reset (False, the procedure starts now)."""
        assert op.place is not None
        theta, theta_dot = op.place
        op.place = None
        if self.motor.set_state(theta, theta_dot):
            op.done(SettleResult(True, theta, theta_dot, now, 0.0), theta, theta_dot)
            return True
        op.proc = settle(self._limits, op.timeout_s)
        self.motor.apply(next(op.proc))
        return False

    def _run_op_virtually(self, op: _Op) -> None:
        """Lockstep: run the procedure on a simulated clock until it ends."""
        if op.place is not None and self._place(op, self._vt):
            return
        limit = int((self.cfg.reset_timeout_s * 2 + 10.0) / self.period)
        for _ in range(limit):
            if self._op is not op:
                return
            theta, theta_dot = self.motor.read()
            self._vt += self.period
            self._feed_op(op, theta, theta_dot, self._vt)
        if self._op is op:  # cannot happen: every procedure has a timeout
            self._abort_op("procedure did not end")

    def _abort_op(self, why: str) -> None:
        op, self._op = self._op, None
        if op is None:
            return
        self.motor.stop()
        if op.kind == "reset" and op.episode_id is not None:
            for rid in op.request_ids:
                self._publish(TopicKind.ENV_RESET_REPLY, ResetReply(
                    rid, op.episode_id, ok=False, error=f"reset aborted: {why}"))
        elif op.kind == "selftest":
            op.done({"ok": False, "error": f"self-test aborted: {why}"}, math.nan, math.nan)

    def _fault(self, reason: str) -> None:
        log.error("motor fault: %s", reason)
        self.motor.stop()
        self._safe_latch.set()
        self._set_status(MotorStatus.FAULT, reason)

    def _make_state(self) -> MotorState:
        p = self.params
        return MotorState(self.status, time.time(), job_id=self._job_id,
                          episode_id=self.episode_id, reason=self.reason, rate_hz=self.cfg.rate_hz,
                          lockstep=self.lockstep, backend=self.motor.name,
                          calibration_id=p.calibration_id, max_action=p.max_action,
                          max_speed=p.max_speed)

    def _set_status(self, status: MotorStatus, reason: str | None) -> None:
        self.status, self.reason = status, reason
        self._state_msg = self._make_state()
        client = self._client
        if client is not None:
            client.publish(self._t[TopicKind.ENV_MOTOR_STATE], self._state_msg.to_bytes(), qos=1,
                           retain=True)

    def _publish(self, kind: TopicKind, msg: protocol.Message) -> None:
        client = self._client
        if client is not None:
            spec = protocol.TOPICS[kind]
            client.publish(self._t[kind], msg.to_bytes(), qos=spec.qos, retain=spec.retain)
