"""Prepares a broker's runtime directory and runs Mosquitto in it (foreground or background).

Layout of a runtime directory::

    <dir>/mosquitto.conf          rendered on every start (0600: may hold the bridge password)
    <dir>/dynamic-security.json   roles and clients (merged on every start, changed at run time)
    <dir>/broker.json             role, listeners and command line (read back to adopt a broker)
    <dir>/data/                   persistence (retained messages, sessions)
    <dir>/secrets/<username>      generated passwords of the service clients (0600)
    <dir>/sock/local.sock         node-local broker only: the socket job containers get (0666)
    <dir>/tls/                    central broker only: server.crt/.key (its TLS listener) and
                                  ca.crt/.key (a local CA), made by ``raas broker ca|cert``
    <dir>/mosquitto.pid, mosquitto.log   background mode only

Listeners: the central broker's plain-text one binds to loopback only (co-located dispatcher,
dashboard, operator); everything off the machine uses its TLS listener (8883), opened when a
certificate is configured or found in ``<dir>/tls/``. The node-local broker has a unix socket and
loopback TCP; its bridge speaks TLS to an ``mqtts://`` central URL.

Starting is idempotent: if the pid file names a live mosquitto using this directory, the running
broker is returned instead of a second one. The handle of a broker (files, addresses, process) is
:class:`~broker_config.handle.BrokerHandle`, re-exported here with :class:`BrokerError`.
"""

from __future__ import annotations

import getpass
import ipaddress
import json
import logging
import os
import signal
import stat
from pathlib import Path

from broker_config import acl, render, seed
from broker_config.config import BrokerConfig
from broker_config.handle import (BrokerError, BrokerHandle, certificate_der, find_running,
                                  running_pid)
from gym_raas_mqtt.config import load, read_secret
from gym_raas_mqtt.mqtt import BrokerAddress
from gym_raas_mqtt.protocol import check_id

__all__ = ["ROLES", "SOCKET_NAME", "BrokerError", "BrokerHandle", "prepare", "run_foreground",
           "start_broker", "stop_broker"]

log = logging.getLogger(__name__)

ROLES = ("central", "local")
SOCKET_NAME = "local.sock"


def _service_password(secrets_dir: Path, username: str) -> str:
    """The stored password of service client ``username``, generated (0600) on first use."""
    path = secrets_dir / username
    if path.exists():
        return path.read_text().strip()
    password = seed.new_password()
    seed.write_private(path, password + "\n", exclusive=True)
    return password


def _central_handle(run_dir: Path, cfg: BrokerConfig, host: str,
                    port: int) -> tuple[BrokerHandle, Path | None]:
    """The central broker's handle and its TLS key (None without a TLS listener).

    Raises:
        BrokerError: a plain-text listener off loopback, no listener at all, or a TLS
            certificate file that holds no certificate.
        ConfigError: a configured TLS file is missing.
    """
    if port and not is_loopback(host):
        raise BrokerError(f"the plain-text listener may bind only to loopback, not {host!r}: "
                          "clients on other machines use the TLS listener (raas broker cert; "
                          "RAAS_BROKER_TLS_*)")
    handle = BrokerHandle("central", run_dir, host, port)
    files = cfg.tls_files(run_dir)
    if files is None:
        if not port:
            raise BrokerError("the central broker has no listener: set RAAS_BROKER_PORT or give "
                              "it a TLS certificate (raas broker cert)")
        return handle, None
    handle.tls_cert, key, handle.ca_file = files
    certificate_der(handle.tls_cert)  # refuse a wrong file now, not as a startup timeout
    handle.tls_host, handle.tls_port = cfg.tls_host, cfg.tls_port
    return handle, key


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this machine's loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        handle, tls_key = _central_handle(run_dir, cfg, host or cfg.host,
                                          cfg.port if port is None else port)
        roles = acl.central_service_roles()
        names = acl.CENTRAL_SERVICE_CLIENTS
        node = None
        tls = None if handle.tls_cert is None else render.TlsListener(
            handle.tls_host, handle.tls_port, handle.tls_cert, tls_key)
        text = render.render_central(run_dir, host=handle.host, port=handle.port, tls=tls,
                                     **common)
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
            central = BrokerAddress.parse(url, ca_file=cfg.central_ca_file)
            if central.transport != "tcp":
                raise BrokerError("the bridge needs a mqtts://host:port (or, on one machine, "
                                  "mqtt://127.0.0.1:port) central URL")
            bridge = render.Bridge(node, central.host, central.port, password, central.tls,
                                   Path(central.ca_file) if central.ca_file else None)
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
    ids = {name: acl.client_id(name, node) for name in names}
    seed.write_json(dynsec_path, seed.merge(doc, roles, passwords, ids))
    seed.write_private(handle.conf_path, text)
    handle.command = [cfg.mosquitto, "-c", str(handle.conf_path)]
    (run_dir / "broker.json").write_text(json.dumps({
        "role": role, "host": handle.host, "port": handle.port, "node_id": handle.node_id,
        "socket_path": str(handle.socket_path) if handle.socket_path else None,
        "tls": {"host": handle.tls_host, "port": handle.tls_port,
                "cert": str(handle.tls_cert) if handle.tls_cert else None,
                "ca_file": str(handle.ca_file) if handle.ca_file else None},
        "command": handle.command}, indent=1) + "\n")
    return handle


def start_broker(role: str, dir: Path | str | None = None, *, timeout_s: float = 10.0,
                 **kwargs) -> BrokerHandle:
    """Prepare ``dir`` (see :func:`prepare` for the keyword arguments) and start mosquitto in the
    background; return once it accepts connections. If it already runs there, return that one
    (its running configuration is kept: stop it first to apply changes).

    Raises:
        BrokerError: mosquitto exited or did not listen within ``timeout_s``, or a broker of the
            other role runs there.
    """
    run_dir = Path(dir).resolve() if dir else \
        (kwargs.get("cfg") or load(BrokerConfig)).runtime_dir(role)
    handle = find_running(role, run_dir)
    if handle is not None:
        log.info("%s broker already running in %s (pid %d)", role, handle.dir, handle.pid)
        return handle
    handle = prepare(role, run_dir, **kwargs)
    handle.spawn(open(handle.log_path, "ab"), timeout_s)
    log.info("%s broker running in %s (pid %d)", role, handle.dir, handle.pid)
    return handle


def run_foreground(handle: BrokerHandle, timeout_s: float = 10.0) -> int:
    """Run a prepared broker attached to this process (log on stderr) until it exits; SIGTERM,
    SIGINT and SIGHUP are passed on. Returns mosquitto's exit status.

    Raises:
        BrokerError: it is already running there, or did not start.
    """
    pid = running_pid(handle.dir)
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
            handle.spawn(None, timeout_s, new_session=False)
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
        handle.release()


def stop_broker(dir: Path | str) -> bool:
    """Stop the background broker running in ``dir``; False if none was running."""
    probe = BrokerHandle("central", Path(dir).resolve(), "", 0)
    pid = running_pid(probe.dir)
    if pid is None:
        probe.pid_path.unlink(missing_ok=True)
        return False
    probe.pid = pid
    probe.stop()
    return True
