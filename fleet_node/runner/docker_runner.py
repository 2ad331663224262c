"""Runs one job's user code in a Docker container (see :mod:`fleet_node.runner.container`).

The container is removed whatever happens; :meth:`DockerRunner.sweep` removes any of this
installation and node left by a crash. While it runs, the runner holds the container's stdin (the
supervisor's lifeline): if the agent process dies, the job is stopped within a fraction of a second.
A platform fault (image missing, Docker unreachable or failing) is a ``state=error`` outcome, never
an exception; only invalid arguments from the agent raise :class:`RunnerError`. ``docker`` (the
node extra) is imported where it is used: the researcher's install never imports it.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from fleet_node.runner.config import (INSTALLATION_LABEL, JOB_LABEL, NODE_LABEL, OnOutput,
                                      RunnerConfig, RunnerError, RunOutcome)
from fleet_node.runner.container import check_job_args, container_options
from fleet_node.runner.failure import ImagePackages, OutputTail, failure_reason
from fleet_node.runner.output import OutputPump
from gym_raas_mqtt.protocol import JobState

log = logging.getLogger(__name__)


def signal_name(code: int) -> str:
    """The name of the signal behind exit status ``code`` (128 + n), e.g. ``SIGKILL``."""
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
        self.packages = ImagePackages(self.client, self.config.docker_timeout_s)

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

        Only containers of this installation (label ``raas.installation``) are considered, so
        another installation's jobs on a shared engine are never touched.

        Args:
            node_id: only containers of this node (label ``raas.node``); None = every job
                container of this installation.

        Returns:
            Names of the removed containers.
        """
        labels = [JOB_LABEL, f"{INSTALLATION_LABEL}={self.config.installation}"]
        if node_id:
            labels.append(f"{NODE_LABEL}={node_id}")
        removed = []
        for c in self.client.containers.list(all=True, filters={"label": labels}):
            try:
                c.remove(force=True, v=True)
                removed.append(c.name)
            except Exception as e:  # noqa: BLE001 - already gone, or removal in progress
                log.warning("could not remove leftover container %s: %s", c.name, e)
        if removed:
            log.warning("removed %d leftover job container(s): %s", len(removed), removed)
        return removed

    # -- running ----------------------------------------------------------------------------
    def run_job(self, job_id: str, code_dir: Path, env: dict[str, str], socket_path: Path,
                time_limit_s: float | None = None, on_output: OnOutput | None = None,
                cancel: threading.Event | None = None, args: Sequence[str] = ()) -> RunOutcome:
        """Run ``python3 -u run.py ARGS...`` from ``code_dir`` in a fresh hardened container;
        block until it ends, the time limit passes, or ``cancel`` is set.

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
            args: arguments of ``run.py`` (checked by the agent; never seen by a shell).

        Returns:
            The outcome. Never raises for the user code's behaviour; a platform fault is
            ``state=error``.

        Raises:
            RunnerError: invalid arguments (a bug in the caller, not the job's fault).
        """
        import docker.errors
        import requests.exceptions

        node_id = check_job_args(job_id, code_dir, socket_path, env, args)
        limit = self.config.time_limit(time_limit_s)
        try:
            image_id = self.image_id()
        except RunnerError as e:
            return RunOutcome(JobState.ERROR, reason=str(e), time_limit_s=limit)
        kwargs = container_options(self.config, job_id, node_id, code_dir, socket_path, env,
                                   args)
        container = frames = lifeline = None
        pump: OutputPump | None = None
        started = ended = 0.0
        killed_for: str | None = None
        try:
            self._remove_named(kwargs["name"])
            container = self.client.containers.create(image_id, **kwargs)
            # Attach before start so not a byte of early output is missed.
            frames = self.client.api.attach(container.id, stdout=True, stderr=True, stream=True,
                                            logs=False, demux=True)
            tail = OutputTail(on_output)  # its end says why the code failed
            pump = OutputPump(frames, self.config.output_cap_bytes, tail)
            pump.thread.start()
            lifeline = self.client.api.attach_socket(container.id,
                                                     params={"stdin": 1, "stream": 1})
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
            return self._outcome(state, status, killed_for, limit, ended - started, pump, image_id,
                                 tail)
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
            if lifeline is not None:
                self._let_go(lifeline)
            if container is not None:
                try:
                    container.remove(force=True, v=True)
                except docker.errors.NotFound:
                    pass
                except Exception as e:  # noqa: BLE001 - the startup sweep catches it later
                    log.error("job %s: could not remove container %s: %s", job_id,
                              container.name, e)

    def _wait(self, container: Any, deadline: float, pump: OutputPump,
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

    @staticmethod
    def _let_go(lifeline: Any) -> None:
        """Close the hold on the container's stdin (the SDK's socket over the engine's socket)."""
        sock = getattr(lifeline, "_sock", lifeline)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # the engine closed it first
            pass
        sock.close()
        response = getattr(lifeline, "_response", None)
        if response is not None:
            response.close()  # releases the connection's file objects (no fd leak)

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
                 killed_for: str | None, limit: float, duration: float, pump: OutputPump,
                 image_id: str, tail: OutputTail) -> RunOutcome:
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
        reason = failure_reason(tail.lines, exit_code, lambda: self.packages.of(image_id))
        if exit_code > 128:
            reason += f" (killed by {signal_name(exit_code)})"
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
