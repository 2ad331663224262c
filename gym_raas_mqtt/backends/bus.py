"""The bus backend: the env drives a motor node over the node-local MQTT broker.

Wire contract (``gym_raas_mqtt.protocol``): the env publishes its retained :class:`EnvState` (last
will ``lost``, so the motor goes safe at once if this process dies), a correlated
:class:`ResetRequest` per episode, and one :class:`Action` per step (QoS 0, message expiry 1 s);
the motor node answers with a :class:`ResetReply` and one :class:`Observation` per action, carrying
the action's ``seq``. Actions and observations travel in their binary form (MQTT 5 content type,
see :mod:`gym_raas_mqtt.protocol.binary`); a JSON observation is still accepted. The motor node's
clock sets real time: nothing here sleeps, and a late step is reported in
``info["deadline_miss"]``, never hidden. Every wait has a deadline and ends in
:class:`BackendError`: a missing motor node is detected within ``connect_timeout_s`` (≤ 1 s).
"""

from __future__ import annotations

import collections
import logging
import select
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from paho.mqtt.enums import MQTTErrorCode

from gym_raas_mqtt import protocol
from gym_raas_mqtt.backends.base import step_info
from gym_raas_mqtt.config import NODE_ID, load, read_secret, setting
from gym_raas_mqtt.errors import BackendError, ConfigError, MotorFault, ProtocolError
from gym_raas_mqtt.mqtt import (BrokerAddress, PackedProperties, Will, connect, content_type,
                                make_client)
from gym_raas_mqtt.physics import DEFAULT_PARAMS, PendulumParams
from gym_raas_mqtt.protocol import (ACTION_CONTENT_TYPE, OBSERVATION_CONTENT_TYPE, EnvState,
                                    EnvStatus, MotorState, MotorStatus, Observation, ResetReply,
                                    ResetRequest, TopicKind, decode_observation, pack_action)

log = logging.getLogger(__name__)

ACTION_EXPIRY_S = 1
"""Message expiry of an Action [s]: the broker drops it rather than deliver it stale."""


@dataclass(frozen=True)
class BusConfig:
    """Where the env finds its motor node; set by the fleet node inside a job container."""

    mqtt_url: str = setting("RAAS_MQTT_URL", "unix:///run/raas/local.sock",
                            "node-local broker (unix:///path or mqtt://host:port)")
    node_id: str = NODE_ID.field()  # the node whose motor node to drive
    username: str | None = setting("RAAS_MQTT_USERNAME", None, "MQTT user name")
    password: str | None = setting("RAAS_MQTT_PASSWORD", None,
                                   "MQTT password, literal or file:/path", secret=True)
    password_file: Path | None = setting("RAAS_MQTT_PASSWORD_FILE", None,
                                         "file holding the MQTT password")
    client_id: str | None = setting("RAAS_MQTT_CLIENT_ID", None,
                                    "MQTT client id (default: the user name, the one id the "
                                    "broker allows a job's login; random env-<hex> without one)")
    connect_timeout_s: float = setting("RAAS_MQTT_CONNECT_TIMEOUT_S", 1.0,
                                       "connect + find the motor node, else BackendError",
                                       unit="s")
    step_timeout_s: float = setting("RAAS_STEP_TIMEOUT_S", 1.0,
                                    "longest wait for one step's observation", unit="s")
    reset_timeout_s: float = setting("RAAS_RESET_TIMEOUT_S", 60.0,
                                     "longest closed-loop reset the env waits for", unit="s")
    keepalive_s: int = setting("RAAS_MQTT_KEEPALIVE_S", 5,
                               "MQTT keepalive (a hung env is declared lost after 1.5×)",
                               unit="s")

    def __post_init__(self) -> None:
        if not protocol.ID_PATTERN.match(self.node_id):
            raise ConfigError(f"RAAS_NODE_ID={self.node_id!r} is not a valid node id")
        if not 0 < self.connect_timeout_s <= 1.0:
            raise ConfigError("RAAS_MQTT_CONNECT_TIMEOUT_S must be in (0, 1] s")
        if self.step_timeout_s <= 0 or self.reset_timeout_s <= 0:
            raise ConfigError("step and reset timeouts must be positive")

    def address(self) -> BrokerAddress:
        """The broker address with credentials.

        Raises:
            ConfigError: bad URL, or the password file cannot be read.
        """
        try:
            return BrokerAddress.parse(self.mqtt_url, username=self.username,
                                       password=read_secret(self.password),
                                       password_file=self.password_file)
        except OSError as e:
            raise ConfigError(f"cannot read the MQTT password: {e}") from e


