"""Job container overhead: run_job call → first output line, and → outcome, for trivial jobs.

Usage: ``.venv/bin/python bench/runner_latency.py [runs]`` (needs the Docker engine and the runner
image: ``scripts/dockerd.sh start && images/build.sh``). Prints median and max over the runs for
a job that prints at once and for one that first imports the env (numpy + gymnasium).
"""

from __future__ import annotations

import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fleet_node.runner import DockerRunner, RunnerConfig
from gym_raas_mqtt.protocol import JobState

JOBS = {
    "print": "print('up')\n",
    "import env": "import gym_raas_mqtt, gymnasium as gym\nprint('up')\n"
                  "env = gym.make('RaasPendulum-v0', backend='sim')\n",
}


def main(runs: int = 10) -> None:
    runner = DockerRunner(RunnerConfig())
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        tmp_path.chmod(0o755)
        code, sockdir = tmp_path / "code", tmp_path / "sock"
        code.mkdir(mode=0o755)
        sockdir.mkdir(mode=0o755)
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(sockdir / "mqtt.sock"))
        print(f"image {runner.image_id()[:19]}, {runs} runs each, times in s")
        for name, source in JOBS.items():
            (code / "run.py").write_text(source)
            (code / "run.py").chmod(0o644)
            first, total = [], []
            for i in range(runs):
                t0 = time.monotonic()
                seen: list[float] = []
                out = runner.run_job(f"bench{i}", code, {"RAAS_NODE_ID": "bench"},
                                     sockdir / "mqtt.sock", 30,
                                     lambda st, line: seen or seen.append(time.monotonic() - t0))
                total.append(time.monotonic() - t0)
                assert out.state is JobState.SUCCEEDED and seen, out
                first.append(seen[0])
            print(f"{name:>10}: first output median {statistics.median(first):.3f} "
                  f"max {max(first):.3f}; outcome median {statistics.median(total):.3f} "
                  f"max {max(total):.3f}")
        s.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
