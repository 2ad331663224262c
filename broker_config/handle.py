"""A broker's handle: its runtime directory's files, its addresses, its mosquitto process.

The handle knows where a prepared broker keeps its config, pid file, log and service passwords,
how clients reach it, and how to start, recognise, probe and stop its mosquitto process.
:mod:`broker_config.runner` prepares runtime directories and hands out these handles.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.mqtt import BrokerAddress

log = logging.getLogger(__name__)

_CHILDREN: dict[int, subprocess.Popen] = {}
"""Brokers started by this process, by pid: kept so a handle dropped while its broker runs
(``raas broker --background``, adopted handles) neither warns nor leaves a zombie after stop."""
PROBE_TIMEOUT_S = 1.0  # per listener, while waiting for a starting broker


class BrokerError(RaasError, RuntimeError):
    """Mosquitto could not be prepared, started or stopped."""


@dataclass
class BrokerHandle:
    """A prepared (and usually running) broker.

    Attributes:
        role: ``"central"`` or ``"local"``.
        dir: its runtime directory.
        host: plain-text TCP listener's address (loopback).
        port: plain-text TCP listener's port (0: none).
        socket_path: unix socket (node-local broker only).
        tls_host: central broker's TLS listener address ("" = every address).
        tls_port: its port (0: no TLS listener).
        tls_cert: the certificate it serves.
        ca_file: the CA clients verify it with (None: the system's trust store).
        node_id: the node a node-local broker serves.
        process: the Popen when started by this process, else None.
        pid: mosquitto's pid once running.
        command: the mosquitto command line that runs it.
    """

    role: str
    dir: Path
    host: str
    port: int
    socket_path: Path | None = None
    node_id: str | None = None
    tls_host: str = ""
    tls_port: int = 0
    tls_cert: Path | None = None
    ca_file: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    pid: int | None = None
    command: list[str] = field(default_factory=list, repr=False)

    # -- files ----------------------------------------------------------------------------------
    @property
    def secrets(self) -> Path:
        """Directory of the service clients' password files (one file per username)."""
        return self.dir / "secrets"

    @property
    def conf_path(self) -> Path:
        """The rendered ``mosquitto.conf``."""
        return self.dir / "mosquitto.conf"

    @property
    def pid_path(self) -> Path:
        """The pid file of a running broker."""
        return self.dir / "mosquitto.pid"

    @property
    def log_path(self) -> Path:
        """mosquitto's log in background mode."""
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

    # -- addresses ------------------------------------------------------------------------------
    def address(self, username: str | None = None, password: str | None = None) -> BrokerAddress:
        """Plain-text TCP address of this broker for ``username``; without a plain-text port, its
        TLS address (central) or unix socket (node-local)."""
        if not self.port:
            if self.tls_port:
                return self.tls_address(username, password)
            return self.unix_address(username, password)
        return BrokerAddress("tcp", self.host, self.port, username, password)

    def tls_address(self, username: str | None = None, password: str | None = None,
                    host: str | None = None) -> BrokerAddress:
        """The TLS listener's address, verified with :attr:`ca_file`.

        Args:
            host: the name to connect to, which the certificate must carry; default the
                listener's address, or ``localhost`` when it listens on every address.

        Raises:
            BrokerError: this broker has no TLS listener.
        """
        if not self.tls_port:
            raise BrokerError(f"the {self.role} broker in {self.dir} has no TLS listener")
        name = host or (self.tls_host if self.tls_host not in ("", "0.0.0.0", "::")
                        else "localhost")
        return BrokerAddress("tcp", name, self.tls_port, username, password, tls=True,
                             ca_file=str(self.ca_file) if self.ca_file else None)

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
        """The broker's address as a URL, without credentials."""
        return self.address().url()

    # -- process --------------------------------------------------------------------------------
    def running(self) -> bool:
        """Whether its mosquitto process is alive."""
        proc = self.process or _CHILDREN.get(self.pid or -1)
        if proc is not None:
            return proc.poll() is None
        return self.pid is not None and _alive(self.pid)

    def spawn(self, output: IO[bytes] | None, timeout_s: float, new_session: bool = True) -> None:
        """Start mosquitto with :attr:`command` and return once it accepts connections.

        umask 077: the dynsec plugin rewrites its JSON (password hashes) with default permissions.

        Args:
            output: where its stdout and stderr go (closed here), None for this process's.
            timeout_s: how long it may take to listen [s].
            new_session: detach it from this process's session (background mode).

        Raises:
            BrokerError: it could not be run, exited, or did not listen within ``timeout_s``.
        """
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)
        try:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=output,
                                            stderr=output, start_new_session=new_session,
                                            umask=0o077)
        except OSError as e:
            raise BrokerError(f"cannot run {self.command[0]}: {e}") from e
        finally:
            if output is not None:
                output.close()
        self.pid = self.process.pid
        _CHILDREN[self.pid] = self.process
        self.pid_path.write_text(f"{self.pid}\n")
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = ""
                if self.log_path.exists():
                    tail = self.log_path.read_text(errors="replace")[-1500:]
                raise BrokerError(f"mosquitto ({self.role}) did not start in {self.dir} "
                                  f"(see its log):\n{tail}")
            time.sleep(0.005)
        if self.socket_path is not None:
            self.socket_path.chmod(0o666)  # any container uid may connect; credentials protect it

    def ready(self) -> bool:
        """True when every listener accepts the admin's credentials.

        A CONNECT with the admin password proves the listener is *this* broker (only it knows the
        password), not some other process that happens to hold the port. The TLS listener is
        recognised by the certificate it presents, before any password is sent.
        """
        password = self.secret("admin")
        try:
            if self.socket_path is not None:
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(PROBE_TIMEOUT_S)
                    s.connect(str(self.socket_path))
                    if not _mqtt_ping(s, "admin", password):
                        return False
            if self.port:
                with socket.create_connection((self.host, self.port),
                                              timeout=PROBE_TIMEOUT_S) as s:
                    if not _mqtt_ping(s, "admin", password):
                        return False
            if self.tls_port and self.tls_cert is not None:
                return _serves_certificate(self.tls_address().host, self.tls_port,
                                           self.tls_cert)
            return True
        except OSError:
            return False

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

    def release(self) -> None:
        """Forget a process that has exited on its own (a foreground broker): its pid file and
        this process's record of it."""
        self.pid_path.unlink(missing_ok=True)
        _CHILDREN.pop(self.pid or -1, None)


