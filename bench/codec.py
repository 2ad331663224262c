"""Codec cost: encode and decode+validate of one Action and one Observation, JSON vs binary.

Both forms are timed in one run, interleaved repeat by repeat so machine noise hits them alike:
JSON is ``Message.to_bytes()`` / ``Message.from_bytes()`` (the strict schema check), binary is
``gym_raas_mqtt.protocol.binary`` (``pack_action`` is what the bus backend sends per step; the
bus backend and the motor node compare the content type and call ``decode_observation`` /
``decode_action`` directly; ``from_payload`` is the generic path of ``Link`` and tools). Each
figure is the median over repeats of the mean per call, with the min–max spread.
Goal (issue 15): decode + validate ≤ 2 µs per message.

Usage: python bench/codec.py [--calls 100000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Callable

from gym_raas_mqtt import protocol
from gym_raas_mqtt.protocol import (ACTION_CONTENT_TYPE, OBSERVATION_CONTENT_TYPE, Action,
                                    Observation)

GOAL_DECODE_US = 2.0

ACTION = Action(episode_id=3, seq=1234, action=-1.2345678901234567)
OBSERVATION = Observation(episode_id=3, seq=1234, theta=3.0123456789012345,
                          theta_dot=-0.98765432109876, u_applied=-1.2345678901234567,
                          t=61.7, deadline_miss=False, fault=None)


def cases() -> dict[str, Callable[[], object]]:
    """What to time, by row label: each a no-argument call doing one encode or decode."""
    a_json, o_json = ACTION.to_bytes(), OBSERVATION.to_bytes()
    a_bin, o_bin = protocol.encode_action(ACTION), protocol.encode_observation(OBSERVATION)
    assert Action.from_bytes(a_json) == protocol.decode_action(a_bin) == ACTION
    assert Observation.from_bytes(o_json) == protocol.decode_observation(o_bin) == OBSERVATION
    ep, seq, u = ACTION.episode_id, ACTION.seq, ACTION.action
    return {
        "Action encode, JSON": ACTION.to_bytes,
        "Action encode, binary (pack_action)": lambda: protocol.pack_action(ep, seq, u),
        "Action decode+validate, JSON": lambda: Action.from_bytes(a_json),
        "Action decode+validate, binary": lambda: protocol.decode_action(a_bin),
        "Action decode+validate, binary via from_payload":
            lambda: protocol.from_payload(Action, a_bin, ACTION_CONTENT_TYPE),
        "Observation encode, JSON": OBSERVATION.to_bytes,
        "Observation encode, binary": lambda: protocol.encode_observation(OBSERVATION),
        "Observation decode+validate, JSON": lambda: Observation.from_bytes(o_json),
        "Observation decode+validate, binary": lambda: protocol.decode_observation(o_bin),
        "Observation decode+validate, binary via from_payload":
            lambda: protocol.from_payload(Observation, o_bin, OBSERVATION_CONTENT_TYPE),
    }


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    """Mean wall time of one ``fn()`` over ``calls`` calls [µs]."""
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    todo = cases()
    loop_us = [per_call_us(lambda: None, args.calls) for _ in range(3)]  # the harness itself
    results: dict[str, list[float]] = {label: [] for label in todo}
    for _ in range(args.repeats):
        for label, fn in todo.items():
            results[label].append(per_call_us(fn, args.calls))
    med = {label: statistics.median(v) for label, v in results.items()}
    print(f"python {platform.python_version()}, {args.repeats} × {args.calls:,} calls per row "
          f"(median µs per call, min–max), load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; harness overhead "
          f"{statistics.median(loop_us):.3f} µs included")
    print(f"  sizes: Action JSON {len(ACTION.to_bytes())} B, binary "
          f"{len(protocol.encode_action(ACTION))} B; Observation JSON "
          f"{len(OBSERVATION.to_bytes())} B, binary {len(protocol.encode_observation(OBSERVATION))} B")
    for label, vals in results.items():
        print(f"  {label:54s} {med[label]:7.3f} µs  ({min(vals):.3f}–{max(vals):.3f})")
    for msg in ("Action", "Observation"):
        for what in ("encode", "decode+validate"):
            binary = f"{msg} {what}, binary" + (" (pack_action)" if msg == "Action"
                                                and what == "encode" else "")
            ratio = med[f"{msg} {what}, JSON"] / med[binary]
            print(f"  {msg} {what}: JSON / binary = {ratio:.1f}×")
        # The bus backend and the motor node compare the content type and call the decoder
        # directly; from_payload is the generic path (Link, tools).
        hot = med[f"{msg} decode+validate, binary"]
        print(f"  {msg} decode+validate, binary: {hot:.3f} µs  (goal ≤ {GOAL_DECODE_US:g} µs: "
              f"{'met' if hot <= GOAL_DECODE_US else 'NOT met'})")


if __name__ == "__main__":
    main()
