"""Prepares a broker's runtime directory and runs Mosquitto in it (foreground or background).

Layout of a runtime directory::

    <dir>/mosquitto.conf          rendered on every start (0600: may hold the bridge password)
    <dir>/dynamic-security.json   roles and clients (merged on every start, changed at run time)
    <dir>/data/                   persistence (retained messages, sessions)
    <dir>/secrets/<username>      generated passwords of the service clients (0600)
    <dir>/sock/local.sock         node-local broker only: the socket job containers get (0666)
    <dir>/mosquitto.pid, mosquitto.log   background mode only

Starting is idempotent: if the pid file names a live mosquitto using this directory, the running
broker is returned instead of a second one.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from broker_config import acl, render, seed
from broker_config.config import BrokerConfig
from gym_raas_mqtt.config import load, read_secret
from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.mqtt import BrokerAddress
from gym_raas_mqtt.protocol import check_id

log = logging.getLogger(__name__)

ROLES = ("central", "local")
_CHILDREN: dict[int, subprocess.Popen] = {}
"""Brokers started by this process, by pid: kept so a handle dropped while its broker runs
(``raas broker --background``, adopted handles) neither warns nor leaves a zombie after stop."""
SOCKET_NAME = "local.sock"


class BrokerError(RaasError, RuntimeError):
    """Mosquitto could not be prepared, started or stopped."""


@dataclass
class BrokerHandle:
    """A prepared (and usually running) broker.

    Attributes:
        role: ``"central"`` or ``"local"``.
        dir: its runtime directory.
        host, port: TCP listener (port 0: none).
        socket_path: unix socket (node-local broker only).
        node_id: the node a node-local broker serves.
        process: the Popen when started by this process, else None.
        pid: mosquitto's pid once running.
    """

    role: str
    dir: Path
    host: str
    port: int
    socket_path: Path | None = None
    node_id: str | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    pid: int | None = None
    command: list[str] = field(default_factory=list, repr=False)

    @property
    def secrets(self) -> Path:
        """Directory of the service clients' password files (one file per username)."""
        return self.dir / "secrets"

    @property
    def conf_path(self) -> Path:
        return self.dir / "mosquitto.conf"

    @property
    def pid_path(self) -> Path:
        return self.dir / "mosquitto.pid"

    @property
    def log_path(self) -> Path:
        return self.dir / "mosquitto.log"

    def secret(self, username: str) -> str:
        """The stored password of service client ``username``.

        Raises:
            BrokerError: there is none.
        """
        try:
            return (self.secrets / username).read_text().strip()
        except OSError as e:
            raise BrokerError(f"no password file for {username!r} in {self.secrets}") from e

    def address(self, username: str | None = None, password: str | None = None) -> BrokerAddress:
        """TCP address of this broker for ``username`` (unix socket if it has no TCP port)."""
        if not self.port:
            return self.unix_address(username, password)
        return BrokerAddress("tcp", self.host, self.port, username, password)

    def unix_address(self, username: str | None = None,
                     password: str | None = None) -> BrokerAddress:
        """Address through the unix socket (node-local broker only)."""
        if self.socket_path is None:
            raise BrokerError(f"the {self.role} broker has no unix socket")
        return BrokerAddress("unix", str(self.socket_path), 0, username, password)

    def service_address(self, username: str) -> BrokerAddress:
        """Address with the stored credentials of service client ``username``."""
        return self.address(username, self.secret(username))

    @property
    def admin_address(self) -> BrokerAddress:
        """The dynsec administrator (superuser) of this broker."""
        return self.service_address("admin")

    @property
    def url(self) -> str:
        return self.address().url()

    def running(self) -> bool:
        proc = self.process or _CHILDREN.get(self.pid or -1)
        if proc is not None:
            return proc.poll() is None
        return self.pid is not None and _alive(self.pid)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop mosquitto (SIGTERM, SIGKILL after ``timeout_s``); no-op when not running."""
        pid = self.pid
        if pid is None or not self.running():
            self.pid_path.unlink(missing_ok=True)
            proc = _CHILDREN.pop(pid or -1, None)
            if proc is not None:
                proc.poll()  # reap an exited child
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout_s
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.running():
            log.warning("mosquitto %d ignored SIGTERM, killing it", pid)
            os.kill(pid, signal.SIGKILL)
        proc = _CHILDREN.pop(pid, None) or self.process
        if proc is not None:
            proc.wait(timeout_s)  # reap it
        self.pid_path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child still answers kill(0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


def _running_pid(handle: BrokerHandle) -> int | None:
    """The pid in the pid file if it is a live mosquitto using this directory's config."""
    try:
        pid = int(handle.pid_path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if str(handle.conf_path).encode() in cmdline and _alive(pid):
        return pid
    return None


def _service_password(secrets_dir: Path, username: str) -> str:
    path = secrets_dir / username
    if path.exists():
        return path.read_text().strip()
    password = seed.new_password()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def prepare(role: str, dir: Path | str | None = None, *, cfg: BrokerConfig | None = None,
            host: str | None = None, port: int | None = None, node_id: str | None = None,
            socket_path: Path | str | None = None, central_url: str | None = None,
            bridge_password: str | None = None) -> BrokerHandle:
    """Write the runtime directory of a ``role`` broker (config, dynsec JSON, secrets).

    Arguments left None come from ``cfg`` (default: :class:`BrokerConfig` from the environment).

    Raises:
        BrokerError: unknown role, a bridge without its password, an invalid node id.
        ConfigError: an invalid ``RAAS_*`` setting.
    """
    if role not in ROLES:
        raise BrokerError(f"broker role must be one of {ROLES}, got {role!r}")
    cfg = cfg or load(BrokerConfig)
    run_dir = Path(dir).resolve() if dir else cfg.runtime_dir(role)
    run_dir.mkdir(parents=True, exist_ok=True)
    for d in (run_dir / "secrets", run_dir / "data"):
        d.mkdir(exist_ok=True)
        d.chmod(0o700)
    user = getpass.getuser()
    common = dict(plugin=cfg.dynsec_plugin, max_inflight=cfg.max_inflight,
                  max_queued=cfg.max_queued, user=user)
    if role == "central":
        handle = BrokerHandle("central", run_dir, host or cfg.host,
                              cfg.port if port is None else port)
        roles = acl.central_service_roles()
        names = acl.CENTRAL_SERVICE_CLIENTS
        text = render.render_central(run_dir, host=handle.host, port=handle.port, **common)
    else:
        node = check_id(node_id or cfg.node_id, "node id")
        sock = Path(socket_path or cfg.local_socket or run_dir / "sock" / SOCKET_NAME).resolve()
        if len(str(sock)) > 100:
            raise BrokerError(f"unix socket path {sock} is too long (max ~107 bytes)")
        sock.parent.mkdir(parents=True, exist_ok=True)
        st = sock.parent.stat()
        if st.st_uid == os.geteuid():  # let any uid traverse to the socket; only ever add bits
            sock.parent.chmod(stat.S_IMODE(st.st_mode) | 0o011)
        handle = BrokerHandle("local", run_dir, "127.0.0.1", cfg.local_port if port is None
                              else port, socket_path=sock, node_id=node)
        roles = acl.local_service_roles(node)
        names = acl.LOCAL_SERVICE_CLIENTS
        bridge = None
        # An explicit central_url (even "") decides; otherwise RAAS_LOCAL_BRIDGE does.
        url = central_url if central_url is not None else (cfg.central_url if cfg.bridge else "")
        if url:
            password = bridge_password or read_secret(cfg.bridge_password)
            if not password and (run_dir / "secrets" / f"bridge-{node}").exists():
                password = (run_dir / "secrets" / f"bridge-{node}").read_text().strip()
            if not password:
                raise BrokerError(f"bridge to {url} needs the password of bridge-{node}: set "
                                  f"RAAS_BRIDGE_PASSWORD or run `raas broker add-node` centrally")
            central = BrokerAddress.parse(url)
            if central.transport != "tcp":
                raise BrokerError("the bridge needs a mqtt://host:port central URL")
            bridge = render.Bridge(node, central.host, central.port, password)
        text = render.render_local(run_dir, socket_path=sock, port=handle.port, bridge=bridge,
                                   **common)
    passwords = {name: _service_password(run_dir / "secrets", name) for name in names}
    dynsec_path = run_dir / "dynamic-security.json"
    doc: dict = {}
    if dynsec_path.exists():
        try:
            doc = json.loads(dynsec_path.read_text())
        except ValueError as e:
            raise BrokerError(f"{dynsec_path} is not valid JSON: {e}") from e
    seed.write_json(dynsec_path, seed.merge(doc, roles, passwords))
    _write_private(handle.conf_path, text)
    handle.command = [cfg.mosquitto, "-c", str(handle.conf_path)]
    (run_dir / "broker.json").write_text(json.dumps({
        "role": role, "host": handle.host, "port": handle.port, "node_id": handle.node_id,
        "socket_path": str(handle.socket_path) if handle.socket_path else None,
        "command": handle.command}, indent=1) + "\n")
    return handle


def _mqtt_ping(sock: socket.socket, username: str, password: str) -> bool:
    """Send an MQTT 3.1.1 CONNECT with these credentials; True if the CONNACK accepts them.

    Proves the listener is *this* broker (only it knows the admin password), not some other
    process that happens to hold the port.
    """
    def s(v: str) -> bytes:
        b = v.encode()
        return len(b).to_bytes(2, "big") + b

    body = (s("MQTT") + bytes([4, 0xC2]) + (10).to_bytes(2, "big")
            + s(f"raas-ping-{os.getpid()}-{os.urandom(4).hex()}") + s(username) + s(password))
    length, n = b"", len(body)
    while True:  # MQTT variable-length "remaining length"
        n, digit = divmod(n, 128)
        length += bytes([digit | (0x80 if n else 0)])
        if not n:
            break
    sock.sendall(b"\x10" + length + body)
    ack = b""
    while len(ack) < 4:
        chunk = sock.recv(4 - len(ack))
        if not chunk:
            return False
        ack += chunk
    ok = ack[0] == 0x20 and ack[3] == 0
    if ok:
        sock.sendall(b"\xe0\x00")  # DISCONNECT
    return ok


def _ready(handle: BrokerHandle) -> bool:
    """True when every listener of ``handle`` accepts the admin's credentials."""
    password = handle.secret("admin")
    try:
        if handle.socket_path is not None:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1.0)
                s.connect(str(handle.socket_path))
                if not _mqtt_ping(s, "admin", password):
                    return False
        if handle.port:
            with socket.create_connection((handle.host, handle.port), timeout=1.0) as s:
                if not _mqtt_ping(s, "admin", password):
                    return False
        return True
    except OSError:
        return False


