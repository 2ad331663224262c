"""The GPIO motor contract, run against both backends on their emulated chips (pigpio, lgpio):
drive, safety, decoding at the over-speed limit, zeroing, and the pendulum's physics."""

from __future__ import annotations

import math
import threading

import pytest

from fleet_node.motor.base import Motor
from gpio_rigs import BACKENDS, land_edges_in_flight, make
from gym_raas_mqtt import physics
from gym_raas_mqtt.errors import MotorFault
from gym_raas_mqtt.physics import DEFAULT_PARAMS

P = DEFAULT_PARAMS
COUNT = 2 * math.pi / P.counts_per_rev  # one encoder count [rad]
OVERSPEED = 15.0  # RAAS_MOTOR_OVERSPEED_RAD_S's default [rad/s]

pytestmark = pytest.mark.parametrize("backend", BACKENDS)


def test_is_a_motor_and_starts_safe(backend):
    rig, m = make(backend)
    assert isinstance(m, Motor) and m.name == backend
    assert rig.held_low(13) and rig.held_low(19) and rig.torque_u() == 0.0
    assert m.read() == (math.pi, 0.0)
    assert m.set_state(0.0, 0.0) is False


@pytest.mark.parametrize("u", [1.0, 2.0, -0.5, -2.0, 0.3])
def test_pwm_gives_the_torque_of_u(backend, u):
    """250·u per 1000 of the PWM period on the input of u's sign, the other held low."""
    rig, m = make(backend)
    assert m.apply(u) == u
    assert rig.torque_u() == pytest.approx(u)
    assert rig.held_low(19 if u > 0 else 13)


@pytest.mark.parametrize("desired, applied", [(5.0, 2.0), (-7.5, -2.0), (float("nan"), 0.0),
                                              (float("inf"), 0.0), (0.0, 0.0)])
def test_clamping(backend, desired, applied):
    rig, m = make(backend)
    assert m.apply(desired) == applied
    assert rig.torque_u() == pytest.approx(applied)


def test_reversals_never_drive_both_inputs(backend):
    rig, m = make(backend)
    for u in (1.5, -1.0, -1.2, 0.5, 0.0, -2.0, 2.0, 1e-9, -0.7):
        applied = m.apply(u)
        assert rig.torque_u() == pytest.approx(applied, abs=1e-6)
    assert rig.overlaps == 0


def test_stop_zeroes_both_inputs_from_another_thread(backend):
    rig, m = make(backend)
    done = threading.Event()

    def hammer():
        i = 0
        while not done.is_set():
            m.apply(1.0 if i % 2 else -1.0)
            i += 1

    t = threading.Thread(target=hammer)
    t.start()
    for _ in range(50):
        m.stop()
    done.set()
    t.join()
    m.stop()
    m.stop()  # idempotent
    assert rig.torque_u() == 0.0 and rig.held_low(13) and rig.held_low(19)
    m.apply(0.8)  # usable again after a stop
    assert rig.torque_u() == pytest.approx(0.8)
    assert rig.overlaps == 0


def test_close_releases_and_disables(backend):
    rig, m = make(backend)
    m.apply(1.0)
    m.close()
    assert rig.torque_u() == 0.0
    assert all(not cb.active for cb in rig.callbacks)
    assert m.apply(1.0) == 0.0 and rig.torque_u() == 0.0
    m.close()


def test_broken_io_is_a_motor_fault(backend):
    rig, m = make(backend)
    rig.break_io()
    with pytest.raises(MotorFault, match=backend):
        m.apply(1.0)
    with pytest.raises(MotorFault):
        m.stop()


def test_counts_per_rev_comes_from_the_calibration(backend):
    rig, m = make(backend, P.replace(counts_per_rev=480))
    rig.rotate_by(2 * math.pi, 1.0)
    land_edges_in_flight(rig)
    assert m.read()[0] == pytest.approx(3 * math.pi)
    assert m.stats() == {"count": 480, "zero": 0, "errors": 0}


def test_hand_rotation_reads_to_one_count_and_zero_recalibrates(backend):
    rig, m = make(backend)
    rig.rotate_by(1.0, 0.5)
    theta, _ = m.read()
    assert abs(theta - (math.pi + 1.0)) <= COUNT
    with pytest.raises(MotorFault, match="not still"):
        m.calibrate_zero(require_still_s=0.5)
    rig2, m2 = make(backend)
    rig2.rotate_by(10 * COUNT, 0.1)
    rig2.rotate_by(0.0, 0.6)  # held still by hand for 0.6 s
    assert m2.calibrate_zero(require_still_s=0.5) == 10
    assert m2.read() == (math.pi, 0.0)
    rig2.rotate_by(-2 * math.pi - 3 * COUNT, 0.5)
    land_edges_in_flight(rig2)
    assert m2.read()[0] == pytest.approx(-math.pi - 3 * COUNT, abs=1e-9)
    assert m2.calibrate_zero() == -3  # correction taken modulo one revolution


