"""The Docker job runner against the real engine: outcomes, limits and hostile user code."""

from __future__ import annotations

import gc
import getpass
import shutil
import socket
import subprocess
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest

from fleet_node.runner import (INSTALLATION_LABEL, JOB_LABEL, NODE_LABEL, DockerRunner,
                               RunnerConfig, RunnerError, run_job)
from gym_raas_mqtt.config import load
from gym_raas_mqtt.errors import ConfigError
from gym_raas_mqtt.protocol import JobState, LogStream
from tests.conftest import free_port, wait_port

# Small limits keep the hostile tests fast; production defaults are in RunnerConfig.
TEST_CONFIG = dict(memory_mib=128, pids=64, tmpfs_mib=16, default_time_limit_s=10.0,
                   max_time_limit_s=30.0, output_cap_bytes=64 * 1024)


# ------------------------------------------------------------------------------ no engine needed
def test_time_limit_is_clamped_to_the_maximum():
    c = RunnerConfig(default_time_limit_s=120, max_time_limit_s=300)
    assert c.time_limit(None) == 120
    assert c.time_limit(0) == 120
    assert c.time_limit(60) == 60
    assert c.time_limit(10_000) == 300


def test_config_from_environment_and_rejects_nonsense():
    c = load(RunnerConfig, environ={"RAAS_RUNNER_MEMORY_MIB": "256", "RAAS_RUNNER_CPUS": "0.5"})
    assert (c.memory_mib, c.cpus) == (256, 0.5)
    with pytest.raises(ConfigError):
        RunnerConfig(default_time_limit_s=500, max_time_limit_s=100)
    with pytest.raises(ConfigError):
        RunnerConfig(memory_mib=4)


def test_unreachable_engine_is_a_platform_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    code, sock = _code_dir(tmp_path, "print(1)"), _dummy_socket(tmp_path)
    with warnings.catch_warnings():  # docker-py leaks the socket of a failed connect()
        warnings.simplefilter("ignore", ResourceWarning)
        out = run_job(RunnerConfig(), "j1", code, {"RAAS_NODE_ID": "n1"}, sock, 5)
        gc.collect()
    assert out.state is JobState.ERROR
    assert "not reachable" in out.reason


# ------------------------------------------------------------------------------------- helpers
def _code_dir(tmp_path: Path, source: str) -> Path:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "run.py").write_text(textwrap.dedent(source))
    code.chmod(0o755)
    (code / "run.py").chmod(0o644)
    return code


def _dummy_socket(tmp_path: Path) -> Path:
    """A bound unix socket in a directory of its own (nobody listens: these jobs need no broker)."""
    d = tmp_path / "sock"
    d.mkdir(exist_ok=True)
    d.chmod(0o755)
    path = d / "mqtt.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()
    return path


class Job:
    """Runs one run.py through the runner and keeps its output lines."""

    def __init__(self, runner: DockerRunner, tmp_path: Path, node_id: str) -> None:
        self.runner, self.tmp_path, self.node_id = runner, tmp_path, node_id
        self.lines: list[tuple[LogStream, str]] = []
        self.first_output_s: float | None = None

    def __call__(self, source: str, *, limit: float | None = 10, socket_path: Path | None = None,
                 env: dict[str, str] | None = None, cancel: threading.Event | None = None):
        code = _code_dir(self.tmp_path, source)
        sock = socket_path or _dummy_socket(self.tmp_path)
        t0 = time.monotonic()

        def on_output(stream: LogStream, line: str) -> None:
            if self.first_output_s is None:
                self.first_output_s = time.monotonic() - t0
            self.lines.append((stream, line))

        full_env = {"RAAS_NODE_ID": self.node_id, **(env or {})}
        return self.runner.run_job(f"job-{self.node_id}", code, full_env, sock, limit, on_output,
                                   cancel=cancel)

    def text(self, stream: LogStream | None = None) -> str:
        return "\n".join(line for s, line in self.lines if stream is None or s is stream)


@pytest.fixture
def runner(docker, runner_image) -> DockerRunner:
    return DockerRunner(RunnerConfig(image=runner_image, **TEST_CONFIG), client=docker)


