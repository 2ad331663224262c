"""The demo: a user submits the bundled example controllers as real git repositories to a running
dev stack, follows them through the REST API, and reads the results."""

from __future__ import annotations

import math
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gym_raas_mqtt import protocol
from gym_raas_mqtt.cli.api import Api
from gym_raas_mqtt.mqtt import BrokerAddress, Link
from broker_config.seed import write_private
from devstack.processes import Stack, StackError

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
DEMO_EXAMPLES = ("swingup", "random")
UPRIGHT_GOAL_S = 5.0


def make_git_repo(example: str, dest: Path) -> str:
    """Copy ``examples/<example>`` into a fresh git repository at ``dest``; returns its file:// URL."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(EXAMPLES_DIR / example, dest,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    git = ["git", "-C", str(dest), "-c", "user.name=RaaS demo", "-c", "user.email=demo@localhost",
           "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", f"{example} controller"]):
        subprocess.run(git + args, check=True, capture_output=True)
    return dest.resolve().as_uri()


class TelemetryClock:
    """Records when each job's first step happened, from its telemetry on the central broker.

    A telemetry batch arrives after the motor node has collected it; the first sample's wall time
    is the batch's arrival minus the span of samples in it (motor clock), so the measured
    submit → first step interval does not include the batching delay.
    """

    def __init__(self, admin: BrokerAddress, owner: str) -> None:
        self.first_step_at: dict[str, float] = {}

        def on_message(parsed: protocol.ParsedTopic, batch: Any) -> None:
            now = time.time()
            if isinstance(batch, protocol.TelemetryBatch) and batch.t and \
                    parsed.job not in self.first_step_at:
                self.first_step_at[parsed.job] = now - (batch.t[-1] - batch.t[0])

        self.link = Link(admin, f"demo-clock-{owner}", name="demo",
                         subscriptions=[(protocol.job_filter(owner), 0)],
                         on_message=on_message).start()

    def close(self) -> None:
        """Disconnect."""
        self.link.close()


@dataclass
class DemoResult:
    """What the demo prints for one job (taken from the stored result bundle's summary)."""

    example: str
    job_id: str
    node: str
    state: str
    return_: float | None
    seconds_upright: float | None
    deadline_misses: int | None
    submit_to_first_step_s: float | None
    summary: dict[str, Any]


def run_demo(stack: Stack, out: Any = print, owner: str = "demo") -> list[DemoResult]:
    """Create a user, submit the examples through the REST API, follow them, return the results.

    Raises:
        StackError: a job did not end within its time limit plus a margin.
    """
    env = stack.base_env()
    pw_file = write_private(stack.root / "secrets" / f"{owner}-password",
                            secrets.token_urlsafe(12) + "\n")
    stack.run_raas(["user", "add", owner, "--password-file", str(pw_file), "--max-running",
                     str(len(stack.nodes))], env)
    token = stack.run_raas(["user", "token", owner], env).strip().splitlines()[-1].strip()
    api = Api(stack.dashboard_url, token)
    out(f"user '{owner}' created (password in {pw_file})")

    clock = TelemetryClock(stack.admin, owner)
    jobs: dict[str, tuple[str, float]] = {}
    try:
        for example in DEMO_EXAMPLES:
            url = make_git_repo(example, stack.root / "repos" / example)
            submitted = time.time()
            job = api.json("POST", "/api/v1/jobs", {"url": url, "ref": "main",
                                                   "time_limit_s": 60})
            jobs[job["id"]] = (example, submitted)
            out(f"submitted {example:8s} as job {job['id']} ({url})")
        final = _follow(stack, api, jobs, out)
    finally:
        clock.close()
    results = []
    for job_id, (example, submitted) in jobs.items():
        job = final[job_id]
        s = job.get("summary") or {}
        first = clock.first_step_at.get(job_id)
        results.append(DemoResult(example, job_id, job.get("node_id") or "-", job["state"],
                                  s.get("return"), s.get("seconds_upright"),
                                  s.get("deadline_misses"),
                                  None if first is None else first - submitted, s))
    return results


def _follow(stack: Stack, api: Api, jobs: dict[str, tuple[str, float]], out: Any) -> dict:
    """Poll the jobs until each has ended, printing a line when one's state changes (and every
    ~100 steps while it runs); returns the final job views by id.

    Raises:
        StackError: a service died, or the jobs did not end within 300 s.
    """
    terminal = {"succeeded", "failed", "timed_out", "canceled", "error"}
    last: dict[str, str] = {}
    final: dict[str, dict] = {}
    deadline = time.monotonic() + 300
    while len(final) < len(jobs):
        if time.monotonic() > deadline:
            raise StackError(f"jobs did not finish in time: {last}")
        stack.check_alive()
        for job_id, (example, _) in jobs.items():
            if job_id in final:
                continue
            job = api.json("GET", f"/api/v1/jobs/{job_id}")
            line = job["state"]
            if job["state"] == "queued" and job.get("queue_position"):
                line += f" (position {job['queue_position']})"
            elif job.get("node_id"):
                line += f" on {job['node_id']}"
            live = job.get("live") or {}
            if job["state"] == "running" and live.get("step") is not None:
                line += f" · step {live['step']} · return {live.get('episode_reward', 0.0):.1f}"
            if line != last.get(job_id) and (line.split(" · ")[0] != last.get(job_id, "")
                                             .split(" · ")[0] or "step" in line and
                                             int(live.get("step", 0)) % 100 < 10):
                out(f"  {example:8s} {line}")
            last[job_id] = line
            if job["state"] in terminal:
                final[job_id] = job
        time.sleep(0.5)
    return final


def print_results(results: list[DemoResult], stack: Stack, out: Any = print) -> bool:
    """Print the results table; returns True when the swing-up balanced for ≥ 5 s."""
    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    out("")
    out(f"{'job':16s} {'example':8s} {'node':6s} {'state':10s} {'return':>9s} "
        f"{'upright [s]':>11s} {'misses':>6s} {'submit→step [s]':>15s}")
    for r in results:
        out(f"{r.job_id:16s} {r.example:8s} {r.node:6s} {r.state:10s} {fmt(r.return_, '9.1f')} "
            f"{fmt(r.seconds_upright, '11.2f')} {fmt(r.deadline_misses, '6d')} "
            f"{fmt(r.submit_to_first_step_s, '15.2f')}")
    swing = next((r for r in results if r.example == "swingup"), None)
    ok = bool(swing and swing.state == "succeeded" and (swing.seconds_upright or 0) >= UPRIGHT_GOAL_S)
    up = swing.seconds_upright if swing and swing.seconds_upright is not None else math.nan
    out("")
    out(f"swing-up {'SUCCEEDED' if ok else 'FAILED'}: upright (|θ| < 0.3 rad) for {up:.2f} s "
        f"continuously (goal ≥ {UPRIGHT_GOAL_S:.0f} s) on the real-time simulated node")
    out(f"dashboard: {stack.dashboard_url}  (results stay in {stack.root})")
    return ok
