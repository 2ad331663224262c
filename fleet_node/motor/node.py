"""The motor node's MQTT transport: serves the state machine over the node-local broker.

:class:`MotorNode` owns the paho client, the threads and the clock. It decodes each message on
paho's network thread and hands it to the :class:`~fleet_node.motor.machine.MotorMachine`; it
publishes what the machine emits. Actions and observations travel in their binary form (MQTT 5
content type, :mod:`gym_raas_mqtt.protocol.binary`); a JSON action is still accepted and answered
in JSON, so an env of an older version keeps working. An e-stop or the env's last will make the
motor safe at once on paho's thread (:meth:`MotorMachine.go_safe`), before the loop even sees the
message.

Real-time mode (a real or simulated pendulum at ``rate_hz``): a :class:`FixedRateClock` thread
ticks the machine; actions go through a one-slot mailbox to that thread, which applies a fresh one
*on arrival* (sub-millisecond after the observation it answers), other messages through a queue.

Lockstep mode (simulation only): no wall clock; paho's thread handles each message under a lock,
then a :class:`VirtualClock` ticks the machine while it has work (one period per action, a
procedure until it ends) and the observation goes out at once, so the bus backend reproduces the
in-process env bit for bit.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from typing import Any

import paho.mqtt.client as paho

from gym_raas_mqtt import protocol
from gym_raas_mqtt.calibration import load_calibration
from gym_raas_mqtt.errors import ConfigError, ProtocolError, RaasError
from gym_raas_mqtt.mqtt import (BrokerAddress, PackedProperties, Will, connect, content_type,
                                make_client, shutdown)
from gym_raas_mqtt.protocol import (ACTION_CONTENT_TYPE, OBSERVATION_CONTENT_TYPE, Action,
                                    EnvStatus, MotorState, MotorStatus, Observation, TopicKind,
                                    decode_action, encode_observation)
from fleet_node.motor.base import Motor
from fleet_node.motor.clock import FixedRateClock, LoopStats, VirtualClock, set_rt_priority
from fleet_node.motor.config import MotorConfig
from fleet_node.motor.gpio_motor import GpioMotor
from fleet_node.motor.lgpio_motor import LgpioMotor
from fleet_node.motor.machine import MotorMachine
from fleet_node.motor.pigpio_motor import PigpioMotor
from fleet_node.motor.sim_motor import SimMotor

log = logging.getLogger(__name__)

SUBSCRIPTIONS = ((TopicKind.ENV_ACT, 0), (TopicKind.ENV_RESET, 1), (TopicKind.ENV_STATE, 1),
                 (TopicKind.ENV_ESTOP, 1), (TopicKind.ENV_JOB, 1), (TopicKind.ENV_SELFTEST, 1))
"""What the motor node listens to on its local broker (matches broker_config.acl.motor_role)."""
LIVE_ONLY = (TopicKind.ENV_ACT, TopicKind.ENV_RESET)
"""Kinds obeyed only when sent live: a job may publish them retained (the broker cannot refuse),
and a retained one would be delivered again at every (re)subscription, long after its job."""


GPIO_MOTORS: dict[str, type[GpioMotor]] = {"pigpio": PigpioMotor, "lgpio": LgpioMotor}
"""The real pendulum's drivers by ``RAAS_MOTOR_BACKEND``; each reads its own ``RAAS_*`` settings."""


class MotorNodeError(RaasError, RuntimeError):
    """The motor node cannot start (broker unreachable or refused)."""


def build_motor(cfg: MotorConfig) -> Motor:
    """The motor driver chosen by ``cfg.backend``, with the robot's calibration.

    The simulated motor's model period is the loop period (1/rate_hz).

    Raises:
        ConfigError: bad calibration file.
        PigpioUnavailable: pigpio backend without the ``hardware`` extra, or pigpiod down.
        LgpioUnavailable: lgpio backend without lgpio, or the GPIO chip or a line unavailable.
    """
    params = load_calibration(cfg.calibration_file)
    driver = GPIO_MOTORS.get(cfg.backend)
    if driver is not None:
        return driver(params)
    if params.dt != cfg.period_s:
        params = params.replace(dt=cfg.period_s)
    return SimMotor(params, quantize=cfg.sim_quantize, deadband=cfg.sim_deadband)