@pytest.fixture
def job(runner, docker, tmp_path, uid):
    """A job runner for this test, with a check that it left no container behind."""
    j = Job(runner, tmp_path, uid)
    yield j
    left = docker.containers.list(all=True, filters={"label": f"{NODE_LABEL}={uid}"})
    assert not left, f"containers left behind: {[c.name for c in left]}"



# ------------------------------------------------------------------------------------ outcomes
@pytest.mark.docker
def test_prints_and_exits_0_succeeds_with_its_output(job, runner):
    out = job("""
        import sys
        print("hello from the job")
        print("to stderr", file=sys.stderr)
        print("no newline at the end", end="")
    """)
    assert out.state is JobState.SUCCEEDED, out
    assert out.exit_code == 0 and out.reason is None
    assert job.text(LogStream.STDOUT) == "hello from the job\nno newline at the end"
    assert job.text(LogStream.STDERR) == "to stderr"
    assert out.image_id == runner.image_id() and out.image_id.startswith("sha256:")
    assert not out.truncated and out.output_bytes == len(
        "hello from the job\nno newline at the end") + len("to stderr\n")
    assert 0 < out.duration_s < 10


@pytest.mark.docker
def test_nonzero_exit_fails_with_the_exit_code(job):
    out = job("import sys; print('bad'); sys.exit(3)")
    assert out.state is JobState.FAILED
    assert out.exit_code == 3 and out.reason == "exit code 3"
    assert not out.oom_killed


@pytest.mark.docker
def test_uncaught_exception_fails_and_the_traceback_is_kept(job):
    out = job("raise RuntimeError('controller diverged')")
    assert out.state is JobState.FAILED and out.exit_code == 1
    assert "RuntimeError: controller diverged" in job.text(LogStream.STDERR)


@pytest.mark.docker
def test_endless_loop_times_out_and_the_container_is_gone(job, docker, uid):
    t0 = time.monotonic()
    out = job("""
        print("started", flush=True)
        while True:
            pass
    """, limit=3)
    assert out.state is JobState.TIMED_OUT, out
    assert out.reason == "wall-clock limit of 3 s reached"
    assert out.exit_code == 137  # SIGKILL
    assert 3.0 <= out.duration_s < 5.0
    assert time.monotonic() - t0 < 8
    assert job.text() == "started"
    assert docker.containers.list(all=True, filters={"label": f"{JOB_LABEL}=job-{uid}"}) == []


