"""Following a job to its end from the command line: ``raas submit --wait`` and ``raas wait JOB``.

One progress line (queue position and estimated wait; node, elapsed/limit and an ETA; episode,
step and return), the summary at the end, and on Ctrl-C a line saying the job keeps running and
how to reattach. A job is named by its id or a unique prefix of it (the API resolves it).
"""

from __future__ import annotations

import sys
import time
import urllib.parse
from typing import Any

from gym_raas_mqtt.cli.api import Api

TERMINAL = {"succeeded", "failed", "timed_out", "canceled", "error"}
OK_STATES = {"succeeded", "timed_out"}  # a timed-out run is still valid data
EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""


class Detached(Exception):
    """The user stopped waiting (Ctrl-C); the job goes on without us.

    Attributes:
        job_id: the job left running.
        state: its last known state.
    """

    def __init__(self, job_id: str, state: str) -> None:
        super().__init__(job_id)
        self.job_id, self.state = job_id, state


def _duration(seconds: float) -> str:
    """``45 s``, ``3 min``, ``2 h 5 min`` (rounded; for estimates)."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60} min"


def progress_line(job: dict[str, Any]) -> str:
    """One line saying where the job is.

    Queued: position and, once runs have finished, the estimated wait. Running: node, elapsed and
    limit [s], the time left at most, then episode, step and return. The part before the first
    ``" · "`` changes only with the state, so logs get one line per change.
    """
    state = job["state"]
    facts = job.get("facts") or {}
    if state == "queued":
        pos = job.get("queue_position")
        wait = facts.get("estimated_wait_s")
        if not pos:
            return "queued"
        return f"queued (position {pos}" + (f", ~{_duration(wait)} wait)" if wait else ")")
    if state == "assigned":
        return f"assigned to {job.get('node_id')}, starting"
    if state == "running":
        text = f"running on {job.get('node_id')}"
        elapsed, limit = facts.get("elapsed_s"), facts.get("time_limit_s")
        if elapsed is not None and limit:
            text += f" · {elapsed:.0f}/{limit:.0f} s · ends in ≤ {max(0.0, limit - elapsed):.0f} s"
        live = job.get("live") or {}
        if live.get("step") is not None:
            text += (f" · episode {live.get('episode_id')} step {live['step']}"
                     f" · return {live.get('episode_reward', 0.0):.2f}")
        return text
    return state


def wait_for(api: Api, job_id: str, interval_s: float = 1.0, out: Any = None) -> dict:
    """Poll the job until it ends, showing one progress line; returns the final job.

    Raises:
        Detached: Ctrl-C while waiting (the job is not touched).
        ClientError: the API refused (no such job, ambiguous prefix, ...).
    """
    out = out or sys.stdout
    tty = out.isatty() if hasattr(out, "isatty") else False
    last, state = "", "unknown"
    try:
        while True:
            job = api.json("GET", f"/api/v1/jobs/{urllib.parse.quote(job_id)}")
            job_id, state = job["id"], job["state"]
            line = progress_line(job)
            if tty:
                out.write("\r\033[K" + line)
                out.flush()
            elif line.split(" · ")[0] != last.split(" · ")[0]:
                print(line, file=out, flush=True)  # logs get a line per change, not per step
            last = line
            if state in TERMINAL:
                if tty:
                    out.write("\n")
                return job
            time.sleep(interval_s)
    except KeyboardInterrupt:
        if tty:
            out.write("\n")
        raise Detached(job_id, state) from None


def detached_hint(e: Detached) -> str:
    """What to tell a user who pressed Ctrl-C while waiting."""
    return (f"stopped waiting; job {e.job_id} is still {e.state} on the platform (Ctrl-C does not "
            f"cancel it). Reattach: raas wait {e.job_id} · output: raas logs -f {e.job_id} · "
            f"cancel: raas cancel {e.job_id}")


def follow(api: Api, job_id: str, print_summary: Any) -> int:
    """Wait for the job, print its summary with ``print_summary(job)``; the exit status (0 for
    succeeded or timed out, 1 otherwise, 130 after Ctrl-C with the reattach hint)."""
    try:
        final = wait_for(api, job_id)
    except Detached as e:
        print(detached_hint(e), file=sys.stderr)
        return EXIT_INTERRUPTED
    print_summary(final)
    return 0 if final["state"] in OK_STATES else 1