class MotorNode:
    """The motor node of one fleet node.

    Args:
        cfg: settings (node id, local broker, rate, limits...).
        motor: the driver; default :func:`build_motor` (cfg.backend).
        address: local broker; default parsed from ``cfg.local_mqtt_url`` with the motor's
            username and password file.

    Attributes:
        machine: the state machine. stats: the loop's counters (:class:`LoopStats`).

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
        self.machine = MotorMachine(cfg, self.motor, self.stats, self._emit, wall_clock=time.time)
        self._clock = FixedRateClock(self.period, cfg.miss_tolerance_s, cfg.spin_s, self.stats)
        # the tick limit is a safety net only: every procedure times out well before it
        self._virtual = VirtualClock(self.period,
                                     int((cfg.reset_timeout_s * 2 + 10.0) / self.period))
        self._t = {kind: protocol.topic(kind, node=self.node_id) for kind in TopicKind
                   if protocol.TOPICS[kind].local}
        self._kinds = {self._t[kind]: kind for kind, _ in SUBSCRIPTIONS}  # exact topics: lookup
        self._t_obs = self._t[TopicKind.ENV_OBS]
        # Built and packed once: paho would re-pack a Properties object on every publish.
        self._obs_props = PackedProperties(OBSERVATION_CONTENT_TYPE)
        # Observations answer in the form of the latest action: an env of an older version (or a
        # tool driving the node with mosquitto_pub) sends JSON and gets JSON back.
        self._obs_binary = True
        self._lock = threading.RLock()  # lockstep: paho's thread runs the machine under it
        self._inbox: queue.SimpleQueue[tuple[TopicKind, Any]] = queue.SimpleQueue()
        self._slot_lock = threading.Lock()
        self._slot: Action | None = None
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._connect_rc: Any = None
        self._thread: threading.Thread | None = None
        self._client: paho.Client | None = None

    @property
    def lockstep(self) -> bool:
        """Simulation only: each action advances one period at once, no clock."""
        return self.cfg.lockstep

    @property
    def status(self) -> MotorStatus:
        """The motor's state (the machine's)."""
        return self.machine.status

    @property
    def reason(self) -> str | None:
        """Why the motor is in its state (None when all is well)."""
        return self.machine.reason

    @property
    def episode_id(self) -> int | None:
        """The current or last episode."""
        return self.machine.episode_id

    # -------------------------------------------------------------------------------- lifecycle
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
        self._clock.wake()

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
            self.machine.close()
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
        # A hand-wired paho client, not a Link: this is a hot loop (per-step latency). It owns
        # its network loop; a Link would add a decode on paho's thread and a queue hop per step.
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

    def _set_rt_priority(self) -> None:
        # Both the loop thread and paho's network thread get it: the loop needs the GIL, so a
        # normal-priority paho thread preempted while holding it would stall the loop.
        if not self.lockstep:
            set_rt_priority(self.cfg.rt_priority)

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
        client.publish(self._t[TopicKind.ENV_MOTOR_STATE], self.machine.motor_state.to_bytes(),
                       qos=1, retain=True)
        self._connected.set()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any,
                       properties: Any = None) -> None:
        if not self._stopping.is_set():
            # Without the broker nobody can command us: go safe until the next reset.
            self.machine.go_safe()
            log.warning("motor node lost the local broker (%s): torque off", rc)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            kind = self._kinds.get(message.topic)
            if kind is None:  # cannot happen with exact subscriptions; a broker bug would do it
                raise ProtocolError("not a topic the motor node serves")
            if message.retain and kind in LIVE_ONLY:
                raise ProtocolError("retained: a job left it behind; only live ones count")
            payload = message.payload
            ctype = content_type(message)
            if kind is TopicKind.ENV_ACT and ctype == ACTION_CONTENT_TYPE:
                msg = decode_action(payload)  # the hot path: the env's binary form
                self._obs_binary = True
            elif payload:
                msg = protocol.from_payload(protocol.TOPICS[kind].message, payload, ctype)
                if kind is TopicKind.ENV_ACT:
                    self._obs_binary = False
            else:
                msg = None
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
                self.machine.go_safe()  # safe at once, before the loop even sees it
            if self.lockstep:
                self._handle_lockstep(kind, msg)
            elif kind is TopicKind.ENV_ACT:
                with self._slot_lock:
                    self._slot = msg
                self._clock.wake()
            else:
                self._inbox.put((kind, msg))
                self._clock.wake()
        except Exception:  # a callback must never raise: it would kill paho's thread
            log.exception("error handling %s", kind.value)

    def _handle_lockstep(self, kind: TopicKind, msg: Any) -> None:
        """The message, then the virtual ticks its work needs (one per action)."""
        with self._lock:
            self.machine.handle(kind, msg)
            if not self._virtual.run(self.machine.tick, self.machine.needs_time):
                self.machine.abort_procedure("procedure did not end")

    # ----------------------------------------------------------------------------- the loop
    def _run_loop(self) -> None:
        gc.collect()
        gc.freeze()  # long-lived objects out of the collector's way: shorter pauses
        self._set_rt_priority()
        try:
            if self.lockstep:
                self._stopping.wait()
            else:
                self._clock.run(self.machine.tick, self._drain, self._stopping)
        except Exception:
            log.exception("motor loop crashed: torque off")
            self.machine.fault("motor loop crashed")
            raise

    def _drain(self) -> None:
        """Handle queued commands, then apply a fresh action if one arrived (real-time mode)."""
        while True:
            try:
                kind, msg = self._inbox.get_nowait()
            except queue.Empty:
                break
            try:
                self.machine.handle(kind, msg)
            except Exception:
                log.exception("error handling %s", kind.value)
        with self._slot_lock:
            action, self._slot = self._slot, None
        if action is not None:
            self.machine.handle(TopicKind.ENV_ACT, action)

    def _emit(self, kind: TopicKind, msg: protocol.Message, **ids: str) -> None:
        client = self._client
        if client is None:
            return
        if kind is TopicKind.ENV_OBS and self._obs_binary:  # the hot path: properties packed once
            assert isinstance(msg, Observation)
            client.publish(self._t_obs, encode_observation(msg), qos=0, properties=self._obs_props)
        else:
            spec = protocol.TOPICS[kind]
            name = protocol.topic(kind, **ids) if ids else self._t[kind]
            client.publish(name, msg.to_bytes(), qos=spec.qos, retain=spec.retain)
