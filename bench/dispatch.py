"""Dispatcher benchmark: assignment throughput and node-idle → JobAssignment latency.

Starts its own broker (``broker_config.runner.start_broker`` when it works, else a temporary
Mosquitto tuned like the project's: TCP_NODELAY, 100 in-flight, 20000 queued), fills a fresh job
database with ``--jobs`` instant jobs spread over ``--owners`` owners (``max_running`` 1 each, so
the per-owner cap does not serialise the queue), runs the dispatcher as a separate process
(``python -m dispatcher``, as deployed) and simulates ``--nodes`` fleet nodes with a few paho
clients, each multiplexing several node ids over real per-node topics (``nodes/<id>/state``,
``jobs/next``, ``update``, ``accepted``). Each simulated node: publishes ``idle`` (retained) →
receives its JobAssignment → sends ``running`` → on accepted sends ``succeeded`` → on accepted
publishes ``idle`` again. Latency is measured in this process from the ``idle`` publish to the
JobAssignment's arrival (one clock). Goal (issue 4 item 8): p99 ≤ 50 ms, 100 nodes, 1000 jobs.

Usage::

    .venv/bin/python bench/dispatch.py [--nodes 100] [--jobs 1000] [--clients 10]
                                       [--database sqlite|postgresql|postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gym_raas_mqtt import mqtt, protocol  # noqa: E402
from gym_raas_mqtt.protocol import JobState, NodeStatus, TopicKind  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"broker not listening on {port}")


def start_broker(workdir: Path) -> tuple[mqtt.BrokerAddress, callable, str]:
    """A broker for the bench: the project's central config if available, else a plain one."""
    try:
        from broker_config.runner import start_broker as project_start, stop_broker

        port = free_port()
        handle = project_start("central", workdir / "central", host="127.0.0.1", port=port)
        address = mqtt.BrokerAddress("tcp", "127.0.0.1", port, "admin", handle.secret("admin"))
        return address, lambda: stop_broker(workdir / "central"), "broker_config central"
    except Exception as e:  # noqa: BLE001 - the fallback is the point
        print(f"(broker_config.start_broker unavailable: {type(e).__name__}: {e}; "
              "using a temporary mosquitto)", file=sys.stderr)
    port, password = free_port(), uuid.uuid4().hex
    pw = workdir / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "admin", password], check=True,
                   capture_output=True)
    (workdir / "acl").write_text("user admin\ntopic readwrite #\n")
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {pw}\n"
                    f"acl_file {workdir / 'acl'}\nset_tcp_nodelay true\n"
                    "max_inflight_messages 100\nmax_queued_messages 20000\npersistence false\n"
                    + ("user root\n" if os.geteuid() == 0 else ""))
    with open(workdir / "mosquitto.log", "ab") as log:
        proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=log)
    wait_port(port)

    def stop() -> None:
        proc.terminate()
        proc.wait(5)

    return mqtt.BrokerAddress("tcp", "127.0.0.1", port, "admin", password), stop, "temp mosquitto"


def start_postgres(workdir: Path) -> tuple[str, callable]:
    """A temporary PostgreSQL cluster (run as ``nobody`` when we are root); default durability."""
    pg = workdir / "pg"
    pg.mkdir()
    runas = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    if runas:
        os.chmod(pg, 0o777)
    port = free_port()
    subprocess.run([*runas, "initdb", "-D", str(pg / "data"), "-U", "raas", "-A", "trust",
                    "--no-sync"], check=True, capture_output=True)
    subprocess.run([*runas, "pg_ctl", "-D", str(pg / "data"), "-l", str(pg / "log"), "-w",
                    "-o", f"-p {port} -k {pg} -h 127.0.0.1", "start"], check=True,
                   capture_output=True)

    def stop() -> None:
        subprocess.run([*runas, "pg_ctl", "-D", str(pg / "data"), "-m", "fast", "stop"],
                       capture_output=True)

    return f"postgresql://raas@127.0.0.1:{port}/postgres", stop


