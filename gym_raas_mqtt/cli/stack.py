"""``raas stack up|down|demo``: the whole platform on one machine, for demos, tests and development.

One central broker, the dispatcher, the dashboard, and N simulated fleet nodes, each with its own
node-local broker (bridged to the central one), a real-time motor node driving the simulated
pendulum, and an agent running jobs in the hardened runner image. Every process is a real ``raas``
service started with the same ``RAAS_*`` settings an operator would use; nothing is special-cased.

State lives in one folder (default ``var/stack``): brokers' runtime directories, the SQLite
database, the object store, each node's data, logs (``logs/<service>.log``) and ``stack.json``
(pids and addresses), which ``raas stack down`` uses to stop everything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gym_raas_mqtt.errors import RaasError

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
DEMO_EXAMPLES = ("swingup", "random")
READY_TIMEOUT_S = 180.0  # nodes run their first closed-loop reset and self-test before idling
STOP_TIMEOUT_S = 15.0
UPRIGHT_GOAL_S = 5.0


class StackError(RaasError, RuntimeError):
    """The platform could not be started, or a service died."""


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise StackError("no free TCP port")


def _write_secret(path: Path, value: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return path


@dataclass
class Stack:
    """A running (or to-be-started) platform rooted at ``root``.

    Args:
        root: state folder.
        nodes: ids of the simulated nodes.
        central_port: preferred TCP port of the central broker (another free one if taken).
        dashboard_port: preferred port of the dashboard.
        extra_env: settings added to every service (e.g. shorter timeouts in tests).
    """

    root: Path
    nodes: tuple[str, ...] = ("sim-1", "sim-2")
    central_port: int = 1883
    dashboard_port: int = 8080
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    admin: Any = None  # the central broker's admin BrokerAddress, set by up()
    watchers: list[Any] = field(default_factory=list)  # MQTT clients of watch_nodes()

    # -- layout -----------------------------------------------------------------------------------
    @property
    def central_dir(self) -> Path:
        return self.root / "broker-central"

    def node_dir(self, node: str) -> Path:
        return self.root / "nodes" / node

    def socket_path(self, node: str) -> Path:
        path = self.node_dir(node) / "sock" / "local.sock"
        if len(str(path)) > 100:  # unix socket paths are limited to ~107 bytes
            path = Path("/tmp") / f"raas-{os.getuid()}-{abs(hash(str(self.root))) % 10**8}" / \
                node / "local.sock"
        return path

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.root / 'raas.db'}"

    @property
    def store_url(self) -> str:
        return str(self.root / "store")

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.state['dashboard_port']}"

    @property
    def central_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.state['central_port']}"

    # -- processes --------------------------------------------------------------------------------
    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAAS_")}
        env.update({"RAAS_DATABASE_URL": self.db_url, "RAAS_STORE_URL": self.store_url,
                    "RAAS_CENTRAL_MQTT_URL": self.central_url, "PYTHONUNBUFFERED": "1"})
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        out = open(logs / f"{name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "gym_raas_mqtt.cli", "-v", *args],
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=self.root)
        out.close()
        self.procs[name] = proc
        self.state.setdefault("pids", {})[name] = proc.pid
        self._save()
        return proc

    def _save(self) -> None:
        (self.root / "stack.json").write_text(json.dumps(self.state, indent=2))

    def _run_raas(self, args: list[str], env: dict[str, str], input: str | None = None) -> str:
        res = subprocess.run([sys.executable, "-m", "gym_raas_mqtt.cli", *args], env=env,
                             input=input, capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            raise StackError(f"raas {' '.join(args)} failed: {res.stderr.strip()[-500:]}")
        return res.stdout

    def up(self, log: Any = print) -> None:
        """Start everything and return once every node reports ``idle``.

        Raises:
            StackError: a service exited or the fleet was not ready in time.
        """
        from broker_config import provision
        from broker_config.runner import start_broker

        self.root.mkdir(parents=True, exist_ok=True)
        self.root = self.root.resolve()
        self.state = {"central_port": _free_port(self.central_port),
                      "dashboard_port": _free_port(self.dashboard_port),
                      "nodes": list(self.nodes), "brokers": []}
        self._save()
        t0 = time.monotonic()
        central = start_broker("central", self.central_dir, port=self.state["central_port"])
        self.state["brokers"].append(str(self.central_dir))
        self._save()
        admin = self.admin = central.admin_address
        log(f"central broker      {self.central_url}")

        env = self._base_env()
        self._spawn("dispatcher", ["dispatcher"], {
            **env, "RAAS_DISPATCHER_MQTT_PASSWORD_FILE": str(central.secrets / "dispatcher")})
        key = _write_secret(self.root / "secrets" / "dashboard-secret-key", secrets.token_hex(32))
        self._spawn("dashboard", ["dashboard"], {
            **env, "RAAS_SECRET_KEY_FILE": str(key),
            "RAAS_DASHBOARD_PORT": str(self.state["dashboard_port"]),
            "RAAS_DASHBOARD_MQTT_PASSWORD_FILE": str(central.secrets / "dashboard"),
            "RAAS_DASHBOARD_BROKER_ADMIN_URL": f"mqtt://{admin.username}@127.0.0.1:"
                                               f"{self.state['central_port']}",
            "RAAS_DASHBOARD_BROKER_ADMIN_PASSWORD_FILE": str(central.secrets / admin.username),
            "RAAS_SECURE_COOKIES": "0"})
        log(f"dispatcher, dashboard {self.dashboard_url}")

        for node in self.nodes:
            ndir = self.node_dir(node)
            node_pw = _write_secret(ndir / "secrets" / "central",
                                    provision.ensure_node(admin, node))
            bridge_pw = provision.ensure_bridge(admin, node)
            sock = self.socket_path(node)
            local = start_broker("local", ndir / "broker", node_id=node, port=0,
                                 socket_path=sock, central_url=self.central_url,
                                 bridge_password=bridge_pw)
            self.state["brokers"].append(str(ndir / "broker"))
            self._save()
            node_env = {**env, "RAAS_NODE_ID": node, "RAAS_LOCAL_MQTT_URL": f"unix://{sock}",
                        "RAAS_LOCAL_SOCKET": str(sock), "RAAS_DATA_DIR": str(ndir / "data")}
            # SCHED_FIFO for the control loop, as on a Pi (docs/motor-node.md); without
            # CAP_SYS_NICE the motor node says so and runs at normal priority
            self._spawn(f"motor-{node}", ["node", "motor", "--backend", "sim"], {
                **node_env, "RAAS_MOTOR_MQTT_PASSWORD_FILE": str(local.secrets / "motor"),
                "RAAS_MOTOR_RT_PRIORITY": "50"})
            self._spawn(f"agent-{node}", ["node", "agent"], {
                **node_env, "RAAS_AGENT_CENTRAL_PASSWORD_FILE": str(node_pw),
                "RAAS_AGENT_LOCAL_PASSWORD_FILE": str(local.secrets / "agent"),
                "RAAS_CLONE_SCHEMES": "https,ssh,file"})
            log(f"node {node:13s} local broker unix://{sock}, motor node (sim, 20 Hz, SCHED_FIFO), "
                "agent")
        self.wait_ready(admin)
        log(f"fleet ready in {time.monotonic() - t0:.1f} s")

    def check_alive(self) -> None:
        """Raise :class:`StackError` naming any service that has exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.root / "logs" / f"{name}.log").read_text(errors="replace")[-1500:]
                raise StackError(f"{name} exited with code {proc.returncode}; log tail:\n{tail}")

    def wait_ready(self, admin: Any, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until the dashboard answers and every node's retained state is ``idle``."""
        import urllib.request

        states = self.watch_nodes(admin)
        deadline = time.monotonic() + timeout_s
        web_ok = False
        while time.monotonic() < deadline:
            self.check_alive()
            if not web_ok:
                try:
                    urllib.request.urlopen(self.dashboard_url + "/login", timeout=1).close()
                    web_ok = True
                except OSError:
                    pass
            if web_ok and all(states.get(n) == "idle" for n in self.nodes):
                return
            time.sleep(0.2)
        raise StackError(f"fleet not ready after {timeout_s:.0f} s: node states {states}, "
                         f"dashboard {'up' if web_ok else 'down'}")

    def watch_nodes(self, admin: Any) -> dict[str, str]:
        """A dict kept up to date with every node's state (from the retained state topics)."""
        from gym_raas_mqtt import mqtt, protocol

        states: dict[str, str] = {}

        def on_message(client, userdata, msg):  # noqa: ARG001
            try:
                parsed, state = protocol.decode(msg.topic, msg.payload)
            except protocol.ProtocolError:
                return
            if isinstance(state, protocol.NodeState):
                states[parsed.node] = state.state.value

        client = mqtt.make_client(admin)
        client.on_message = on_message
        client.on_connect = lambda c, *a: c.subscribe(
            protocol.topic_filter(protocol.TopicKind.NODE_STATE), qos=1)
        mqtt.connect(client)
        client.loop_start()
        self.watchers.append(client)
        return states

    def down(self, log: Any = print) -> None:
        """Stop every service started by this stack (also from ``stack.json`` of an earlier run)."""
        from broker_config.runner import stop_broker

        state_file = self.root / "stack.json"
        if not self.state and state_file.exists():
            self.state = json.loads(state_file.read_text())
        from gym_raas_mqtt import mqtt

        for client in self.watchers:
            mqtt.shutdown(client)
        self.watchers.clear()
        pids = dict(self.state.get("pids", {}))
        # in stages, each waited for: agents first (they finish the job's bookkeeping and publish
        # `offline` while their motor node and brokers still run), then motor nodes, then the rest
        stages = [[n for n in pids if n.startswith("agent")],
                  [n for n in pids if n.startswith("motor")],
                  [n for n in pids if not n.startswith(("agent", "motor"))]]
        for stage in stages:
            for name in stage:
                _signal(pids[name], signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            for name in stage:
                proc = self.procs.get(name)
                while _alive(pids[name], proc) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if _alive(pids[name], proc):
                    log(f"{name} did not stop in {STOP_TIMEOUT_S:.0f} s: killing it")
                    _signal(pids[name], signal.SIGKILL)
                    if proc:
                        proc.wait(5)
        for d in reversed(self.state.get("brokers", [])):
            stop_broker(d)
        self.state["pids"] = {}
        self.state["brokers"] = []
        if self.root.exists():
            self._save()
        left = [n for n, pid in pids.items() if _alive(pid, self.procs.get(n))]
        if left:
            raise StackError(f"still running after shutdown: {left}")


def _signal(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # each service leads its own session/process group
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _alive(pid: int, proc: subprocess.Popen | None) -> bool:
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of an earlier `raas stack up` counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------
# The demo: a user submits the bundled examples as real git repositories
# ------------------------------------------------------------------------------------------------
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

    def __init__(self, admin: Any, owner: str) -> None:
        from gym_raas_mqtt import mqtt, protocol

        self.first_step_at: dict[str, float] = {}

        def on_message(client, userdata, msg):  # noqa: ARG001
            now = time.time()
            try:
                parsed, batch = protocol.decode(msg.topic, msg.payload)
            except protocol.ProtocolError:
                return
            if isinstance(batch, protocol.TelemetryBatch) and batch.t and \
                    parsed.job not in self.first_step_at:
                self.first_step_at[parsed.job] = now - (batch.t[-1] - batch.t[0])

        self.client = mqtt.make_client(admin)
        self.client.on_message = on_message
        self.client.on_connect = lambda c, *a: c.subscribe(protocol.job_filter(owner), qos=0)
        mqtt.connect(self.client)
        self.client.loop_start()

    def close(self) -> None:
        from gym_raas_mqtt import mqtt

        mqtt.shutdown(self.client)


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
    from gym_raas_mqtt.cli.client import Api

    env = stack._base_env()
    pw_file = _write_secret(stack.root / "secrets" / f"{owner}-password", secrets.token_urlsafe(12))
    stack._run_raas(["user", "add", owner, "--password-file", str(pw_file), "--max-running",
                     str(len(stack.nodes))], env)
    token = stack._run_raas(["user", "token", owner], env).strip().splitlines()[-1].strip()
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


def _follow(stack: Stack, api: Any, jobs: dict[str, tuple[str, float]], out: Any) -> dict:
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


# ------------------------------------------------------------------------------------------------
def cmd_up(args: argparse.Namespace) -> int:
    stack = Stack(Path(args.dir), nodes=tuple(args.nodes), central_port=args.central_port,
                  dashboard_port=args.dashboard_port)
    try:
        stack.up()
    except BaseException:
        stack.down()
        raise
    print(f"platform running; dashboard {stack.dashboard_url}; stop it with `raas stack down "
          f"--dir {args.dir}` (or `make down`)")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    Stack(Path(args.dir)).down()
    print("platform stopped")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    if root.exists():
        Stack(root).down(log=lambda *_: None)
        shutil.rmtree(root)
    stack = Stack(root, nodes=tuple(args.nodes), central_port=args.central_port,
                  dashboard_port=args.dashboard_port)
    t0 = time.monotonic()
    ok = False
    try:
        stack.up()
        results = run_demo(stack)
        ok = print_results(results, stack)
    finally:
        stack.down()
        print(f"everything stopped; demo took {time.monotonic() - t0:.1f} s")
    return 0 if ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stack", help="run the whole platform on this machine (demo/development)")
    ssub = p.add_subparsers(dest="stack_command", metavar="ACTION", required=True)
    for name, func, text, default_dir in (
            ("up", cmd_up, "start broker, dispatcher, dashboard and simulated nodes", "var/stack"),
            ("down", cmd_down, "stop what `up` started", "var/stack"),
            ("demo", cmd_demo, "start, run the example jobs, print results, stop", "var/demo")):
        q = ssub.add_parser(name, help=text)
        q.add_argument("--dir", default=default_dir, help=f"state folder (default {default_dir})")
        if name != "down":
            q.add_argument("--nodes", nargs="+", default=["sim-1", "sim-2"], help="node ids")
            q.add_argument("--central-port", type=int, default=1883)
            q.add_argument("--dashboard-port", type=int, default=8080)
        q.set_defaults(func=func)
