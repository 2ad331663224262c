"""The job runner image: built offline, cached by content, and holding exactly what jobs need."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.docker

PROBE = r"""
import importlib, importlib.metadata as md, json, os, pathlib, shutil, sys
import gymnasium as gym
import gym_raas_mqtt
env = gym.make("RaasPendulum-v0", backend="sim")
obs, _ = env.reset(seed=1)
steps = 0
for _ in range(50):
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    steps += 1
proto_dir = pathlib.Path(gym_raas_mqtt.__file__).with_name("protocol")
proto = b"".join(p.name.encode() + p.read_bytes() for p in sorted(proto_dir.glob("*.py")))
def importable(name):
    try:
        importlib.import_module(name)
        return True
    except ImportError:
        return False
print(json.dumps({
    "python": list(sys.version_info[:2]),
    "uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(), "home": os.environ["HOME"],
    "versions": {d: md.version(d) for d in
                 ("numpy", "scipy", "gymnasium", "paho-mqtt", "cloudpickle",
                  "farama-notifications", "typing-extensions")},
    "services": {m: importable(m) for m in ("dispatcher", "fleet_node", "dashboard",
                                            "broker_config", "raas_platform", "devstack",
                                            "docker", "flask")},
    "tools": {t: shutil.which(t) for t in ("gcc", "cc", "pip", "pip3", "apt-get", "sudo")},
    "steps": steps, "obs_shape": list(obs.shape),
    "protocol_sha256": __import__("hashlib").sha256(proto).hexdigest(),
}))
"""


def _build() -> tuple[str, float]:
    t0 = time.monotonic()
    p = subprocess.run([str(ROOT / "images" / "build.sh")], capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stderr
    return p.stderr, time.monotonic() - t0


@pytest.fixture(scope="module")
def current_image(docker):
    """Runs images/build.sh twice: the first brings raas-runner:latest up to this checkout, the
    second must be a quick no-op. Returns the recorded build info."""
    _build()
    log, elapsed = _build()
    info = json.loads((ROOT / "var" / "raas-runner.json").read_text())
    return info, log, elapsed


def test_build_is_a_fast_no_op_when_inputs_are_unchanged(current_image):
    info, log, elapsed = current_image
    assert f"up to date: {info['tag']}" in log
    assert elapsed < 10


def test_tag_is_the_inputs_hash_and_the_id_is_recorded(current_image, docker):
    info, _, _ = current_image
    image = docker.images.get("raas-runner:latest")
    assert image.id == info["image_id"]
    assert info["tag"] in image.tags
    assert re.fullmatch(r"raas-runner:[0-9a-f]{12}", info["tag"])
    assert image.labels["raas.inputs"] == info["inputs_hash"] == info["tag"].split(":")[1]
    assert image.attrs["Config"]["User"] == "10001:10001"
    assert image.attrs["Config"]["WorkingDir"] == "/job"
    assert image.attrs["Config"]["Cmd"] == ["python3", "-u", "run.py"]
    # the native build is this machine's architecture, also recorded under that architecture
    assert info["arch"] == image.attrs["Architecture"] and info["latest"] == "raas-runner:latest"
    per_arch = json.loads((ROOT / "var" / f"raas-runner-{info['arch']}.json").read_text())
    assert per_arch == info


def test_image_holds_the_pinned_packages_and_only_the_env_package(current_image, docker,
                                                                  tmp_path):
    out = docker.containers.run("raas-runner:latest", ["python3", "-c", PROBE], remove=True,
                                network_mode="none", read_only=True,
                                tmpfs={"/tmp": "size=16m"}, stderr=True)
    probe = json.loads(out.decode().strip().splitlines()[-1])
    assert probe["python"] == [3, 11]
    assert (probe["uid"], probe["gid"], probe["cwd"], probe["home"]) == (10001, 10001, "/job",
                                                                          "/tmp")
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)",
                           (ROOT / "images" / "runner-requirements.txt").read_text(), re.M))
    assert probe["versions"] == pins
    assert not any(probe["services"].values()), probe["services"]
    assert not any(probe["tools"].values()), probe["tools"]
    assert (probe["steps"], probe["obs_shape"]) == (50, [3])
    # The image carries this checkout's protocol, so a job speaks what the node speaks.
    proto = sorted((ROOT / "gym_raas_mqtt" / "protocol").glob("*.py"))
    local = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in proto)).hexdigest()
    assert probe["protocol_sha256"] == local


def test_dockerd_script_reports_the_running_engine():
    p = subprocess.run([str(ROOT / "scripts" / "dockerd.sh"), "status"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0 and p.stdout.startswith("dockerd: running"), p.stdout + p.stderr
    # `start` on a running engine is a no-op that succeeds.
    p = subprocess.run([str(ROOT / "scripts" / "dockerd.sh"), "start"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "dockerd: running"


def test_build_context_is_cleaned_up(current_image):
    # the context is assembled in build/ and removed after every build; the wheelhouse (kept in
    # .wheelhouse/ for the next build) exists only in a checkout that built the image itself
    assert not (ROOT / "build" / "runner-image").exists()
