"""A failed job's reason is the exception's last line; a missing module's lists what the runner
image provides (issue 14, item 9: "a failure's reason is the exit code")."""

from __future__ import annotations

import pytest

from fleet_node.runner import DockerRunner
from fleet_node.runner.failure import (MAX_REASON_CHARS, OutputTail, exception_line,
                                       failure_reason)
from gym_raas_mqtt.protocol import JobState, LogStream
from tests.fleet_node import test_runner

TRACEBACK = ["step 3", "Traceback (most recent call last):",
             '  File "/job/run.py", line 9, in <module>', "    main()", "    ^^^^^^", "ValueError: gain must be positive", "  (a note)"]


def test_the_reason_is_the_exceptions_last_line():
    assert exception_line(TRACEBACK) == "ValueError: gain must be positive"
    assert failure_reason(TRACEBACK, 1) == "ValueError: gain must be positive (exit code 1)"


def test_a_chained_exception_gives_the_last_one():
    lines = TRACEBACK + ["", "During handling of the above exception, another exception occurred:",
                         "", "Traceback (most recent call last):", '  File "x", line 1',
                         "KeyError: 'theta'"]
    assert exception_line(lines) == "KeyError: 'theta'"


def test_without_a_traceback_the_reason_is_the_exit_code():
    assert failure_reason(["diverged, giving up"], 3) == "exit code 3"
    assert failure_reason([], 1) == "exit code 1"
    assert exception_line(["Traceback (most recent call last):"]) is None  # cut off


def test_a_missing_module_lists_the_images_packages():
    lines = ["Traceback (most recent call last):", '  File "/job/run.py", line 1',
             "ModuleNotFoundError: No module named 'torch.nn'"]
    asked = []
    reason = failure_reason(lines, 1, lambda: asked.append(1) or ["gymnasium==1.4.0",
                                                                  "numpy==2.4.6"])
    assert reason == ("ModuleNotFoundError: No module named 'torch.nn' (exit code 1); torch is "
                      "not in the runner image, which provides: gymnasium==1.4.0, numpy==2.4.6")
    failure_reason(TRACEBACK, 1, lambda: asked.append(2) or [])
    assert asked == [1]  # only listed for a missing module
    long = failure_reason(lines, 1, lambda: ["p" * 50 + "==1"] * 100)
    assert len(long) == MAX_REASON_CHARS and long.endswith("…")


def test_the_tail_keeps_user_output_and_passes_everything_on():
    seen = []
    tail = OutputTail(lambda s, line: seen.append((s, line)))
    for i in range(100):
        tail(LogStream.STDERR, f"line {i}")
    tail(LogStream.SYSTEM, "[raas] output truncated")
    assert tail.lines[-1] == "line 99" and len(tail.lines) == 60
    assert len(seen) == 101


runner = test_runner.runner
job = test_runner.job


@pytest.mark.docker
def test_a_failed_jobs_reason_names_its_exception(job):
    out = job("raise RuntimeError('controller diverged')")
    assert out.state is JobState.FAILED
    assert out.reason == "RuntimeError: controller diverged (exit code 1)"


@pytest.mark.docker
def test_a_missing_module_says_what_the_image_provides(job, runner: DockerRunner):
    out = job("import numpy\nimport torch")
    assert out.state is JobState.FAILED
    head = "ModuleNotFoundError: No module named 'torch' (exit code 1); torch is not in the runner"
    assert out.reason.startswith(head), out.reason
    provided = out.reason.split("provides: ", 1)[1].split(", ")
    assert provided == runner.packages.of(out.image_id)
    names = {p.split("==")[0].lower() for p in provided}
    assert {"numpy", "scipy", "gymnasium", "paho-mqtt", "gym-raas-mqtt"} <= names