def start_broker(role: str, dir: Path | str | None = None, *, timeout_s: float = 10.0,
                 **kwargs) -> BrokerHandle:
    """Prepare ``dir`` (see :func:`prepare` for the keyword arguments) and start mosquitto in the
    background; return once it accepts connections. If it already runs there, return that one
    (its running configuration is kept: stop it first to apply changes).

    Raises:
        BrokerError: mosquitto exited or did not listen within ``timeout_s``.
    """
    probe = BrokerHandle(role, Path(dir).resolve() if dir else
                         (kwargs.get("cfg") or load(BrokerConfig)).runtime_dir(role), "", 0)
    pid = _running_pid(probe)
    if pid is not None:
        handle = _adopt(role, probe.dir, pid)
        log.info("%s broker already running in %s (pid %d)", role, handle.dir, pid)
        return handle
    handle = prepare(role, probe.dir, **kwargs)
    _spawn(handle, open(handle.log_path, "ab"), timeout_s)
    log.info("%s broker running in %s (pid %d)", role, handle.dir, handle.pid)
    return handle


def _spawn(handle: BrokerHandle, output, timeout_s: float, new_session: bool = True) -> None:
    """Start mosquitto for a prepared ``handle`` and wait until it listens.

    umask 077: the dynsec plugin rewrites its JSON (password hashes) with default permissions.
    """
    if handle.socket_path is not None:
        handle.socket_path.unlink(missing_ok=True)
    try:
        handle.process = subprocess.Popen(handle.command, stdin=subprocess.DEVNULL, stdout=output,
                                          stderr=output, start_new_session=new_session,
                                          umask=0o077)
    except OSError as e:
        raise BrokerError(f"cannot run {handle.command[0]}: {e}") from e
    finally:
        if output not in (None, subprocess.DEVNULL) and hasattr(output, "close"):
            output.close()
    handle.pid = handle.process.pid
    _CHILDREN[handle.pid] = handle.process
    handle.pid_path.write_text(f"{handle.pid}\n")
    deadline = time.monotonic() + timeout_s
    while not _ready(handle):
        if handle.process.poll() is not None or time.monotonic() > deadline:
            handle.stop()
            tail = ""
            if handle.log_path.exists():
                tail = handle.log_path.read_text(errors="replace")[-1500:]
            raise BrokerError(f"mosquitto ({handle.role}) did not start in {handle.dir} "
                              f"(see its log):\n{tail}")
        time.sleep(0.005)
    if handle.socket_path is not None:
        handle.socket_path.chmod(0o666)  # any container uid may connect; credentials protect it


