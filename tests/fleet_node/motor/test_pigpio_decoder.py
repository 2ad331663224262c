"""The quadrature decoder on scripted edge sequences: counts, errors, glitches, ticks, velocity."""

from __future__ import annotations

import math

import pytest

from fleet_node.motor.encoder import (CHANNEL_A, CHANNEL_B, TIMEOUT, TRANSITIONS,
                                      QuadratureDecoder, tick_diff)

A, B = CHANNEL_A, CHANNEL_B
# One line cycle forward from 00: A rises, B rises, A falls, B falls (A leads B).
FORWARD = [(A, 1), (B, 1), (A, 0), (B, 0)]
BACKWARD = [(B, 1), (A, 1), (B, 0), (A, 0)]


def feed(dec: QuadratureDecoder, events, t0: int = 1000, dt: int = 100) -> int:
    t = t0
    for ch, level in events:
        dec.edge(ch, level, t & 0xFFFFFFFF)
        t += dt
    return t


def test_table_is_antisymmetric_and_marks_double_transitions():
    for old in range(4):
        for new in range(4):
            d = TRANSITIONS[old << 2 | new]
            if old == new:
                assert d == 0
            elif old ^ new == 3:
                assert d is None
            else:
                assert d in (1, -1) and TRANSITIONS[new << 2 | old] == -d


def test_forward_and_backward_cycles_count_four_per_cycle():
    dec = QuadratureDecoder()
    feed(dec, FORWARD * 10)
    assert (dec.count, dec.errors, dec.state) == (40, 0, 0)
    feed(dec, BACKWARD * 3, t0=10_000)
    assert (dec.count, dec.errors) == (28, 0)


def test_reversal_mid_cycle_counts_exactly():
    dec = QuadratureDecoder()
    # +1 +1 then back -1 -1 -1 (past the start) then +1
    feed(dec, [(A, 1), (B, 1), (B, 0), (A, 0), (B, 1), (B, 0)])
    assert (dec.count, dec.errors) == (0, 0)
    feed(dec, [(A, 1), (B, 1), (A, 0)], t0=5000)
    assert dec.count == 3


def test_starts_from_the_read_levels():
    dec = QuadratureDecoder(a=1, b=1)  # state 11: next forward edge is A falling
    feed(dec, [(A, 0), (B, 0), (A, 1)])
    assert (dec.count, dec.errors) == (3, 0)


def test_simultaneous_change_is_an_error_not_a_step():
    dec = QuadratureDecoder()
    feed(dec, [(A, 1)])  # +1, state 10
    dec.edge(B, 1, 5000)  # 10 -> 11: +1 ...
    dec.edge(A, 0, 5000)  # ... but A changed in the same sample: 10 -> 01 is invalid
    assert (dec.count, dec.errors, dec.state) == (1, 1, 0b01)
    feed(dec, [(B, 0), (A, 1)], t0=6000)  # decoding continues from the true state 01
    assert (dec.count, dec.errors) == (3, 1)


def test_repeated_level_counts_an_error():
    dec = QuadratureDecoder()
    feed(dec, [(A, 1), (A, 1)])
    assert (dec.count, dec.errors) == (1, 1)


def test_glitch_on_one_channel_nets_zero():
    dec = QuadratureDecoder()
    feed(dec, FORWARD + [(A, 1)])  # count 5, state 10
    feed(dec, [(B, 1), (B, 0)], t0=9000, dt=3)  # a 3 µs spike on B while A is high
    assert (dec.count, dec.errors) == (5, 0)


def test_watchdog_report_is_not_an_edge():
    dec = QuadratureDecoder()
    feed(dec, FORWARD)
    dec.edge(A, TIMEOUT, 500_000)
    assert (dec.count, dec.errors) == (4, 0)


def test_tick_diff_wraps():
    assert tick_diff(5, 0xFFFFFFFB) == 10
    assert tick_diff(0xFFFFFFFB, 5) == -10
    assert tick_diff(1000, 400) == 600


@pytest.mark.parametrize("t0", [1_000, 0xFFFFFFFF - 5_000])
def test_velocity_from_edge_timing_across_tick_wrap(t0):
    dec = QuadratureDecoder(window_us=20_000, max_age_us=100_000)
    period = 700  # µs per count: 1428.6 counts/s
    t = feed(dec, FORWARD * 8, t0=t0, dt=period)
    last = t - period
    count, v, still = dec.snapshot((last + 100) & 0xFFFFFFFF)
    assert count == 32
    assert v == pytest.approx(1e6 / period, rel=1e-9)
    assert still == pytest.approx(100e-6)


def test_velocity_decays_without_edges_and_resets_after_max_age():
    dec = QuadratureDecoder(window_us=20_000, max_age_us=100_000)
    t = feed(dec, FORWARD * 4, dt=1000)  # 1000 counts/s
    last = t - 1000
    assert dec.snapshot(last + 500)[1] == pytest.approx(1000.0)
    assert dec.snapshot(last + 4000)[1] == pytest.approx(250.0)  # <= 1 count per 4 ms
    assert dec.snapshot(last + 100_000)[1] == 0.0
    dec.edge(A, TIMEOUT, last + 100_000)  # watchdog clears the history
    dec.edge(A, 1, last + 100_500)
    assert dec.snapshot(last + 100_600)[1] == 0.0  # one edge: no speed yet


def test_velocity_uses_whole_cycles_to_cancel_phase_error():
    # A/B in 70/110 µs alternation (phase error): per-edge timing jitters, a cycle does not.
    dec = QuadratureDecoder(window_us=2_000, max_age_us=100_000)
    t = 0
    for i in range(40):
        ch, level = FORWARD[i % 4]
        t += 70 if i % 2 else 110
        dec.edge(ch, level, t)
    v = dec.snapshot(t)[1]
    assert v == pytest.approx(1e6 / 90, rel=1e-9)


def test_negative_velocity():
    dec = QuadratureDecoder()
    t = feed(dec, BACKWARD * 4, dt=500)
    assert dec.snapshot(t - 500)[1] == pytest.approx(-2000.0)
    assert math.isinf(QuadratureDecoder().snapshot(0)[2])
