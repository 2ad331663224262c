"""Runs one job's user code in a locked-down Docker container and reports how it ended.

The container's only channel to the world is the node-local broker's unix socket: no network
(``network_mode="none"``), the code read-only at ``/job``, a read-only root filesystem with a
size-capped tmpfs ``/tmp`` (also ``$HOME``), no capabilities, ``no-new-privileges``, an unprivileged
uid, and limits on processes, memory (no swap) and CPU. Why each flag is there: images/README.md.

Outcomes (``protocol.JobState``): exit 0 → ``succeeded``; the wall-clock limit → ``timed_out`` (the
run is still valid data); non-zero exit or the memory limit → ``failed``; anything wrong with the
platform (image missing, Docker unreachable or failing) → ``error``, which the dispatcher requeues.
The container is removed whatever happens; :meth:`DockerRunner.sweep` removes any left by a crash.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from gym_raas_mqtt.config import setting
from gym_raas_mqtt.errors import ConfigError, RaasError
from gym_raas_mqtt.protocol import ID_PATTERN, MAX_STRING_CHARS, JobState, LogStream

log = logging.getLogger(__name__)

JOB_LABEL = "raas.job"
"""Container label holding the job id; every container this module creates carries it."""
NODE_LABEL = "raas.node"
"""Container label holding the node id, so two nodes sharing one engine never sweep each other."""
CONTAINER_SOCKET_DIR = "/run/raas"
"""Where the directory of the node-local broker's socket appears inside the container."""
CODE_DIR = "/job"
COMMAND = ("python3", "-u", "run.py")
RUN_USER = "10001:10001"
"""uid:gid of the image's ``raas`` user (images/Dockerfile); given explicitly so a changed image
cannot make jobs run as root."""

OnOutput = Callable[[LogStream, str], None]


class RunnerError(RaasError):
    """The platform could not run the job (bad arguments from the agent, Docker failing)."""


@dataclass(frozen=True)
class RunnerConfig:
    """Resource limits and the image of job containers (defaults suit a Raspberry Pi 4, 4 GB)."""

    image: str = setting("RAAS_RUNNER_IMAGE", "raas-runner:latest",
                         "job runner image (images/build.sh builds and tags it)")
    memory_mib: int = setting("RAAS_RUNNER_MEMORY_MIB", 512,
                              "container memory limit; swap is disabled", unit="MiB")
    pids: int = setting("RAAS_RUNNER_PIDS", 128, "maximum processes + threads in the container")
    cpus: float = setting("RAAS_RUNNER_CPUS", 1.0, "CPU limit (fraction of cores)", unit="CPUs")
    tmpfs_mib: int = setting("RAAS_RUNNER_TMPFS_MIB", 64,
                             "size of the writable /tmp (also $HOME); counts as memory", unit="MiB")
    default_time_limit_s: float = setting("RAAS_RUNNER_TIME_LIMIT_S", 120.0,
                                          "wall-clock limit when a job asks for none", unit="s")
    max_time_limit_s: float = setting("RAAS_RUNNER_MAX_TIME_LIMIT_S", 600.0,
                                      "largest wall-clock limit a job may ask for", unit="s")
    output_cap_bytes: int = setting("RAAS_RUNNER_OUTPUT_CAP_BYTES", 1024 * 1024,
                                    "stdout+stderr passed on per job; the rest is dropped",
                                    unit="bytes")
    docker_timeout_s: float = setting("RAAS_RUNNER_DOCKER_TIMEOUT_S", 30.0,
                                      "timeout of one Docker API call", unit="s")

    def __post_init__(self) -> None:
        if self.memory_mib < 32 or self.pids < 8 or self.cpus <= 0 or self.tmpfs_mib < 1:
            raise ConfigError(f"runner limits too small: {self}")
        if not 0 < self.default_time_limit_s <= self.max_time_limit_s:
            raise ConfigError("need 0 < RAAS_RUNNER_TIME_LIMIT_S <= RAAS_RUNNER_MAX_TIME_LIMIT_S")
        if self.output_cap_bytes < 1024:
            raise ConfigError("RAAS_RUNNER_OUTPUT_CAP_BYTES must be at least 1024")

    def time_limit(self, requested_s: float | None) -> float:
        """The limit a job gets: ``requested_s`` clamped to (0, max], default when None (s)."""
        if requested_s is None or requested_s <= 0:
            return self.default_time_limit_s
        return min(float(requested_s), self.max_time_limit_s)


