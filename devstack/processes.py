"""The processes of a dev stack: one central broker, the dispatcher, the dashboard, and simulated
fleet nodes (node-local broker, real-time motor node, agent) — started, watched and stopped.

Every process is a real ``raas`` service started with the same ``RAAS_*`` settings an operator
would use; nothing is special-cased. State lives in one folder (default ``var/stack``): brokers'
runtime directories, the SQLite database, the object store, each node's data, logs
(``logs/<service>.log``) and ``stack.json`` (pids and addresses), which ``down`` uses.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker_config import provision
from broker_config.runner import start_broker, stop_broker
from broker_config.seed import write_private
from gym_raas_mqtt import protocol
from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.mqtt import BrokerAddress, Link

READY_TIMEOUT_S = 180.0  # nodes run their first closed-loop reset and self-test before idling
STOP_TIMEOUT_S = 15.0


class StackError(RaasError, RuntimeError):
    """The platform could not be started, or a service died."""


def _free_port(preferred: int) -> int:
    """``preferred`` if it is free on 127.0.0.1, else any free TCP port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise StackError("no free TCP port")


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
    admin: BrokerAddress | None = None  # the central broker's admin, set by up()
    watchers: list[Link] = field(default_factory=list)  # connections of watch_nodes()

    # -- layout -----------------------------------------------------------------------------------
    @property
    def central_dir(self) -> Path:
        """The central broker's runtime directory."""
        return self.root / "broker-central"

    def node_dir(self, node: str) -> Path:
        """Node ``node``'s folder: its local broker, secrets and data."""
        return self.root / "nodes" / node

    def socket_path(self, node: str) -> Path:
        """The unix socket of ``node``'s local broker (under /tmp when the folder's path is too
        long for a socket)."""
        path = self.node_dir(node) / "sock" / "local.sock"
        if len(str(path)) > 100:  # unix socket paths are limited to ~107 bytes
            path = Path("/tmp") / f"raas-{os.getuid()}-{abs(hash(str(self.root))) % 10**8}" / \
                node / "local.sock"
        return path

    @property
    def db_url(self) -> str:
        """The stack's SQLite job database."""
        return f"sqlite:///{self.root / 'raas.db'}"

    @property
    def store_url(self) -> str:
        """The stack's local object store."""
        return str(self.root / "store")

    @property
    def dashboard_url(self) -> str:
        """Where the dashboard serves (known once :meth:`up` chose its port)."""
        return f"http://127.0.0.1:{self.state['dashboard_port']}"

    @property
    def central_url(self) -> str:
        """The central broker's address (known once :meth:`up` chose its port)."""
        return f"mqtt://127.0.0.1:{self.state['central_port']}"

    # -- processes --------------------------------------------------------------------------------
    def base_env(self) -> dict[str, str]:
        """The environment every service of this stack starts with (shared ``RAAS_*`` settings)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAAS_")}
        env.update({"RAAS_DATABASE_URL": self.db_url, "RAAS_STORE_URL": self.store_url,
                    "RAAS_CENTRAL_MQTT_URL": self.central_url, "PYTHONUNBUFFERED": "1",
                    # the demo submits local git repositories: file:// URLs, accepted by the
                    # dashboard and fetched by the agents (production leaves file off)
                    "RAAS_CLONE_SCHEMES": "https,ssh,file"})
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        """Start ``raas <args>`` as service ``name`` (log in ``logs/<name>.log``) and record it."""
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
        """Write ``stack.json`` (pids, ports, broker directories) for a later ``down``."""
        (self.root / "stack.json").write_text(json.dumps(self.state, indent=2))

    def run_raas(self, args: list[str], env: dict[str, str], input: str | None = None) -> str:
        """Run a one-off ``raas`` command in this stack's environment; returns its stdout.

        Raises:
            StackError: it failed (its stderr's tail says why).
        """
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

        env = self.base_env()
        self._spawn("dispatcher", ["dispatcher"], {
            **env, "RAAS_DISPATCHER_MQTT_PASSWORD_FILE": str(central.secrets / "dispatcher")})
        key = write_private(self.root / "secrets" / "dashboard-secret-key",
                            secrets.token_hex(32) + "\n")
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
            node_pw = write_private(ndir / "secrets" / "central",
                                    provision.ensure_node(admin, node) + "\n")
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
                "RAAS_AGENT_LOCAL_ADMIN_PASSWORD_FILE": str(local.secrets / "admin")})
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

    def wait_ready(self, admin: BrokerAddress, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until the dashboard answers and every node's retained state is ``idle``."""
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

    def watch_nodes(self, admin: BrokerAddress) -> dict[str, str]:
        """A dict kept up to date with every node's state (from the retained state topics)."""
        states: dict[str, str] = {}

        def on_message(parsed: protocol.ParsedTopic, msg: Any) -> None:
            if isinstance(msg, protocol.NodeState):
                states[parsed.node] = msg.state.value

        link = Link(admin, f"stack-watch-{os.getpid()}", name="stack",
                    subscriptions=[(protocol.topic_filter(protocol.TopicKind.NODE_STATE), 1)],
                    on_message=on_message).start()
        self.watchers.append(link)
        return states

    def down(self, log: Any = print) -> None:
        """Stop every service started by this stack (also from ``stack.json`` of an earlier run)."""
        state_file = self.root / "stack.json"
        if not self.state and state_file.exists():
            self.state = json.loads(state_file.read_text())
        for link in self.watchers:
            link.close()
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
    """Send ``sig`` to a service's process group (it leads its own session)."""
    try:
        os.killpg(pid, sig)  # each service leads its own session/process group
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _alive(pid: int, proc: subprocess.Popen | None) -> bool:
    """Whether a service still runs (``proc`` when this process started it, else by pid)."""
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
