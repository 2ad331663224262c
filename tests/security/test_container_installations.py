"""Scoped container cleanup (issue 10, item 7): every job container carries its installation's id,
and an agent's sweep removes only containers of its own installation and node.

Finding covered: "An agent removes every container labelled with its node name when it starts, so
two installations sharing a Docker engine remove each other's job containers." Here two
installations (two data dirs, hence two installation ids) share the test engine with the same node
id; one sweeps while the other's job runs.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from fleet_node.runner import (INSTALLATION_LABEL, JOB_LABEL, NODE_LABEL, DockerRunner,
                               RunnerConfig)
from gym_raas_mqtt.errors import ConfigError
from gym_raas_mqtt.protocol import JobState

SLOW_JOB = "import time\nprint('working', flush=True)\ntime.sleep(4)\nprint('done')\n"


def test_installation_ids_differ_by_data_dir_and_can_be_set(tmp_path):
    a, b = RunnerConfig(data_dir=tmp_path / "a"), RunnerConfig(data_dir=tmp_path / "b")
    assert a.installation != b.installation
    assert a.installation == RunnerConfig(data_dir=tmp_path / "a").installation  # stable
    assert RunnerConfig(installation_id="lab-1").installation == "lab-1"
    with pytest.raises(ConfigError, match="RAAS_INSTALLATION_ID"):
        RunnerConfig(installation_id="not/a label")


def job_files(tmp_path):
    """A world-readable code dir holding run.py, and a unix socket alone in its directory."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "run.py").write_text(SLOW_JOB)
    code.chmod(0o755)
    (code / "run.py").chmod(0o644)
    sock_dir = tmp_path / "sock"
    sock_dir.mkdir()
    sock_dir.chmod(0o755)
    path = sock_dir / "local.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()
    return code, path


@pytest.mark.docker
def test_a_sweep_leaves_another_installations_job_running(docker, runner_image, tmp_path, uid):
    mine = DockerRunner(RunnerConfig(image=runner_image, data_dir=tmp_path / "mine"),
                        client=docker)
    theirs = DockerRunner(RunnerConfig(image=runner_image, data_dir=tmp_path / "theirs"),
                          client=docker)
    code, sock = job_files(tmp_path)
    outcome = {}
    run = threading.Thread(target=lambda: outcome.update(out=theirs.run_job(
        f"job-{uid}", code, {"RAAS_NODE_ID": uid}, sock, 30)))
    run.start()
    leftover = None
    try:
        deadline = time.monotonic() + 30
        while not docker.containers.list(filters={"label": f"{JOB_LABEL}=job-{uid}"}):
            assert time.monotonic() < deadline, "their job container never ran"
            time.sleep(0.05)
        # My own leftover on the same node id, as a crash of my agent would leave it.
        leftover = docker.containers.create(
            runner_image, ["sleep", "60"], network_mode="none",
            labels={JOB_LABEL: "old", NODE_LABEL: uid,
                    INSTALLATION_LABEL: mine.config.installation})
        assert mine.sweep(uid) == [leftover.name]  # what my agent does when it starts
        assert mine.sweep() == []  # nothing else of mine anywhere on the engine
        run.join(30)
        out = outcome["out"]
        assert out.state is JobState.SUCCEEDED, out  # their job ran to its end, undisturbed
    finally:
        run.join(30)
        if leftover is not None:
            try:
                leftover.remove(force=True)
            except Exception:  # noqa: BLE001 - swept, as expected
                pass