def test_encoder_direction_setting(backend):
    # encoder wired the other way round: with direction -1, positive u still increases θ
    rig, m = make(backend, config={"encoder_direction": -1}, encoder_direction=-1)
    m.apply(1.0)
    rig.advance(0.3)
    assert m.read()[0] > math.pi + 0.1
    rig, m = make(backend, encoder_direction=-1)  # the check calibration.md asks for catches it
    m.apply(1.0)
    rig.advance(0.3)
    assert m.read()[0] < math.pi - 0.1


def test_glitches_through_the_filter(backend):
    rig, m = make(backend)
    rig.pulse(14, 30)  # shorter than the 100 µs filter: never reported
    rig.advance(0.01)
    assert m.stats()["count"] == 0
    rig.pulse(14, 400)  # long enough to pass: +1 then -1
    rig.advance(0.01)
    assert m.stats() == {"count": 0, "zero": 0, "errors": 0}
    assert m.read()[0] == math.pi


@pytest.mark.parametrize("start_us", [0, 2**32 - 1_500_000])  # the second wraps after 1.5 s
def test_constant_action_follows_the_model(backend, start_us):
    """u = 1 from hanging still: measured θ, θ̇ track a 1 kHz integration of the same model;
    the steady angle is where a·sin θ + b·u = 0."""
    rig, m = make(backend, start_us=start_us)
    fine = P.replace(dt=1e-3)
    th, thd = math.pi, 0.0
    u = 1.0
    m.apply(u)
    worst_th = worst_thd = 0.0
    for k in range(1, 161):  # 8 s at the 20 Hz control period
        rig.advance(P.dt)
        for _ in range(50):
            th, thd = physics.step(fine, th, thd, u)
        meas_th, meas_thd = m.read()
        worst_th = max(worst_th, abs(meas_th - th))
        # θ̇ is an average over the last ≤ 20 ms window: allow |θ̈|·10 ms lag + half a count/20 ms
        acc = abs(P.gravity_coeff * math.sin(th) + P.action_gain * u - P.damping * thd)
        err = abs(meas_thd - thd)
        worst_thd = max(worst_thd, err / (acc * 0.01 + COUNT / 0.04 + 1e-9))
    assert worst_th <= COUNT  # within encoder resolution
    assert worst_thd <= 1.0
    steady = math.pi + math.asin(P.action_gain * u / P.gravity_coeff)
    assert abs(th - steady) < 1e-3
    assert abs(m.read()[0] - steady) <= COUNT
    assert m.read()[1] == 0.0
    assert m.stats()["errors"] == 0


@pytest.mark.parametrize("speed, cpr", [(0.98 * OVERSPEED, 445), (0.98 * OVERSPEED, 480),
                                        (-0.98 * OVERSPEED, 480), (P.max_speed, 480),
                                        (P.max_speed, 2000)])
def test_every_edge_decoded_up_to_the_overspeed_limit(backend, speed, cpr):
    """The shaft turned at just under the over-speed cut (1 100+ edges/s), at the env's speed
    limit (1 528 edges/s) and, for headroom, with a 2000-count encoder (6 366 edges/s): every
    edge arrives with its timestamp, none is lost, θ̇ reads the speed to 1 %."""
    params = P.replace(counts_per_rev=cpr)
    rig, m = make(backend, params)
    rig.spin(speed)
    # θ lags by the edges in flight (the glitch filter's 100 µs, lgpio's delivery) + one count
    lag_rad = abs(speed) * (rig.delivery_delay_us + 100) * 1e-6 + 2 * math.pi / cpr
    rig.advance(0.1)  # up to speed: a full velocity window of edges
    for _ in range(40):  # 2 s, read at the 20 Hz control period
        rig.advance(P.dt)
        theta, theta_dot = m.read()
        assert theta_dot == pytest.approx(speed, rel=0.01), rig.describe()
        assert abs(theta - rig.theta) <= lag_rad, rig.describe()
    rig.spin(0.0)  # held: the edges in flight arrive
    rig.advance(0.05)
    edge_rate = abs(speed) * cpr / (2 * math.pi)
    assert rig.edges >= 2.0 * edge_rate
    assert m.stats() == {"count": rig.true_count(), "zero": 0, "errors": 0}
    assert abs(m.stats()["count"]) == rig.edges
