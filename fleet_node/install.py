"""Installing an enrollment bundle on a node and starting its services (``raas node install``).

:func:`install` writes the bundle's files (:mod:`fleet_node.node_files`) below a root — ``/`` on a
Pi, or a scratch tree whose env files and units are rewritten to point into it — with their modes
(passwords 0600), never replacing an existing calibration file (the robot's own). On ``/`` as
root it makes the service account and hands it the passwords and the data folder; with systemd
it enables and (re)starts the node's services. :func:`service_commands` reads the installed
units back: what each service runs, with which environment — how to start them by hand, without
systemd.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from fleet_node.enroll import EnrollError, read_bundle
from fleet_node.node_files import (DATA, ETC, RUN, SERVICES, UNIT_DIR, file_mode, read_env_file,
                                   relocate)

CALIBRATION = "etc/raas/calibration.toml"
INSTALLABLE = ("etc/raas/", f"{UNIT_DIR}/raas-", f"{UNIT_DIR}/pigpiod.service.d/")
"""The only places below the root a bundle may write to."""
SYSTEMD_RUNNING = Path("/run/systemd/system")  # exists only when systemd is the init system


@dataclass
class Installed:
    """What :func:`install` did.

    Attributes:
        root: where the files went.
        node_id: the node the bundle enrolls.
        central_url: the central broker it names.
        written: the files written.
        kept: files left as they were (an existing calibration file).
        started: the services were (re)started through systemd.
    """

    root: Path
    node_id: str
    central_url: str
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    started: bool = False


def install(bundle: Path, root: Path = Path("/"), *, start: bool = True,
            user: str = "raas") -> Installed:
    """Install ``bundle`` below ``root`` and, on ``/`` with systemd, start the node's services.

    Args:
        bundle: a tarball from ``raas node enroll``.
        root: ``/``, or a scratch tree (env files and units are rewritten to point into it;
            nothing is started or chowned there).
        start: enable and (re)start the services when systemd runs this machine.
        user: the service account (made when missing, on ``/`` as root).

    Raises:
        EnrollError: not a bundle, a member outside the node's folders, or ``/`` without root.
        OSError: a file cannot be written; CalledProcessError: useradd or systemctl failed.
    """
    manifest, files = read_bundle(bundle)
    for name in files:
        if name.startswith("/") or ".." in Path(name).parts or not name.startswith(INSTALLABLE):
            raise EnrollError(f"{bundle}: refusing to install {name!r} (outside the node's "
                              "folders)")
    root = root.resolve()
    system = root == Path("/")
    if system and os.geteuid() != 0:
        raise EnrollError("installing into / needs root (sudo), or give a scratch --root")
    account = _service_account(user) if system else None
    done = Installed(root, manifest["node_id"], manifest["central_url"])
    for folder, mode in ((ETC, 0o755), (f"{ETC}/secrets", 0o750), (DATA, 0o750)):
        _folder(root / folder.lstrip("/"), mode, account)
    if not system:  # systemd's RuntimeDirectory= makes it on a real node
        (root / RUN.lstrip("/") / "sock").mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        target = root / name
        if name == CALIBRATION and target.exists():
            done.kept.append(target)
            continue
        if name.endswith(".env") or name.startswith(UNIT_DIR):
            data = relocate(data.decode(), str(root)).encode()
        _write(target, data, file_mode(name))
        if account is not None and name.startswith("etc/raas/"):
            # passwords belong to the service account; the rest is root's, readable by its group
            os.chown(target, account.pw_uid if "/secrets/" in name else 0, account.pw_gid)
        done.written.append(target)
    if system and start and SYSTEMD_RUNNING.is_dir() and shutil.which("systemctl"):
        units = ([*SERVICES, "pigpiod"] if f"{UNIT_DIR}/pigpiod.service.d/raas.conf" in files
                 else list(SERVICES))
        subprocess.run(["systemctl", "daemon-reload"], check=True)
        subprocess.run(["systemctl", "enable", *units], check=True)
        subprocess.run(["systemctl", "restart", *units], check=True)  # new settings apply
        done.started = True
    return done


def service_commands(root: Path = Path("/")) -> dict[str, tuple[dict[str, str], list[str]]]:
    """What each installed service runs: its environment (its units' ``EnvironmentFile=``
    files, in order) and its command line (``ExecStart=``), in start order.

    Raises:
        OSError: a unit or env file is missing.
    """
    commands = {}
    for service in SERVICES:
        env: dict[str, str] = {}
        argv: list[str] = []
        for line in (root / UNIT_DIR / f"{service}.service").read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "EnvironmentFile":
                env.update(read_env_file(Path(value.lstrip("-")).read_text()))
            elif key == "ExecStart":
                argv = shlex.split(value)
        commands[service] = (env, argv)
    return commands


def _service_account(user: str) -> pwd.struct_passwd:
    """The service account, made (a system user, no login, home in the data folder) when
    missing."""
    try:
        return pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "--system", "--home-dir", DATA, "--shell", "/usr/sbin/nologin",
                        user], check=True)
        return pwd.getpwnam(user)


def _folder(path: Path, mode: int, account: pwd.struct_passwd | None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    if account is not None:
        # the data folder is the service account's; /etc/raas and its secrets folder root's,
        # entered by the account's group
        os.chown(path, account.pw_uid if str(path) == DATA else 0, account.pw_gid)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` atomically with ``data``, created with ``mode`` (never wider first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