def running_pid(run_dir: Path) -> int | None:
    """The pid in ``run_dir``'s pid file if it is a live mosquitto using that directory's config."""
    probe = BrokerHandle("central", run_dir, "", 0)
    try:
        pid = int(probe.pid_path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if str(probe.conf_path).encode() in cmdline and _alive(pid):
        return pid
    return None


def find_running(role: str, run_dir: Path) -> BrokerHandle | None:
    """A handle for the ``role`` broker already running in ``run_dir`` (read back from its
    ``broker.json``), or None when none runs there.

    Raises:
        BrokerError: a broker of the other role runs there.
    """
    pid = running_pid(run_dir)
    if pid is None:
        return None
    info = json.loads((run_dir / "broker.json").read_text())
    if info["role"] != role:
        raise BrokerError(f"a {info['role']} broker already runs in {run_dir}, not a {role} one")
    tls = info.get("tls") or {}
    handle = BrokerHandle(role, run_dir, info["host"], info["port"],
                          socket_path=Path(info["socket_path"]) if info["socket_path"] else None,
                          node_id=info["node_id"], pid=pid, tls_host=tls.get("host", ""),
                          tls_port=tls.get("port", 0),
                          tls_cert=Path(tls["cert"]) if tls.get("cert") else None,
                          ca_file=Path(tls["ca_file"]) if tls.get("ca_file") else None)
    handle.command = info["command"]
    return handle


def running_central(run_dir: Path) -> BrokerHandle:
    """The central broker running in ``run_dir`` (its handle holds the admin's credentials).

    Raises:
        BrokerError: none runs there.
    """
    handle = find_running("central", run_dir)
    if handle is None:
        raise BrokerError(f"no central broker running in {run_dir}: start it first")
    return handle


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


def _serves_certificate(host: str, port: int, cert: Path) -> bool:
    """True when the TLS listener at ``host:port`` completes a handshake presenting ``cert``.
    Nothing is verified but that identity: this asks whether our broker is up, not whether to
    trust it, and no password is sent."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S) as raw, \
            context.wrap_socket(raw, server_hostname=host) as s:
        return s.getpeercert(binary_form=True) == certificate_der(cert)


def certificate_der(path: Path) -> bytes:
    """The first certificate of PEM file ``path`` (a server's own, in a chain file), as DER.

    Raises:
        BrokerError: the file cannot be read or holds no PEM certificate.
    """
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    try:
        text = path.read_text()
        start = text.index(begin)
        return ssl.PEM_cert_to_DER_cert(text[start:text.index(end, start) + len(end)])
    except (OSError, ValueError) as e:
        raise BrokerError(f"{path}: not a PEM certificate ({e})") from e


def _mqtt_ping(sock: socket.socket, username: str, password: str) -> bool:
    """Send an MQTT 3.1.1 CONNECT with these credentials; True if the CONNACK accepts them."""
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