def run_foreground(handle: BrokerHandle, timeout_s: float = 10.0) -> int:
    """Run a prepared broker attached to this process (log on stderr) until it exits; SIGTERM,
    SIGINT and SIGHUP are passed on. Returns mosquitto's exit status.

    Raises:
        BrokerError: it is already running there, or did not start.
    """
    pid = _running_pid(handle)
    if pid is not None:
        raise BrokerError(f"a broker already runs in {handle.dir} (pid {pid})")
    received: list[int] = []

    def forward(signum, frame):  # noqa: ARG001 - signal handler signature
        received.append(signum)
        if handle.process is not None:
            handle.process.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        try:
            _spawn(handle, None, timeout_s, new_session=False)
        except BrokerError:
            if received and handle.process is not None:  # told to stop while starting
                return handle.process.wait()
            raise
        assert handle.process is not None
        if received:  # arrived while starting
            handle.process.send_signal(received[0])
        return handle.process.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        handle.pid_path.unlink(missing_ok=True)
        _CHILDREN.pop(handle.pid or -1, None)


def _adopt(role: str, run_dir: Path, pid: int) -> BrokerHandle:
    """A handle for a broker already running in ``run_dir`` (read back from broker.json)."""
    info = json.loads((run_dir / "broker.json").read_text())
    if info["role"] != role:
        raise BrokerError(f"a {info['role']} broker already runs in {run_dir}, not a {role} one")
    handle = BrokerHandle(role, run_dir, info["host"], info["port"],
                          socket_path=Path(info["socket_path"]) if info["socket_path"] else None,
                          node_id=info["node_id"], pid=pid)
    handle.command = info["command"]
    return handle


def stop_broker(dir: Path | str) -> bool:
    """Stop the background broker running in ``dir``; False if none was running."""
    probe = BrokerHandle("central", Path(dir).resolve(), "", 0)
    pid = _running_pid(probe)
    if pid is None:
        probe.pid_path.unlink(missing_ok=True)
        return False
    probe.pid = pid
    probe.stop()
    return True