@dataclass(frozen=True)
class RunOutcome:
    """How a job's container ended.

    Attributes:
        state: ``succeeded``, ``failed``, ``timed_out``, ``canceled`` (``cancel`` was set) or
            ``error``.
        exit_code: the process's exit status (128+n when killed by signal n); None when it never
            ran or its status is unknown.
        reason: one human-readable line ("exit code 3", "out of memory (limit 512 MiB)", ...);
            None on success.
        oom_killed: the kernel's OOM killer hit the container.
        duration_s: container start to exit (s); 0 when it never started.
        output_bytes: bytes the code wrote to stdout+stderr, including those dropped.
        truncated: output went past ``RunnerConfig.output_cap_bytes`` and the rest was dropped.
        image_id: ID (``sha256:...``) of the image the job ran in; None if unresolved.
        time_limit_s: the wall-clock limit applied (s).
    """

    state: JobState
    exit_code: int | None = None
    reason: str | None = None
    oom_killed: bool = False
    duration_s: float = 0.0
    output_bytes: int = 0
    truncated: bool = False
    image_id: str | None = None
    time_limit_s: float = 0.0


class _OutputPump:
    """Splits the container's multiplexed output into lines, caps it, hands lines on.

    Runs on its own thread; the callback's exceptions are logged, never propagated, so a failing
    consumer cannot stop the draining (an undrained pipe would block the container).
    """

    def __init__(self, frames: Iterable[tuple[bytes | None, bytes | None]], cap: int,
                 on_output: OnOutput | None) -> None:
        self.frames = frames
        self.cap = cap
        self.on_output = on_output
        self.output_bytes = 0
        self.delivered = 0
        self.truncated = False
        self.first_output_at: float | None = None
        self.error: BaseException | None = None
        self._partial = {LogStream.STDOUT: bytearray(), LogStream.STDERR: bytearray()}
        self._callback_failed = False
        self.thread = threading.Thread(target=self._run, name="raas-runner-output", daemon=True)

    def _emit(self, stream: LogStream, raw: bytes, size: int) -> None:
        """Pass on one line (``raw`` without newline; ``size`` = bytes it counts, newline included)."""
        if self.truncated:
            return
        if self.delivered + size > self.cap:
            self.truncated = True
            self._call(LogStream.SYSTEM,
                       f"[raas] output truncated: more than {self.cap} bytes; the rest is dropped")
            return
        self.delivered += size
        self._call(stream, raw.decode("utf-8", errors="replace").rstrip("\r"))

    def _call(self, stream: LogStream, line: str) -> None:
        if self.on_output is None:
            return
        try:
            self.on_output(stream, line)
        except Exception:  # noqa: BLE001 - a consumer bug must not stop the draining
            if not self._callback_failed:
                log.exception("on_output callback failed; output keeps being drained")
            self._callback_failed = True

    def _feed(self, stream: LogStream, data: bytes) -> None:
        if self.first_output_at is None:
            self.first_output_at = time.monotonic()
        self.output_bytes += len(data)
        if self.truncated:
            return  # drain only
        buf = self._partial[stream]
        buf += data
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            self._emit(stream, bytes(buf[start:nl]), nl + 1 - start)
            start = nl + 1
        del buf[:start]
        # A line without newline still reaches the log once it is as long as a log string may be.
        while len(buf) >= MAX_STRING_CHARS:
            self._emit(stream, bytes(buf[:MAX_STRING_CHARS]), MAX_STRING_CHARS)
            del buf[:MAX_STRING_CHARS]

    def _run(self) -> None:
        try:
            for out, err in self.frames:
                if out:
                    self._feed(LogStream.STDOUT, out)
                if err:
                    self._feed(LogStream.STDERR, err)
        except Exception as e:  # noqa: BLE001 - connection closed by the engine on removal
            self.error = e
        finally:
            for stream, buf in self._partial.items():
                if buf and not self.truncated:
                    self._emit(stream, bytes(buf), len(buf))
                buf.clear()


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(code - 128).name
    except ValueError:
        return f"signal {code - 128}"


