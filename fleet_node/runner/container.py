"""The locked-down job container: the checks on what goes into it and its Docker create options.

The container's only channel to the world is the node-local broker's unix socket: no network
(``network_mode="none"``), the code read-only at ``/job``, a read-only root filesystem with a
size-capped tmpfs ``/tmp`` (also ``$HOME``), no capabilities, ``no-new-privileges``, an unprivileged
uid, and limits on processes, memory (no swap) and CPU. Why each flag is there: images/README.md.
Its main process is the supervisor (:mod:`~fleet_node.runner.supervisor`), which ends the job when
the agent's hold on the container's stdin goes away.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from fleet_node.runner import supervisor
from fleet_node.runner.config import (INSTALLATION_LABEL, JOB_LABEL, NODE_LABEL, RunnerConfig,
                                      RunnerError)
from gym_raas_mqtt.protocol import ID_PATTERN

CONTAINER_SOCKET_DIR = "/run/raas"
"""Where the directory of the node-local broker's socket appears inside the container."""
CODE_DIR = "/job"
"""Where the job's code is mounted (read-only) inside the container; also the working dir."""
SUPERVISOR_FLAGS = ("python3", "-I", "-S", "-c")
"""How the supervisor's source is run: isolated (no job folder on sys.path, no PYTHON* variables)
and without site (nothing of the image's packages), so the job cannot inject code into it."""
RUN_USER = "10001:10001"
"""uid:gid of the image's ``raas`` user (images/Dockerfile); given explicitly so a changed image
cannot make jobs run as root."""


def check_job_args(job_id: str, code_dir: Path, socket_path: Path, env: dict[str, str],
                   args: Sequence[str] = ()) -> str:
    """Check what the agent hands to the runner; returns the node id from ``env``.

    Raises:
        RunnerError: an invalid id, code dir, socket, environment or ``run.py`` arguments (a
            bug in the caller).
    """
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
    if not all(isinstance(a, str) and "\0" not in a for a in args):
        raise RunnerError("run.py arguments must be strings without NUL")
    return node_id


def container_options(config: RunnerConfig, job_id: str, node_id: str, code_dir: Path,
                      socket_path: Path, env: dict[str, str],
                      args: Sequence[str] = ()) -> dict[str, Any]:
    """Keyword arguments of ``containers.create`` for one job (checked by :func:`check_job_args`).

    Args:
        config: limits of the container.
        job_id: the job (label and name).
        node_id: this node (label and name).
        code_dir: absolute host path of the code, mounted read-only at ``/job``.
        socket_path: absolute host path of the local broker's socket; its folder is mounted
            read-only at ``/run/raas``.
        env: the code's environment; ``RAAS_MQTT_URL`` and ``RAAS_JOB_ID`` are added.
        args: arguments of ``run.py``, handed on by the supervisor (its own argv).
    """
    from docker.types import LogConfig, Mount, Ulimit  # the node extra, like all of docker

    c = config
    environment = dict(env)
    environment.update({
        "RAAS_MQTT_URL": f"unix://{CONTAINER_SOCKET_DIR}/{socket_path.name}",
        "RAAS_JOB_ID": job_id,
    })
    tmpfs_opts = f"rw,nosuid,nodev,noexec,size={c.tmpfs_mib}m,mode=1777"
    return dict(
        command=[*SUPERVISOR_FLAGS, Path(supervisor.__file__).read_text(), *args],
        name=f"raas-job-{node_id}-{job_id}"[:128],
        labels={JOB_LABEL: job_id, NODE_LABEL: node_id, INSTALLATION_LABEL: c.installation},
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
        # The supervisor's lifeline: stdin open, closed by the engine when the one client attached
        # to it (the agent) goes away; the SDK sets StdinOnce for stdin_open without detach.
        stdin_open=True,
        tty=False,
        detach=False,
    )