def fill_database(url: str, n_jobs: int, n_owners: int) -> None:
    from dispatcher import queue
    from dispatcher.models import Job, JobEvent, Owner, database, init_db

    init_db(url)
    limits = queue.QueueLimits()
    owners = [f"owner{i:04d}" for i in range(n_owners)]
    t0 = time.time()
    with database.atomic():
        Owner.insert_many([{"name": o, "max_running": 1} for o in owners]).execute()
    jobs, events = [], []
    for i in range(n_jobs):
        jid = f"bench{i:06d}"
        jobs.append(dict(id=jid, owner=owners[i % n_owners], state="queued", source_kind="git",
                         source_url="https://example.org/bench.git", time_limit_s=60.0,
                         submitted_at=t0 + i * 1e-3, max_attempts=limits.max_attempts))
        events.append(dict(job=jid, from_state=None, to_state="queued", actor="bench",
                           at=t0 + i * 1e-3))
    with database.atomic():
        for k in range(0, n_jobs, 200):  # via the bulk path: this is set-up, not the subject
            Job.insert_many(jobs[k:k + 200]).execute()
            JobEvent.insert_many(events[k:k + 200]).execute()
    database.close()


class FleetClient:
    """One paho client speaking for several simulated nodes (each on its own topics)."""

    def __init__(self, address: mqtt.BrokerAddress, node_ids: list[str], bench: "Bench") -> None:
        self.nodes = node_ids
        self.bench = bench
        self.version: dict[str, int] = {}
        self.ready = threading.Event()
        c = mqtt.make_client(address, f"bench-fleet-{uuid.uuid4().hex[:8]}")
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *a: self.ready.set()
        c.on_message = self._on_message
        c.max_inflight_messages_set(100)
        self.client = c
        mqtt.connect(c, keepalive_s=30)
        c.loop_start()

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        subs = []
        for n in self.nodes:
            subs += [(protocol.topic(TopicKind.NODE_JOB_NEXT, node=n), 1),
                     (protocol.topic_filter(TopicKind.NODE_JOB_ACCEPTED, node=n), 1),
                     (protocol.topic_filter(TopicKind.NODE_JOB_REJECTED, node=n), 1)]
        client.subscribe(subs)

    def idle(self, node: str) -> None:
        msg = protocol.NodeState(state=NodeStatus.IDLE, session=1, ts=time.time())
        self.bench.idle_at[node] = time.perf_counter()
        self.client.publish(protocol.topic(TopicKind.NODE_STATE, node=node), msg.to_bytes(),
                            qos=1, retain=True)

    def _send(self, node: str, job: str, execution: int, status: JobState, version: int) -> None:
        upd = protocol.JobUpdate(job_id=job, execution=execution, expected_version=version,
                                 status=status, ts=time.time())
        self.client.publish(protocol.topic(TopicKind.NODE_JOB_UPDATE, node=node, job=job),
                            upd.to_bytes(), qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        now = time.perf_counter()
        parsed, m = protocol.decode(msg.topic, bytes(msg.payload))
        node = parsed.node
        if parsed.kind == TopicKind.NODE_JOB_NEXT:
            if m is None:
                return
            t_idle = self.bench.idle_at.pop(node, None)
            if t_idle is not None:
                self.bench.record(now - t_idle, now)
            self._send(node, m.job_id, m.execution, JobState.RUNNING, m.version)
        elif parsed.kind == TopicKind.NODE_JOB_ACCEPTED:
            if m.version == 2:  # running accepted → the instant job is done
                self._send(node, m.job_id, m.execution, JobState.SUCCEEDED, m.version)
            else:  # terminal accepted → ask for more
                self.bench.done()
                self.idle(node)
        else:
            self.bench.rejected += 1


class Bench:
    def __init__(self, n_jobs: int) -> None:
        self.n_jobs = n_jobs
        self.idle_at: dict[str, float] = {}
        self.latencies: list[tuple[float, float]] = []  # (received at, latency)
        self.completed = 0
        self.rejected = 0
        self.finished = threading.Event()
        self._lock = threading.Lock()

    def record(self, latency: float, at: float) -> None:
        with self._lock:
            self.latencies.append((at, latency))

    def done(self) -> None:
        with self._lock:
            self.completed += 1
            if self.completed >= self.n_jobs:
                self.finished.set()


def cpu_s(pid: int) -> float:
    """User + system CPU time of process ``pid`` [s] (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--owners", type=int, default=250)
    ap.add_argument("--clients", type=int, default=10, help="paho clients carrying the nodes")
    ap.add_argument("--database", default="sqlite",
                    help="sqlite (temp file), postgresql (temp cluster) or a postgresql:// URL")
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="raas-bench-dispatch-"))
    os.chmod(workdir, 0o755)
    address, stop_broker, broker_kind = start_broker(workdir)
    stop_pg = None
    if args.database == "sqlite":
        db_url = f"sqlite:///{workdir / 'raas.db'}"
    elif args.database == "postgresql":
        db_url, stop_pg = start_postgres(workdir)
    else:
        db_url = args.database
    proc = None
    clients: list[FleetClient] = []
    try:
        fill_database(db_url, args.jobs, args.owners)
        env = {**os.environ, "RAAS_DATABASE_URL": db_url,
               "RAAS_CENTRAL_MQTT_URL": address.url(with_credentials=True),
               "RAAS_DISPATCHER_MQTT_USERNAME": "", "PYTHONPATH": str(ROOT),
               "RAAS_DISPATCHER_CLIENT_ID": f"bench-dispatcher-{uuid.uuid4().hex[:6]}"}
        with open(workdir / "dispatcher.log", "ab") as log:
            # BENCH_DISPATCHER_CMD: run it differently (e.g. under a profiler wrapper)
            cmd = os.environ.get("BENCH_DISPATCHER_CMD", f"{sys.executable} -m dispatcher").split()
            proc = subprocess.Popen(cmd, env=env, cwd=ROOT,
                                    stdout=log, stderr=subprocess.STDOUT)
        # wait for the dispatcher's birth before the fleet appears
        born = threading.Event()
        w = mqtt.make_client(address)
        w.on_connect = lambda c, *a: c.subscribe(protocol.topic(TopicKind.DISPATCHER_STATE), 1)
        w.on_message = lambda c, u, m: (protocol.DispatcherState.from_bytes(m.payload).online
                                        and born.set())
        mqtt.connect(w)
        w.loop_start()
        if not born.wait(20):
            raise SystemExit("dispatcher did not come up; see " + str(workdir / "dispatcher.log"))
        w.disconnect()
        w.loop_stop()

        bench = Bench(args.jobs)
        node_ids = [f"node{i:03d}" for i in range(args.nodes)]
        per = -(-args.nodes // args.clients)
        for k in range(0, args.nodes, per):
            clients.append(FleetClient(address, node_ids[k:k + per], bench))
        for c in clients:
            assert c.ready.wait(10)
        cpu0, t0 = cpu_s(proc.pid), time.perf_counter()
        for c in clients:
            for n in c.nodes:
                c.idle(n)
        ok = bench.finished.wait(args.timeout)
        t1, cpu1 = time.perf_counter(), cpu_s(proc.pid)
        lat = [l for _, l in bench.latencies]
        first_wave = sorted(bench.latencies)[:args.nodes]
        steady = [l for at, l in sorted(bench.latencies)[args.nodes:]]
        print(f"dispatcher benchmark: {args.nodes} nodes on {len(clients)} clients, "
              f"{args.jobs} queued jobs, {args.owners} owners (max_running 1), "
              f"database {args.database.split('@')[-1]}, {broker_kind}")
        if not ok:
            print(f"TIMEOUT: only {bench.completed}/{args.jobs} jobs completed")
        print(f"  completed {bench.completed} jobs in {t1 - t0:.2f} s → "
              f"{len(lat) / (t1 - t0):.0f} assignments/s (each job: assign, running, "
              f"succeeded, 2 replies, idle); rejected replies {bench.rejected}")
        print(f"  dispatcher CPU {cpu1 - cpu0:.2f} s = {1e3 * (cpu1 - cpu0) / max(1, len(lat)):.2f}"
              f" ms per job; machine load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} CPUs")

        def line(name: str, xs: list[float]) -> None:
            if xs:
                print(f"  idle → assignment {name:<22} n={len(xs):5d}  "
                      f"p50 {1e3 * statistics.median(xs):6.2f} ms  p90 {1e3 * pct(xs, 90):6.2f} ms"
                      f"  p99 {1e3 * pct(xs, 99):6.2f} ms  max {1e3 * max(xs):6.2f} ms")

        line("all", lat)
        line("first wave (burst)", [l for _, l in first_wave])
        line("steady state", steady)
        return 0 if ok else 1
    finally:
        for c in clients:
            c.client.disconnect()
            c.client.loop_stop()
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        stop_broker()
        if stop_pg is not None:
            stop_pg()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
