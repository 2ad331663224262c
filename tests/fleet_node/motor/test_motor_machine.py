"""The motor node's state machine alone: no broker, no threads; time and outputs are injected."""

from __future__ import annotations

import math

import pytest

from fleet_node.motor.clock import LoopStats, VirtualClock
from fleet_node.motor.config import MotorConfig
from fleet_node.motor.machine import MotorMachine
from fleet_node.motor.sim_motor import SimMotor
from gym_raas_mqtt import physics
from gym_raas_mqtt.physics import DEFAULT_PARAMS
from gym_raas_mqtt.protocol import (Action, EnvState, EnvStatus, EStop, MotorStatus, ResetRequest,
                                    TopicKind)

K = TopicKind


class Rig:
    """A machine on a SimMotor, with every emitted message recorded as (kind, message, ids)."""

    def __init__(self, tmp_path, **fields) -> None:
        self.cfg = MotorConfig(node_id="n1", data_dir=tmp_path, **fields)
        self.motor = SimMotor(DEFAULT_PARAMS)
        self.stats = LoopStats()
        self.out: list[tuple[TopicKind, object, dict]] = []
        self.machine = MotorMachine(self.cfg, self.motor, self.stats,
                                    lambda kind, msg, **ids: self.out.append((kind, msg, ids)),
                                    wall_clock=lambda: 1234.5)
        self.now = 100.0  # the real-time clock, advanced by hand

    def tick(self, miss: bool = False) -> None:
        self.now += self.cfg.period_s
        self.machine.tick(self.now, miss)

    def sent(self, kind: TopicKind) -> list:
        return [m for k, m, _ in self.out if k is kind]

    def reset(self, episode: int, state=(math.pi, 0.0)) -> None:
        self.machine.handle(K.ENV_RESET, ResetRequest(f"r{episode}", episode, 0.0, state))
        self.tick()  # the sim reset places the pendulum at the next tick
        assert self.sent(K.ENV_RESET_REPLY)[-1].ok


def test_real_time_action_is_clamped_and_observed_at_the_next_tick(tmp_path):
    rig = Rig(tmp_path)
    rig.reset(1)
    start = rig.now
    rig.machine.handle(K.ENV_ACT, Action(1, 1, 9.0))
    assert rig.motor.command == 2.0 and not rig.sent(K.ENV_OBS)
    rig.tick()
    [obs] = rig.sent(K.ENV_OBS)
    assert (obs.seq, obs.u_applied, obs.deadline_miss, obs.fault) == (1, 2.0, False, None)
    assert (obs.theta, obs.theta_dot) == physics.step(DEFAULT_PARAMS, math.pi, 0.0, 2.0)
    assert obs.t == rig.now - start


def test_late_action_is_flagged_and_the_watchdog_cuts_torque(tmp_path):
    rig = Rig(tmp_path, watchdog_periods=3)
    rig.reset(1)
    rig.machine.handle(K.ENV_ACT, Action(1, 1, 1.0))
    rig.tick()
    rig.tick()  # no answer to observation 1 in this period
    rig.machine.handle(K.ENV_ACT, Action(1, 2, 1.0))
    rig.tick()
    assert rig.sent(K.ENV_OBS)[-1].deadline_miss and rig.stats.late_actions == 1
    rig.tick()  # the tick that observed action 2 was the first since it came
    assert rig.motor.command == 1.0 and rig.stats.watchdog_trips == 0
    rig.tick()  # the third
    assert rig.motor.command == 0.0 and rig.stats.watchdog_trips == 1
    assert "watchdog" in rig.sent(K.ENV_MOTOR_STATE)[-1].reason


def test_overspeed_is_a_latched_fault_until_the_next_reset(tmp_path):
    rig = Rig(tmp_path, overspeed_rad_s=1.0)
    rig.reset(1, (math.pi, 5.0))
    rig.machine.handle(K.ENV_ACT, Action(1, 1, 1.0))
    rig.tick()
    obs = rig.sent(K.ENV_OBS)[-1]
    assert "over-speed" in obs.fault and rig.machine.status is MotorStatus.FAULT
    rig.machine.handle(K.ENV_ACT, Action(1, 2, 1.0))
    assert rig.motor.command == 0.0
    rig.reset(2)
    assert rig.machine.status is MotorStatus.RUNNING


def test_estop_and_env_lost(tmp_path):
    rig = Rig(tmp_path)
    rig.reset(1)
    rig.machine.handle(K.ENV_ACT, Action(1, 1, 1.5))
    rig.machine.go_safe()  # the transport's fast path, from paho's thread
    assert rig.motor.command == 0.0
    rig.machine.handle(K.ENV_ESTOP, EStop("test", 0.0))
    assert rig.machine.status is MotorStatus.ESTOP
    rig.tick()
    assert rig.sent(K.ENV_OBS)[-1].u_applied == 1.5  # applied before the e-stop
    rig.machine.handle(K.ENV_ACT, Action(1, 2, 1.5))
    assert rig.motor.command == 0.0
    rig.reset(2)
    rig.machine.handle(K.ENV_STATE, EnvState(EnvStatus.LOST, 0.0, 2))
    assert rig.machine.status is MotorStatus.READY and "env lost" in rig.machine.reason
    assert not rig.machine.needs_time()


@pytest.mark.parametrize("gap", [False, True])
def test_lockstep_time_is_seq_periods_since_the_episode_began(tmp_path, gap):
    rig = Rig(tmp_path, lockstep=True)
    clock = VirtualClock(rig.cfg.period_s, 1000)
    rig.machine.handle(K.ENV_RESET, ResetRequest("r", 1, 0.0, (3.0, 0.0)))
    assert clock.run(rig.machine.tick, rig.machine.needs_time)
    seqs = [1, 3, 4] if gap else [1, 2, 3]
    for seq in seqs:
        rig.machine.handle(K.ENV_ACT, Action(1, seq, 0.5))
        assert clock.run(rig.machine.tick, rig.machine.needs_time)
    assert [o.t for o in rig.sent(K.ENV_OBS)] == [s * rig.cfg.period_s for s in seqs]
    assert rig.stats.steps == 3 and rig.stats.ticks == 0  # ticks are the real-time clock's