class DockerRunner:
    """Runs jobs in containers through one Docker engine connection.

    Args:
        config: limits and image.
        client: a ``docker.DockerClient``; by default ``docker.from_env()`` (``DOCKER_HOST``).

    Raises:
        RunnerError: the Docker engine is unreachable.
    """

    def __init__(self, config: RunnerConfig | None = None, client: Any = None) -> None:
        import docker  # the node extra; the researcher's install never imports this module

        self.config = config or RunnerConfig()
        own = client is None
        try:
            self.client = client or docker.from_env(timeout=int(self.config.docker_timeout_s))
        except Exception as e:  # noqa: BLE001 - docker raises DockerException or requests errors
            raise RunnerError(f"Docker engine not reachable: {e}") from e
        try:
            self.client.ping()
        except Exception as e:  # noqa: BLE001
            if own:
                self.client.close()
            raise RunnerError(f"Docker engine not reachable: {e}") from e

    # -- image ------------------------------------------------------------------------------
    def image_id(self) -> str:
        """ID (``sha256:...``) of the configured runner image, for node meta and results.

        Raises:
            RunnerError: the image does not exist (``make images`` builds it) or Docker failed.
        """
        import docker.errors

        try:
            return self.client.images.get(self.config.image).id
        except docker.errors.ImageNotFound as e:
            raise RunnerError(
                f"runner image {self.config.image} not found: run `make images`") from e
        except Exception as e:  # noqa: BLE001
            raise RunnerError(f"cannot inspect runner image {self.config.image}: {e}") from e

    # -- cleanup ----------------------------------------------------------------------------
    def sweep(self, node_id: str | None = None) -> list[str]:
        """Remove job containers left behind (e.g. by an agent crash); call at agent start.

        Args:
            node_id: only containers of this node (label ``raas.node``); None = every job
                container on this engine.

        Returns:
            Names of the removed containers.
        """
        label = f"{NODE_LABEL}={node_id}" if node_id else JOB_LABEL
        removed = []
        for c in self.client.containers.list(all=True, filters={"label": label}):
            try:
                c.remove(force=True, v=True)
                removed.append(c.name)
            except Exception as e:  # noqa: BLE001 - already gone, or removal in progress
                log.warning("could not remove leftover container %s: %s", c.name, e)
        if removed:
            log.warning("removed %d leftover job container(s): %s", len(removed), removed)
        return removed

    # -- running ----------------------------------------------------------------------------
    def _container_kwargs(self, job_id: str, node_id: str, code_dir: Path, socket_path: Path,
                          env: dict[str, str]) -> dict[str, Any]:
        from docker.types import LogConfig, Mount, Ulimit

        c = self.config
        environment = dict(env)
        environment.update({
            "RAAS_MQTT_URL": f"unix://{CONTAINER_SOCKET_DIR}/{socket_path.name}",
            "RAAS_JOB_ID": job_id,
        })
        tmpfs_opts = f"rw,nosuid,nodev,noexec,size={c.tmpfs_mib}m,mode=1777"
        return dict(
            command=list(COMMAND),
            name=f"raas-job-{node_id}-{job_id}"[:128],
            labels={JOB_LABEL: job_id, NODE_LABEL: node_id},
            environment=environment,
            user=RUN_USER,
            working_dir=CODE_DIR,
            hostname="raas-job",
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": tmpfs_opts},
            mounts=[
                Mount(CODE_DIR, str(code_dir), type="bind", read_only=True),
                Mount(CONTAINER_SOCKET_DIR, str(socket_path.parent), type="bind", read_only=True),
            ],
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=c.pids,
            mem_limit=f"{c.memory_mib}m",
            memswap_limit=f"{c.memory_mib}m",
            nano_cpus=int(c.cpus * 1e9),
            ulimits=[Ulimit(name="nofile", soft=1024, hard=1024),
                     Ulimit(name="core", soft=0, hard=0)],
            oom_score_adj=500,  # if the host itself runs out, user code goes first
            init=True,
            # Output goes only through attach (back-pressured); no copy piles up on the node's disk.
            log_config=LogConfig(type="none"),
            stdin_open=False,
            tty=False,
            detach=True,
        )

    def _check_args(self, job_id: str, code_dir: Path, socket_path: Path,
                    env: dict[str, str]) -> str:
        if not ID_PATTERN.match(job_id):
            raise RunnerError(f"invalid job id {job_id!r}")
        node_id = env.get("RAAS_NODE_ID", "")
        if not ID_PATTERN.match(node_id):
            raise RunnerError(f"env must carry a valid RAAS_NODE_ID, got {node_id!r}")
        if not code_dir.is_absolute() or not (code_dir / "run.py").is_file():
            raise RunnerError(f"code dir {code_dir} must be an absolute path holding run.py")
        # The code runs as uid 10001, which must be able to read it (checkouts made by root with
        # a 077 umask would otherwise fail inside with a confusing PermissionError).
        readable = ((code_dir.stat().st_mode & 0o005) == 0o005
                    and (code_dir / "run.py").stat().st_mode & 0o004)
        if not readable:
            raise RunnerError(f"{code_dir} and its run.py must be world-readable (o+rx / o+r)")
        if not socket_path.is_absolute() or not socket_path.is_socket():
            raise RunnerError(f"{socket_path} is not a unix socket")
        # The socket's directory is mounted whole (so a broker restart's new socket is seen); it
        # must hold nothing but sockets, or the container would see more than its channel.
        others = [p.name for p in socket_path.parent.iterdir() if not p.is_socket()]
        if others:
            raise RunnerError(f"{socket_path.parent} must contain only the broker socket, "
                              f"found {others[:5]}")
        bad = [k for k, v in env.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise RunnerError(f"env values must be strings: {bad}")
        return node_id

    def run_job(self, job_id: str, code_dir: Path, env: dict[str, str], socket_path: Path,
                time_limit_s: float | None = None, on_output: OnOutput | None = None,
                cancel: threading.Event | None = None) -> RunOutcome:
        """Run ``python3 -u run.py`` from ``code_dir`` in a fresh hardened container; block until
        it ends, the time limit passes, or ``cancel`` is set.

        Args:
            job_id: the job's id (container label and name).
            code_dir: absolute host path of the checked-out code (mounted read-only at /job).
            env: environment for the code: at least ``RAAS_NODE_ID`` and the job's broker
                credentials ``RAAS_MQTT_USERNAME``/``RAAS_MQTT_PASSWORD``. ``RAAS_MQTT_URL`` and
                ``RAAS_JOB_ID`` are set here.
            socket_path: absolute host path of the node-local broker's unix socket; its
                directory (holding only sockets) is mounted read-only at /run/raas.
            time_limit_s: wall-clock limit (s), clamped to ``max_time_limit_s``; None = default.
            on_output: called ``(stream, line)`` from a reader thread for each output line (no
                newline), up to ``output_cap_bytes`` in total, then once with a ``system`` line
                saying the output was truncated. Must be quick; exceptions are logged.
            cancel: when set, the container is killed and the outcome is ``canceled``.

        Returns:
            The outcome. Never raises for the user code's behaviour; a platform fault is
            ``state=error``.

        Raises:
            RunnerError: invalid arguments (a bug in the caller, not the job's fault).
        """
        import docker.errors
        import requests.exceptions

        node_id = self._check_args(job_id, code_dir, socket_path, env)
        limit = self.config.time_limit(time_limit_s)
        try:
            image_id = self.image_id()
        except RunnerError as e:
            return RunOutcome(JobState.ERROR, reason=str(e), time_limit_s=limit)
        kwargs = self._container_kwargs(job_id, node_id, code_dir, socket_path, env)
        container = frames = None
        pump: _OutputPump | None = None
        started = ended = 0.0
        killed_for: str | None = None
        try:
            self._remove_named(kwargs["name"])
            container = self.client.containers.create(image_id, **kwargs)
            # Attach before start so not a byte of early output is missed.
            frames = self.client.api.attach(container.id, stdout=True, stderr=True, stream=True,
                                            logs=False, demux=True)
            pump = _OutputPump(frames, self.config.output_cap_bytes, on_output)
            pump.thread.start()
            container.start()
            started = time.monotonic()
            status = self._wait(container, started + limit, pump, cancel)
            if isinstance(status, str):
                # If it exited on its own in the same instant, it was not killed for the limit.
                killed_for = status if self._kill(container) else None
                status = container.wait(timeout=self.config.docker_timeout_s)
            ended = time.monotonic()
            state = container.client.api.inspect_container(container.id)["State"]
            pump.thread.join(timeout=5.0)
            if pump.thread.is_alive():
                log.warning("job %s: output reader still busy 5 s after exit", job_id)
            return self._outcome(state, status, killed_for, limit, ended - started, pump, image_id)
        except docker.errors.DockerException as e:
            log.error("job %s: Docker failed: %s", job_id, e)
            return RunOutcome(JobState.ERROR, reason=f"docker: {e}", image_id=image_id,
                              duration_s=(ended or time.monotonic()) - started if started else 0.0,
                              output_bytes=pump.output_bytes if pump else 0, time_limit_s=limit)
        except requests.exceptions.RequestException as e:
            log.error("job %s: Docker engine connection failed: %s", job_id, e)
            return RunOutcome(JobState.ERROR, reason=f"docker engine connection: {e}",
                              image_id=image_id, time_limit_s=limit)
        finally:
            if frames is not None:
                try:
                    frames.close()  # shuts the hijacked socket down ...
                    response = getattr(frames, "_response", None)
                    if response is not None:
                        response.close()  # ... and this releases its file object (no fd leak)
                except OSError as e:
                    log.debug("job %s: closing the output stream: %s", job_id, e)
            if container is not None:
                try:
                    container.remove(force=True, v=True)
                except docker.errors.NotFound:
                    pass
                except Exception as e:  # noqa: BLE001 - the startup sweep catches it later
                    log.error("job %s: could not remove container %s: %s", job_id,
                              container.name, e)

    def _wait(self, container: Any, deadline: float, pump: _OutputPump,
              cancel: threading.Event | None) -> dict[str, Any] | str:
        """Block until the container exits (its wait status), or return ``"timed_out"`` /
        ``"canceled"``. The output stream ends when the container does, so the reader thread is
        the cheap exit signal; the engine's wait call confirms it.

        Raises:
            requests.exceptions.ConnectionError: the engine stayed unreachable for
                ``docker_timeout_s``.
        """
        import requests.exceptions

        unreachable_since: float | None = None
        while True:
            if cancel is not None and cancel.is_set():
                return "canceled"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timed_out"
            if pump.thread.is_alive():
                pump.thread.join(timeout=min(remaining, 0.25))  # 0.25 s: cancel latency
                continue
            try:
                return container.wait(timeout=max(0.05, min(remaining, 1.0)))
            except requests.exceptions.ReadTimeout:
                unreachable_since = None  # still running: the engine answered by not answering
            except requests.exceptions.ConnectionError as e:
                if "timed out" in str(e).lower():
                    continue  # a read timeout wrapped by urllib3 on the unix socket
                now = time.monotonic()
                unreachable_since = unreachable_since or now
                if now - unreachable_since > self.config.docker_timeout_s:
                    raise
                time.sleep(0.5)

    def _remove_named(self, name: str) -> None:
        import docker.errors

        try:
            self.client.containers.get(name).remove(force=True, v=True)
            log.warning("removed stale container %s", name)
        except docker.errors.NotFound:
            pass

    @staticmethod
    def _kill(container: Any) -> bool:
        """SIGKILL the container (user code gets no say in when it stops); False if it had
        already exited."""
        import docker.errors

        try:
            container.kill()
            return True
        except docker.errors.APIError as e:
            if e.status_code == 409:  # not running: it exited on its own meanwhile
                return False
            raise

    def _outcome(self, state: dict[str, Any], status: dict[str, Any] | None,
                 killed_for: str | None, limit: float, duration: float, pump: _OutputPump,
                 image_id: str) -> RunOutcome:
        exit_code = state.get("ExitCode")
        if status is not None and status.get("StatusCode") is not None:
            exit_code = status["StatusCode"]
        oom = bool(state.get("OOMKilled"))
        common = dict(exit_code=exit_code, oom_killed=oom, duration_s=round(duration, 3),
                      output_bytes=pump.output_bytes, truncated=pump.truncated,
                      image_id=image_id, time_limit_s=limit)
        if killed_for == "timed_out":
            return RunOutcome(JobState.TIMED_OUT, reason=f"wall-clock limit of {limit:g} s reached",
                              **common)
        if killed_for == "canceled":
            return RunOutcome(JobState.CANCELED, reason="canceled", **common)
        if oom:
            reason = f"out of memory (limit {self.config.memory_mib} MiB)"
            return RunOutcome(JobState.FAILED, reason=reason, **common)
        if exit_code == 0:
            return RunOutcome(JobState.SUCCEEDED, **common)
        if exit_code is None:
            return RunOutcome(JobState.ERROR, reason="exit status unknown", **common)
        reason = f"exit code {exit_code}"
        if exit_code > 128:
            reason += f" (killed by {_signal_name(exit_code)})"
        return RunOutcome(JobState.FAILED, reason=reason, **common)


def run_job(config: RunnerConfig, job_id: str, code_dir: Path, env: dict[str, str],
            socket_path: Path, time_limit_s: float | None = None,
            on_output: OnOutput | None = None) -> RunOutcome:
    """One-shot :meth:`DockerRunner.run_job` with a fresh engine connection.

    A Docker engine that cannot be reached gives ``state=error`` rather than an exception.

    Raises:
        RunnerError: invalid arguments.
    """
    try:
        runner = DockerRunner(config)
    except RunnerError as e:
        return RunOutcome(JobState.ERROR, reason=str(e),
                          time_limit_s=config.time_limit(time_limit_s))
    try:
        return runner.run_job(job_id, code_dir, env, socket_path, time_limit_s, on_output)
    finally:
        runner.client.close()


__all__ = ["RunnerConfig", "RunOutcome", "DockerRunner", "RunnerError", "run_job", "JOB_LABEL",
           "NODE_LABEL"]