@pytest.mark.docker
def test_time_limit_counts_even_when_the_code_ignores_sigterm(job):
    out = job("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(60)
    """, limit=2)
    assert out.state is JobState.TIMED_OUT and out.duration_s < 4


@pytest.mark.docker
def test_cancel_kills_the_job(job):
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    out = job("import time; time.sleep(60)", limit=30, cancel=cancel)
    assert out.state is JobState.CANCELED and out.duration_s < 4


@pytest.mark.docker
def test_missing_image_is_a_platform_error(docker, tmp_path, uid):
    r = DockerRunner(RunnerConfig(image="raas-runner:no-such-tag"), client=docker)
    out = Job(r, tmp_path, uid)("print(1)")
    assert out.state is JobState.ERROR and "make images" in out.reason


@pytest.mark.docker
def test_bad_arguments_are_refused_before_anything_runs(runner, tmp_path):
    code, sock = _code_dir(tmp_path, "print(1)"), _dummy_socket(tmp_path)
    with pytest.raises(RunnerError, match="RAAS_NODE_ID"):
        runner.run_job("j1", code, {}, sock)
    with pytest.raises(RunnerError, match="invalid job id"):
        runner.run_job("../j1", code, {"RAAS_NODE_ID": "n1"}, sock)
    with pytest.raises(RunnerError, match="not a unix socket"):
        runner.run_job("j1", code, {"RAAS_NODE_ID": "n1"}, code / "run.py")
    (sock.parent / "secret.txt").write_text("x")
    with pytest.raises(RunnerError, match="only the broker socket"):
        runner.run_job("j1", code, {"RAAS_NODE_ID": "n1"}, sock)
    code.chmod(0o700)
    with pytest.raises(RunnerError, match="world-readable"):
        runner.run_job("j1", code, {"RAAS_NODE_ID": "n1"}, tmp_path / "x.sock")


@pytest.mark.docker
def test_sweep_removes_only_this_nodes_leftovers(runner, docker, runner_image, uid):
    def leftover(node: str):
        return docker.containers.create(runner_image, ["sleep", "60"], network_mode="none",
                                        labels={JOB_LABEL: "old", NODE_LABEL: node,
                                                INSTALLATION_LABEL: runner.config.installation})

    mine, other = leftover(uid), leftover(uid + "b")
    try:
        removed = runner.sweep(uid)
        assert removed == [mine.name]
        assert docker.containers.get(other.id)  # another node's job on the same engine survives
    finally:
        for c in (mine, other):
            try:
                c.remove(force=True)
            except Exception:  # noqa: BLE001 - already removed
                pass


# ------------------------------------------------------------------------------- hostile code
@pytest.mark.docker
def test_fork_bomb_hits_the_pids_limit_and_the_host_stays_healthy(job, docker):
    out = job("""
        import os, sys, time
        me = os.getpid()
        print("bombing", flush=True)
        reported = False
        while True:
            try:
                os.fork()
            except OSError as e:
                if os.getpid() == me and not reported:
                    print("fork refused:", e, flush=True)
                    reported = True
    """, limit=4)
    assert out.state in (JobState.TIMED_OUT, JobState.FAILED), out
    assert out.duration_s < 8
    assert "fork refused: [Errno 11] Resource temporarily unavailable" in job.text()
    assert subprocess.run(["true"], timeout=5).returncode == 0  # host can still fork
    assert docker.ping()


@pytest.mark.docker
def test_memory_bomb_fails_with_the_oom_reason(job):
    out = job("""
        hog = []
        print("allocating", flush=True)
        while True:
            hog.append(b"x" * (8 << 20))  # written pages, not lazily zeroed ones
    """)
    assert out.state is JobState.FAILED, out
    assert out.oom_killed
    assert out.reason == "out of memory (limit 128 MiB)"


@pytest.mark.docker
def test_output_flood_is_capped_and_the_job_still_ends(job):
    out = job("""
        import sys
        line = "x" * 99 + "\\n"
        block = line * 10_000  # 1 MB
        for _ in range(100):
            sys.stdout.write(block)
        print("done", file=sys.stderr)
    """, limit=30)
    assert out.state is JobState.SUCCEEDED, out
    assert out.truncated
    assert out.output_bytes == 100 * 1_000_000 + len("done\n")
    delivered = sum(len(line) + 1 for s, line in job.lines if s is not LogStream.SYSTEM)
    assert delivered <= TEST_CONFIG["output_cap_bytes"]
    assert job.lines[-1][0] is LogStream.SYSTEM and "truncated" in job.lines[-1][1]
    assert out.duration_s < 20


@pytest.mark.docker
def test_long_line_without_newline_is_split_not_buffered_forever(job):
    out = job("import sys; sys.stdout.write('y' * 200_000); sys.stdout.flush()")
    assert out.state is JobState.SUCCEEDED
    assert out.truncated  # 200 kB > the 64 KiB test cap
    assert all(len(line) <= 64 * 1024 for _, line in job.lines)


@pytest.mark.docker
def test_failing_output_consumer_does_not_stop_the_job(runner, tmp_path, uid):
    def on_output(stream, line):
        raise ValueError("consumer bug")

    code, sock = _code_dir(tmp_path, "for i in range(1000): print(i)"), _dummy_socket(tmp_path)
    out = runner.run_job("j-" + uid, code, {"RAAS_NODE_ID": uid}, sock, 10, on_output)
    assert out.state is JobState.SUCCEEDED and out.output_bytes > 3000


@pytest.fixture
def host_listener():
    """A TCP server on all host interfaces: a connection from a container would show up here."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    yield srv
    srv.close()


def _host_ips() -> list[str]:
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    return [ip for ip in out if ":" not in ip] or ["10.0.0.1"]


@pytest.mark.docker
def test_container_has_no_network_at_all(job, host_listener):
    port = host_listener.getsockname()[1]
    targets = [("127.0.0.1", 1883), ("127.0.0.1", port), ("172.17.0.1", 1883),
               ("172.17.0.1", port)] + [(ip, port) for ip in _host_ips()]
    out = job(f"""
        import os, socket
        print("interfaces", sorted(os.listdir("/sys/class/net")))
        for host, port in {targets!r}:
            try:
                socket.create_connection((host, port), timeout=2).close()
                print("CONNECTED", host, port)
            except OSError as e:
                print("refused", host, port, type(e).__name__, e.errno)
        try:
            socket.getaddrinfo("pypi.org", 443)
            print("DNS WORKS")
        except OSError as e:
            print("dns failed", e)
    """)
    assert out.state is JobState.SUCCEEDED, job.text()
    text = job.text(LogStream.STDOUT)
    assert "interfaces ['lo']" in text
    assert "CONNECTED" not in text and "DNS WORKS" not in text
    for host, p in targets:
        assert f"refused {host} {p}" in text
    # Loopback inside is the container's own (ECONNREFUSED 111); the host is unreachable (101).
    assert "refused 127.0.0.1 1883 ConnectionRefusedError 111" in text
    assert "refused 172.17.0.1 1883 OSError 101" in text
    with pytest.raises(socket.timeout):
        host_listener.accept()


@pytest.mark.docker
def test_filesystem_is_read_only_except_a_capped_tmp(job):
    out = job("""
        import os
        for path in ("/evil", "/job/evil", "/usr/lib/python3/dist-packages/evil.pth",
                     "/run/raas/evil", "/etc/passwd"):
            try:
                with open(path, "a") as f:
                    f.write("x")
                print("WROTE", path)
            except OSError as e:
                print("refused", path, e.strerror)
        with open("/tmp/ok", "w") as f:
            f.write("fine")
        print("tmp ok", open("/tmp/ok").read(), os.environ["HOME"])
        try:
            with open("/tmp/big", "wb") as f:
                for _ in range(64):
                    f.write(b"z" * (1 << 20))
            print("TMP UNBOUNDED")
        except OSError as e:
            print("tmp full:", e.strerror)
    """)
    assert out.state is JobState.SUCCEEDED, job.text()
    text = job.text(LogStream.STDOUT)
    assert "WROTE" not in text and "TMP UNBOUNDED" not in text
    assert "refused /evil Read-only file system" in text
    assert "refused /job/evil Read-only file system" in text
    assert "refused /run/raas/evil Read-only file system" in text
    assert "tmp ok fine /tmp" in text
    assert "tmp full: No space left on device" in text


@pytest.mark.docker
def test_code_runs_unprivileged_without_capabilities(job):
    out = job("""
        import os
        print("ids", os.getuid(), os.geteuid(), os.getgid(), os.getgroups())
        status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
        print("caps", status["CapEff"].strip(), status["CapBnd"].strip(), status["CapPrm"].strip())
        print("nonewprivs", status["NoNewPrivs"].strip())
        for attempt in (lambda: os.setuid(0), lambda: os.chroot("/tmp"),
                        lambda: os.mknod("/tmp/dev", 0o600 | 0o060000, os.makedev(8, 0))):
            try:
                attempt()
                print("PRIVILEGED")
            except OSError as e:
                print("denied", e.strerror)
        print("pid1", open("/proc/1/comm").read().strip())
    """)
    assert out.state is JobState.SUCCEEDED, job.text()
    text = job.text()
    assert "ids 10001 10001 10001 []" in text or "ids 10001 10001 10001 [10001]" in text
    assert "caps 0000000000000000 0000000000000000 0000000000000000" in text
    assert "nonewprivs 1" in text
    assert "PRIVILEGED" not in text and text.count("denied Operation not permitted") == 3
    assert "pid1 docker-init" in text


@pytest.mark.docker
def test_limits_are_applied_to_the_container(job, runner):
    out = job("""
        import os
        print("cpus", len(os.sched_getaffinity(0)))
        def first(*paths):
            for p in paths:
                try:
                    return open(p).read().strip()
                except OSError:
                    pass
        print("mem", first("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        print("pids", first("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"))
        print("cpu", first("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"))
    """)
    assert out.state is JobState.SUCCEEDED, job.text()
    text = job.text()
    assert f"mem {128 * 1024 * 1024}" in text
    assert "pids 64" in text
    assert "cpu 100000" in text  # 1 CPU = a quota of one full 100 ms period


# ------------------------------------------------------------- the broker socket is the channel
@pytest.fixture
def unix_mosquitto(tmp_path_factory):
    """An anonymous Mosquitto on a unix socket (its own dir) plus a loopback TCP listener."""
    if not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed (make test installs it)")
    d = tmp_path_factory.mktemp("unixbroker")
    sockdir = d / "sock"
    sockdir.mkdir()
    sockdir.chmod(0o755)
    sock = sockdir / "mqtt.sock"
    port = free_port()
    (d / "mosquitto.conf").write_text(
        f"user {getpass.getuser()}\nper_listener_settings false\nallow_anonymous true\n"
        f"persistence false\n"
        f"listener 0 {sock}\nlistener {port} 127.0.0.1\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(d / "mosquitto.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port("127.0.0.1", port)
        sock.chmod(0o666)  # the container's uid 10001 must be allowed to connect
        yield sock, port
    finally:
        proc.terminate()
        proc.wait(10)


ECHO_CLIENT = """
    import os, queue, socket, sys
    from gym_raas_mqtt.mqtt import BrokerAddress, connect, make_client
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=2)
        print("TCP REACHED THE BROKER")
    except OSError as e:
        print("tcp refused", e.errno)
    addr = BrokerAddress.parse(os.environ["RAAS_MQTT_URL"], os.environ.get("RAAS_MQTT_USERNAME"),
                               os.environ.get("RAAS_MQTT_PASSWORD"))
    got = queue.Queue()
    c = make_client(addr, os.environ.get("RAAS_MQTT_USERNAME") or "job-echo")  # a login's own id
    c.on_message = lambda c, u, m: got.put((m.topic, m.payload))
    connect(c)
    c.loop_start()
    c.subscribe({sub!r}, qos=1)
    import time; time.sleep(0.3)
    c.publish({pub!r}, b"ping from the container", qos=1).wait_for_publish(5)
    print("received", got.get(timeout=10))
    c.loop_stop()
    c.disconnect()
"""


@pytest.mark.docker
def test_container_reaches_the_broker_only_through_the_mounted_socket(job, unix_mosquitto):
    sock, port = unix_mosquitto
    out = job(ECHO_CLIENT.format(port=port, sub="test/echo", pub="test/echo"),
              socket_path=sock)
    assert out.state is JobState.SUCCEEDED, job.text()
    text = job.text()
    assert "TCP REACHED THE BROKER" not in text and "tcp refused 111" in text
    assert "received ('test/echo', b'ping from the container')" in text


@pytest.mark.docker
@pytest.mark.broker
def test_job_client_on_the_node_local_broker_talks_through_the_socket(job, local_broker, uid):
    """With the node-local broker's auth and ACLs: a per-job client acts and gets an observation."""
    from broker_config.provision import create_job_client, delete_job_client
    from gym_raas_mqtt.mqtt import connect, make_client
    from gym_raas_mqtt.protocol import TopicKind, topic

    node = local_broker.node_id
    user, password = create_job_client(local_broker.admin, node, f"job-{uid}")
    act, obs = topic(TopicKind.ENV_ACT, node=node), topic(TopicKind.ENV_OBS, node=node)
    # The host side plays the motor node: echo each action back as an observation.
    host = make_client(local_broker.admin, f"motor-{uid}")
    host.on_message = lambda c, u, m: c.publish(obs, m.payload, qos=0)
    connect(host)
    host.subscribe(act, qos=0)
    host.loop_start()
    try:
        out = job(ECHO_CLIENT.format(port=local_broker.port, sub=obs, pub=act),
                  socket_path=local_broker.socket_path,
                  env={"RAAS_NODE_ID": node, "RAAS_MQTT_USERNAME": user,
                       "RAAS_MQTT_PASSWORD": password})
    finally:
        host.loop_stop()
        host.disconnect()
        delete_job_client(local_broker.admin, user)
    assert out.state is JobState.SUCCEEDED, job.text()
    assert "tcp refused 111" in job.text()
    assert f"received ({obs!r}, b'ping from the container')" in job.text()


@pytest.mark.docker
def test_first_output_arrives_quickly(job):
    """Container create+start to first line: the overhead every job pays (printed, not judged
    tightly; bench numbers are in the report)."""
    out = job("print('up')")
    assert out.state is JobState.SUCCEEDED
    print(f"first output after {job.first_output_s:.3f} s, total {out.duration_s:.3f} s")
    assert job.first_output_s < 10
