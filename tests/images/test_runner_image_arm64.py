"""The arm64 runner image for Raspberry Pi nodes: its wheelhouse resolves, and where this machine
can run arm64 code (natively, or under qemu through binfmt_misc) the image imports the env's stack
and runs a job end to end on a simulated node."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from dispatcher import queue as Q
from fleet_node.runner import DockerRunner, RunnerConfig
from gym_raas_mqtt import results
from gym_raas_mqtt.protocol import JobSource, JobState, SourceKind
from tests.conftest import ROOT
from tests.fleet_node.agent.agent_harness import git_repo
from tests.fleet_node.agent.test_agent_jobs import dispatcher, finished, node  # noqa: F401

BUILD = ROOT / "images" / "build.sh"
EMULATION_UNAVAILABLE = 3
"""images/build.sh's exit code when this machine cannot run arm64 code."""
STEPS = 20

RUN_STEPS = f"""\
import platform
import gymnasium as gym
import gym_raas_mqtt  # registers RaasPendulum-v0; RAAS_MQTT_URL selects the bus backend

env = gym.make("RaasPendulum-v0")
obs, info = env.reset(seed=1)
for k in range({STEPS}):
    obs, reward, terminated, truncated, info = env.step([0.5])
print("machine", platform.machine())
env.close()
"""


def _build_arm64(*args: str, timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run([str(BUILD), "--arch", "arm64", *args], capture_output=True, text=True,
                          timeout=timeout_s)


def test_arm64_wheelhouse_resolves():
    p = _build_arm64("--wheels-only", timeout_s=300)
    assert p.returncode == 0, p.stderr
    wheels = [w.name.lower() for w in (ROOT / ".wheelhouse" / "runner-arm64").glob("*.whl")]
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)",
                      (ROOT / "images" / "runner-requirements.txt").read_text(), re.M)
    for name, version in pins:
        prefix = f"{name.lower().replace('-', '_')}-{version}-"
        found = [w for w in wheels if w.startswith(prefix)]
        assert found and all(w.endswith(("-none-any.whl", "_aarch64.whl")) for w in found), \
            (name, found)
    assert any(w.startswith("numpy-") and w.endswith("_aarch64.whl") for w in wheels)


@pytest.fixture(scope="module")
def arm64_image(docker) -> dict:
    """Builds the arm64 runner image (a no-op when current); skips with the build script's reason
    where this machine cannot run arm64 code. Returns var/raas-runner-arm64.json."""
    check = _build_arm64("--check-emulation", timeout_s=60)
    if check.returncode == EMULATION_UNAVAILABLE:
        pytest.skip(check.stderr.strip())
    assert check.returncode == 0, check.stderr
    p = _build_arm64(timeout_s=1800)
    assert p.returncode == 0, p.stderr
    return json.loads((ROOT / "var" / "raas-runner-arm64.json").read_text())


@pytest.mark.docker
def test_arm64_image_is_recorded_and_imports_the_env_stack(arm64_image, docker):
    image = docker.images.get(arm64_image["latest"])
    assert image.id == arm64_image["image_id"] and arm64_image["tag"] in image.tags
    assert (image.attrs["Os"], image.attrs["Architecture"]) == ("linux", "arm64")
    assert arm64_image["arch"] == "arm64" and arm64_image["size_bytes"] == image.attrs["Size"]
    out = docker.containers.run(
        arm64_image["latest"],
        ["python3", "-c", "import platform, gym_raas_mqtt, numpy, scipy; print(platform.machine())"],
        remove=True, network_mode="none", read_only=True, tmpfs={"/tmp": "size=16m"})
    assert out.decode().split()[-1] == "aarch64"


@pytest.mark.docker
@pytest.mark.broker
def test_job_runs_in_the_arm64_image_on_a_simulated_node(arm64_image, dispatcher, node,  # noqa: F811
                                                         tmp_path):
    runner = DockerRunner(RunnerConfig(image=arm64_image["latest"]))
    assert runner.image_id() == arm64_image["image_id"]
    node.start_agent(runner=runner)
    url = git_repo(tmp_path / "repo", {"run.py": RUN_STEPS})
    job_id = Q.enqueue("alice", JobSource(SourceKind.GIT, url=url), 120.0,
                       limits=dispatcher.limits).id
    job = finished(job_id, timeout_s=240)
    stdout = node.store.get_bytes(f"results/{job_id}/stdout.log").decode()
    assert job.job_state is JobState.SUCCEEDED, f"{job.reason}\n{stdout[-2000:]}"
    assert "machine aarch64" in stdout
    summary = results.load_summary(node.store, job_id=job_id)
    assert summary["steps"] == STEPS and summary["image_digest"] == arm64_image["image_id"]
