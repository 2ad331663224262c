"""What a 60 s job's bundle costs the node: the sim-vs-real report and the signature, and verifying it.

A 60 s job at 20 Hz (1200 steps: three 20 s episodes of energy pumping on a pendulum whose torque
gain is 12.5 % below its calibration's) is written as the motor node's telemetry file; the bench
times :func:`~gym_raas_mqtt.calibration.sim_vs_real.compare` (replay, divergence, refit), the
whole bundle hook with its overlay PNG, the full ``build_bundle`` (plot.png too), signing
(manifest + Ed25519) and offline verification. Medians of ``--repeats``.

Usage: python bench/bundle_report.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from fleet_node.bundle import build_bundle
from fleet_node.node_key import NodeKey
from fleet_node.sim_report import sim_vs_real_extra
from gym_raas_mqtt import physics
from gym_raas_mqtt.bundle_signature import keys_document, load_fleet_keys, verify_bundle
from gym_raas_mqtt.calibration.sim_vs_real import compare
from gym_raas_mqtt.physics import DEFAULT_PARAMS
from gym_raas_mqtt.results import read_telemetry_csv

HEADER = "episode_id,seq,t,theta,theta_dot,u_desired,u_applied,reward,deadline_miss"


def write_job(path: Path, episodes: int = 3, steps: int = 400) -> None:
    """The telemetry file of a 60 s job (``episodes`` × ``steps`` at the model's period)."""
    truth = DEFAULT_PARAMS.replace(action_gain=7.0)
    lines = [HEADER]
    for e in range(1, episodes + 1):
        th, thd = 3.0, 0.0
        for k in range(steps):
            u = 2.0 if thd >= 0 else -2.0
            r = physics.reward(th, thd, u)
            lines.append(f"{e},{k + 1},{k * truth.dt!r},{th!r},{thd!r},{u!r},{u!r},{r!r},0")
            th, thd = physics.step(truth, th, thd, u)
    path.write_text("\n".join(lines) + "\n")


def median_ms(f: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="raas-bench-bundle-"))
    csv = tmp / "telemetry.csv"
    write_job(csv)
    tel = read_telemetry_csv(csv)
    hook = sim_vs_real_extra(DEFAULT_PARAMS)
    out = tmp / "bundle"
    out.mkdir()
    key = NodeKey.load_or_create(tmp / "node_key.pem")
    (tmp / "keys.json").write_text(json.dumps(keys_document({"n1": (key.public_key_b64, 0.0)})))
    keys = load_fleet_keys(tmp / "keys.json")
    print(f"{platform.python_implementation()} {platform.python_version()}, {len(tel)} steps")
    print(f"sim-vs-real report (replay + divergence + refit): "
          f"{median_ms(lambda: compare(tel, DEFAULT_PARAMS), args.repeats):.1f} ms")
    print(f"bundle hook incl. sim_vs_real.png: "
          f"{median_ms(lambda: hook(out, tel), max(1, args.repeats // 2)):.0f} ms")
    build = median_ms(lambda: build_bundle(out, telemetry_path=csv, stdout_path=None,
                                           job_id="bench", owner="o", node_id="n1",
                                           state="succeeded", reason=None, extras=[hook]), 1)
    print(f"build_bundle (plot.png + report): {build:.0f} ms")
    print(f"sign (manifest + Ed25519): "
          f"{median_ms(lambda: key.sign_bundle(out, 'n1'), args.repeats):.2f} ms")
    assert verify_bundle(out, keys)[1] == []
    print(f"verify offline (hashes, signature, summary fields): "
          f"{median_ms(lambda: verify_bundle(out, keys), args.repeats):.2f} ms")
    print(f"bundle: {sum(p.stat().st_size for p in out.iterdir())} bytes in "
          f"{len(list(out.iterdir()))} files")


if __name__ == "__main__":
    main()
