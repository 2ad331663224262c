"""Messages on a node-local broker: the env in the job container, the motor node and the agent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gym_raas_mqtt.protocol.codec import Message, id_field
from gym_raas_mqtt.protocol.states import EnvStatus, MotorStatus


@dataclass(frozen=True)
class MotorState(Message):
    """The motor node's retained state; its will is ``lost``."""

    state: MotorStatus
    ts: float
    job_id: str | None = id_field(default=None)
    episode_id: int | None = None
    reason: str | None = None
    rate_hz: float | None = None
    lockstep: bool = False
    # What the env's bus backend takes as its params (dt = 1/rate_hz); None from older nodes.
    backend: str | None = None  # "sim" or "pigpio"
    calibration_id: str | None = None
    calibration_sha256: str | None = None  # of the calibration file (see PendulumParams)
    max_action: float | None = None  # |u| limit the motor node clamps to
    max_speed: float | None = None  # rad/s, observation bound


@dataclass(frozen=True)
class EnvState(Message):
    """The env client's retained state; its will (``lost``) makes the motor safe at once."""

    state: EnvStatus
    ts: float
    episode_id: int | None = None


@dataclass(frozen=True)
class ResetRequest(Message):
    """Env → motor: start episode ``episode_id``. Idempotent by episode id.

    ``initial_state`` = (θ [rad], θ̇ [rad/s]) is honoured by simulated motors only; a real pendulum
    performs its closed-loop reset and reports where it actually is.
    """

    request_id: str = id_field()
    episode_id: int = 1
    ts: float = 0.0
    initial_state: tuple[float, ...] | None = None
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.initial_state is not None and len(self.initial_state) != 2:
            raise ValueError("initial_state must be (theta, theta_dot)")


@dataclass(frozen=True)
class ResetReply(Message):
    """Motor → env: the episode's first state, or why the reset failed."""

    request_id: str = id_field()
    episode_id: int = 1
    ok: bool = True
    theta: float = 0.0  # rad, 0 = upright
    theta_dot: float = 0.0  # rad/s
    t: float = 0.0  # s, motor clock
    error: str | None = None


@dataclass(frozen=True)
class Action(Message):
    """Env → motor: the action for step ``seq`` of ``episode_id`` (QoS 0, expiry 1 s)."""

    episode_id: int
    seq: int
    action: float  # desired u, N·m-equivalent; the motor node clamps to [-2, 2]


@dataclass(frozen=True)
class Observation(Message):
    """Motor → env: the state after applying action ``seq`` for one control period."""

    episode_id: int
    seq: int
    theta: float  # rad, 0 = upright, unwrapped
    theta_dot: float  # rad/s
    u_applied: float  # what the motor actually got after clamping and safety
    t: float  # s since the episode started, motor clock
    deadline_miss: bool = False
    fault: str | None = None  # set when the motor node went safe during this step


@dataclass(frozen=True)
class EStop(Message):
    """Agent/operator → motor: stop now (zero torque) until the next reset."""

    reason: str
    ts: float


@dataclass(frozen=True)
class JobBinding(Message):
    """Agent → motor (retained): which job the motor node records for; ``job_id=None`` unbinds."""

    ts: float
    job_id: str | None = id_field(default=None)
    owner: str | None = id_field(default=None)


@dataclass(frozen=True)
class SelfTestRequest(Message):
    """Agent → motor: reset closed-loop, then run the self-test excitation."""

    request_id: str = id_field()
    ts: float = 0.0


@dataclass(frozen=True)
class SelfTestReply(Message):
    """Motor → agent: the self-test verdict and its measurements."""

    request_id: str = id_field()
    ok: bool = True
    ts: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
