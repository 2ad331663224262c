"""The main job end to end: what `make demo` does, on the real broker, Docker and two nodes.

A user submits the bundled examples as real git repositories through the REST API; the outcome is
asserted from the stored result bundles (written by the agents from motor-node telemetry), not from
anything the user code printed.
"""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from devstack.demo import print_results, run_demo
from devstack.processes import Stack
from gym_raas_mqtt.results import load_summary, load_telemetry
from raas_platform.storage import open_store
from tests.conftest import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.broker, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, runner_image):
    root = tmp_path_factory.mktemp("stack")
    stack = Stack(root, nodes=("e2e-a", "e2e-b"), central_port=free_port(),
                  dashboard_port=free_port())
    lines: list[str] = []
    try:
        stack.up(log=lines.append)
        results = run_demo(stack, out=lines.append)
        ok = print_results(results, stack, out=lines.append)
    finally:
        pids = dict(stack.state.get("pids", {}))
        stack.down(log=lines.append)
    print("\n".join(lines))
    return stack, {r.example: r for r in results}, ok, pids


def test_swingup_balances_on_the_real_time_simulated_node(demo_run):
    stack, results, ok, _ = demo_run
    store = open_store(stack.store_url)
    swing = results["swingup"]
    summary = load_summary(store, job_id=swing.job_id)
    assert summary["state"] == "succeeded", summary
    assert summary["seconds_upright"] >= 5.0
    assert summary["steps"] == 400 and summary["episodes"] == 1
    assert ok
    # the trusted record: telemetry recorded by the motor node, stepping at the control period
    tel = load_telemetry(store, job_id=swing.job_id)
    assert len(tel) == 400
    assert float(np.median(np.diff(tel.t))) == pytest.approx(0.05, abs=1e-3)  # 20 Hz, one step/tick
    assert float(tel.reward.sum()) == pytest.approx(summary["return"], rel=1e-6)
    assert float(np.abs(tel.u_applied).max()) <= 2.0
    assert summary["calibration_id"] == "raas-original-2020"
    assert summary["node_id"] in ("e2e-a", "e2e-b")


def test_bundles_pin_what_ran(demo_run):
    stack, results, _, _ = demo_run
    store = open_store(stack.store_url)
    for example, r in results.items():
        summary = load_summary(store, job_id=r.job_id)
        head = subprocess.run(["git", "-C", str(stack.root / "repos" / example), "rev-parse",
                               "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        assert summary["commit_sha"] == head
        assert summary["image_digest"].startswith("sha256:")
        names = set(store.list(f"results/{r.job_id}/"))
        assert {f"results/{r.job_id}/{n}" for n in ("summary.json", "telemetry.csv",
                                                    "stdout.log", "plot.png")} <= names
        stdout = store.get_bytes(f"results/{r.job_id}/stdout.log").decode()
        assert "backend=bus" in stdout  # the same file ran against the real-time motor node


def test_random_job_and_both_nodes_used(demo_run):
    stack, results, _, _ = demo_run
    random = load_summary(open_store(stack.store_url), job_id=results["random"].job_id)
    assert random["state"] == "succeeded" and random["steps"] == 200
    assert {r.node for r in results.values()} == {"e2e-a", "e2e-b"}  # max_running 2: in parallel
    assert all(r.submit_to_first_step_s is not None and r.submit_to_first_step_s < 30
               for r in results.values())


def test_nothing_left_running(demo_run):
    stack, _, _, pids = demo_run
    assert pids, "the stack started no services"
    for name, pid in pids.items():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        stat = Path(f"/proc/{pid}/stat").read_text().split()[2]
        assert stat == "Z", f"{name} (pid {pid}) still running"
    out = subprocess.run(["pgrep", "-f", str(stack.root)], capture_output=True, text=True).stdout
    assert not out.strip(), f"processes still using {stack.root}: {out}"
    import docker

    left = docker.from_env().containers.list(all=True, filters={"label": "raas.job"})
    assert not left