class BusBackend:
    """A pendulum behind a motor node, reached through the node-local broker.

    Network I/O runs in the caller's thread: ``step()`` writes its Action and reads the socket
    itself until the Observation is there (no hand-over to paho's network thread and back, which
    costs two thread wake-ups per step). Between calls a small service thread keeps the session
    alive (PINGREQ/PINGRESP), so a long pause in user code does not drop the connection. Both
    hold one lock while touching the client.

    Args:
        config: where and as whom to connect.
        params: fallback model; dt (1/rate_hz), max_action, max_speed and calibration_id are
            replaced by what the motor node announces in its retained MotorState.

    Raises:
        BackendError: the broker is unreachable or refuses, or no live motor node announced
            itself within ``config.connect_timeout_s``.
    """

    name = "bus"

    def __init__(self, config: BusConfig, params: PendulumParams = DEFAULT_PARAMS) -> None:
        self.config = config
        node = config.node_id
        self._t_act = protocol.topic(TopicKind.ENV_ACT, node=node)
        self._t_obs = protocol.topic(TopicKind.ENV_OBS, node=node)
        self._t_reset = protocol.topic(TopicKind.ENV_RESET, node=node)
        self._t_reply = protocol.topic(TopicKind.ENV_RESET_REPLY, node=node)
        self._t_motor = protocol.topic(TopicKind.ENV_MOTOR_STATE, node=node)
        self._t_env = protocol.topic(TopicKind.ENV_STATE, node=node)
        # Built and packed once: paho would re-pack a Properties object on every publish.
        self._act_props = PackedProperties(ACTION_CONTENT_TYPE, ACTION_EXPIRY_S)
        self._obs: collections.deque[Observation] = collections.deque()
        self._replies: collections.deque[ResetReply] = collections.deque()
        self._motor_state: MotorState | None = None
        self._connect_rc: Any = None
        self._episode: int | None = None
        self._seq = 0
        self._found: Observation | None = None  # the observation step() waits for
        self._closed = False
        self._io = threading.Lock()  # one thread at a time drives the client
        self._stop = threading.Event()
        address = config.address()
        self._address = address
        will = Will(self._t_env, EnvState(EnvStatus.LOST, time.time()).to_bytes())
        # A hand-wired paho client, not a Link: Link runs paho's network thread, and this hot loop
        # reads the socket in the caller's thread instead (see above).
        # A job's login may connect only with its own client id: its username.
        cid = config.client_id or address.username or f"env-{uuid.uuid4().hex[:12]}"
        client = make_client(address, cid, will=will)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.connect_timeout = config.connect_timeout_s
        self._client = client
        deadline = time.monotonic() + config.connect_timeout_s
        try:
            connect(client, config.keepalive_s)
        except (OSError, ValueError) as e:
            raise BackendError(f"cannot reach the local broker {address.url()}: {e}") from e
        try:
            with self._io:
                self._pump(lambda: self._connect_rc is not None, deadline)
                if self._connect_rc is None or self._connect_rc.is_failure:
                    raise BackendError(
                        f"local broker {address.url()} did not accept the connection within "
                        f"{config.connect_timeout_s:g} s ({self._connect_rc})")
                if not self._pump(lambda: self._motor_state is not None, deadline):
                    raise BackendError(f"no motor node for node {node!r} on {address.url()}: "
                                       f"no motor state within {config.connect_timeout_s:g} s")
            ms = self._motor_state
            assert ms is not None
            if ms.state is MotorStatus.LOST:
                raise BackendError(f"the motor node of {node!r} is not running "
                                   f"({ms.reason or 'lost'})")
        except BackendError:
            client.disconnect()  # paho closes the socket once DISCONNECT is written
            raise
        self.params = self._params_from(ms, params)
        with self._io:
            self._publish_env(EnvStatus.IDLE)
        self._service = threading.Thread(target=self._keep_alive, name="raas-env-keepalive",
                                         daemon=True)
        self._service.start()

    @classmethod
    def from_env(cls, params: PendulumParams = DEFAULT_PARAMS) -> "BusBackend":
        """Build from ``RAAS_*`` environment variables (see :class:`BusConfig`)."""
        return cls(load(BusConfig), params)

    @staticmethod
    def _params_from(ms: MotorState, params: PendulumParams) -> PendulumParams:
        changes: dict[str, Any] = {}
        if ms.rate_hz:
            changes["dt"] = 1.0 / ms.rate_hz
        if ms.calibration_id:
            changes["calibration_id"] = ms.calibration_id
        if ms.max_action:
            changes["max_action"] = ms.max_action
        if ms.max_speed:
            changes["max_speed"] = ms.max_speed
        return params.replace(**changes)

    @property
    def motor_state(self) -> MotorState | None:
        """The motor node's latest announced state."""
        return self._motor_state

    # ------------------------------------------------------------------------- network I/O
    def _pump(self, done: Callable[[], bool], deadline: float) -> bool:
        """Read and write the socket (caller holds ``_io``) until ``done()`` or ``deadline``.

        Returns:
            ``done()`` at the end.

        Raises:
            BackendError: the connection is lost.
        """
        client = self._client
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            sock = client.socket()
            if sock is None:
                raise BackendError("lost the connection to the local broker")
            readable, _, _ = select.select([sock], [], [], remaining)
            if readable:
                rc = client.loop_read()
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    if self._connect_rc is not None and self._connect_rc.is_failure:
                        return done()  # refused: the caller reports the CONNACK reason
                    raise BackendError(f"lost the connection to the local broker ({rc})")
            if client.want_write():
                client.loop_write()
        return True

    def _keep_alive(self) -> None:
        """Between calls: answer the broker and send PINGREQs so the session stays up."""
        client = self._client
        while not self._stop.wait(0.25):
            with self._io:
                sock = client.socket()
                if sock is None:
                    return
                try:
                    if select.select([sock], [], [], 0)[0]:
                        client.loop_read()
                    if client.want_write():
                        client.loop_write()
                    client.loop_misc()
                except (OSError, ValueError) as e:  # socket closed under us: the env is done
                    log.warning("env keep-alive stopped: %s", e)
                    return

    # ------------------------------------------------------------------------ callbacks
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any,
                    properties: Any = None) -> None:
        self._connect_rc = rc
        if not rc.is_failure:
            client.subscribe([(self._t_motor, 1), (self._t_obs, 0), (self._t_reply, 1)])

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        topic = message.topic
        try:
            if topic == self._t_obs:
                ctype = content_type(message)
                self._obs.append(decode_observation(message.payload)
                                 if ctype == OBSERVATION_CONTENT_TYPE  # the motor node's form
                                 else protocol.from_payload(Observation, message.payload, ctype))
            elif topic == self._t_reply:
                self._replies.append(ResetReply.from_bytes(message.payload))
            elif topic == self._t_motor and message.payload:
                self._motor_state = MotorState.from_bytes(message.payload)
        except ProtocolError as e:
            log.warning("dropped message on %.120s: %s (payload %r)", topic, e,
                        bytes(message.payload[:80]))
        except Exception:  # never let a callback break the client
            log.exception("error handling a message on %.120s", topic)

    # ---------------------------------------------------------------------------- Backend
    def _publish_env(self, state: EnvStatus) -> Any:
        return self._client.publish(
            self._t_env, EnvState(state, time.time(), self._episode).to_bytes(), qos=1,
            retain=True)

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("the bus backend is closed")

    def _motor_lost(self) -> bool:
        ms = self._motor_state
        return ms is not None and ms.state is MotorStatus.LOST

    def reset(self, initial_state: tuple[float, float]) -> tuple[float, float, dict[str, Any]]:
        """Start a new episode; a simulated motor starts at ``initial_state``, a real one performs
        its closed-loop reset (up to ``reset_timeout_s``) and reports where it hangs.

        Raises:
            MotorFault: the motor node refused or failed the reset.
            BackendError: no reply within the timeout, or the motor node is gone.
        """
        self._check_open()
        with self._io:
            if self._motor_lost():
                raise BackendError(f"the motor node is lost ({self._motor_state.reason})")
            ms = self._motor_state
            episode = max(self._episode or 0, (ms.episode_id if ms else None) or 0) + 1
            self._episode = episode
            self._seq = 0
            timeout = self.config.reset_timeout_s
            request = ResetRequest(request_id=uuid.uuid4().hex[:16], episode_id=episode,
                                   ts=time.time(), timeout_s=timeout,
                                   initial_state=(float(initial_state[0]),
                                                  float(initial_state[1])))
            self._publish_env(EnvStatus.RESETTING)
            self._client.publish(self._t_reset, request.to_bytes(), qos=1)
            replies = self._replies

            def answered() -> bool:
                while replies and replies[0].request_id != request.request_id:
                    replies.popleft()  # an earlier request's answer
                return bool(replies) or self._motor_lost()

            if not self._pump(answered, time.monotonic() + timeout + 2.0):
                raise BackendError(f"no reset reply from the motor node within {timeout:g} s")
            if not replies:
                raise BackendError(f"the motor node vanished ({self._motor_state.reason})")
            reply = replies.popleft()
            if not reply.ok:
                raise MotorFault(f"reset failed: {reply.error}")
            self._obs.clear()  # observations of an earlier episode are of no use now
            self._publish_env(EnvStatus.RUNNING)
        return reply.theta, reply.theta_dot, {"episode_id": episode}

    def step(self, u: float) -> tuple[float, float, float, dict[str, Any]]:
        """Send action ``u`` for the next control period and wait for its observation.

        Returns:
            (θ [rad], θ̇ [rad/s], applied u, info) with info ``deadline_miss`` (bool), ``t`` [s since
            the episode started, motor clock], ``u_applied`` and ``fault`` (why the motor went
            safe, else None; the env then truncates the episode).

        Raises:
            BackendError: step before reset, no observation within ``step_timeout_s``, or the
                motor node vanished.
        """
        self._check_open()
        episode = self._episode
        if episode is None:
            raise BackendError("step() before reset()")
        self._seq += 1
        seq = self._seq
        self._found = None
        with self._io:
            self._client.publish(self._t_act, pack_action(episode, seq, u), qos=0,
                                 properties=self._act_props)
            if not self._pump(self._observed, time.monotonic() + self.config.step_timeout_s):
                raise BackendError(f"no observation for step {seq} within "
                                   f"{self.config.step_timeout_s:g} s: motor node too slow or "
                                   f"gone")
        obs = self._found
        if obs is None:
            ms = self._motor_state
            raise BackendError(f"the motor node vanished ({ms.reason if ms else 'lost'})")
        info = step_info(obs.t, obs.u_applied, obs.deadline_miss, obs.fault or None)
        return obs.theta, obs.theta_dot, obs.u_applied, info

    def _observed(self) -> bool:
        """``step()``'s wait condition: its observation arrived (kept in ``_found``), or the
        motor node is lost. Older steps' (stale) and other episodes' observations are dropped."""
        pending = self._obs
        while pending:
            obs = pending.popleft()
            if obs.seq == self._seq and obs.episode_id == self._episode:
                self._found = obs
                return True
        return self._motor_lost()

    def close(self) -> None:
        """Say ``idle`` (the motor goes safe), then disconnect; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with self._io:
            try:
                info = self._publish_env(EnvStatus.IDLE)
                self._pump(info.is_published, time.monotonic() + 1.0)
            except (BackendError, RuntimeError, ValueError) as e:
                log.warning("could not publish the env's final state: %s", e)
            self._client.disconnect()  # paho closes the socket once DISCONNECT is written
        self._service.join(1.0)
