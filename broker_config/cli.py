"""``raas broker ...``: run the central or a node-local Mosquitto and manage its accounts.

Handlers import the broker machinery when they run, so ``raas --help`` stays light.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from broker_config.config import TLS_DIR, BrokerConfig
from broker_config.seed import write_private
from gym_raas_mqtt.config import load, read_secret


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``broker central|local|stop|add-node|add-user|ca|cert`` to the ``raas`` parser."""
    p = subparsers.add_parser("broker", help="run and administer the Mosquitto brokers",
                              description="Run the central or a node-local Mosquitto (config, "
                              "dynamic-security roles and service passwords are generated in "
                              "--dir) and manage node and user accounts.")
    sub = p.add_subparsers(dest="broker_command", metavar="ACTION", required=True)

    def runtime(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dir", type=Path, help="runtime directory (RAAS_BROKER_DIR; default "
                       "./var/broker/<role>)")

    for role, text in (("central", "the central broker (dispatcher, nodes, dashboard, users)"),
                       ("local", "a node-local broker (motor node, agent, job container)")):
        q = sub.add_parser(role, help=f"start {text}")
        runtime(q)
        q.add_argument("--host", help="TCP bind address (RAAS_BROKER_HOST)" if role == "central"
                       else argparse.SUPPRESS)
        q.add_argument("--port", type=int, help="TCP port (RAAS_BROKER_PORT / "
                       "RAAS_LOCAL_BROKER_PORT; local: 0 = unix socket only)")
        q.add_argument("--background", action="store_true",
                       help="detach (log in <dir>/mosquitto.log, pid in <dir>/mosquitto.pid)")
        if role == "local":
            q.add_argument("--node-id", help="this node's id (RAAS_NODE_ID)")
            q.add_argument("--socket", type=Path, help="unix socket path (RAAS_LOCAL_SOCKET)")
            q.add_argument("--central-url", help="bridge to this central mqtt://host:port "
                           "(RAAS_CENTRAL_MQTT_URL)")
            q.add_argument("--bridge-password-file", type=Path,
                           help="password of bridge-<node> (RAAS_BRIDGE_PASSWORD)")
        q.set_defaults(func=_run, role=role)

    q = sub.add_parser("stop", help="stop a background broker")
    runtime(q)
    q.add_argument("--role", choices=("central", "local"), default="central",
                   help="which default directory to use when --dir is not given")
    q.set_defaults(func=_stop)

    q = sub.add_parser("add-node", help="create (or re-key) a node's central accounts "
                       "node-<id> and bridge-<id>; passwords go to <dir>/secrets/")
    runtime(q)
    q.add_argument("node_id")
    q.set_defaults(func=_add_node)

    q = sub.add_parser("ca", help="make a local CA for the brokers' TLS certificates: "
                       "<dir>/tls/ca.crt (give it to clients) and ca.key (0600)")
    runtime(q)
    q.add_argument("--name", default="RaaS-MQTT CA", help="the CA's common name")
    q.add_argument("--days", type=int, default=3650, help="validity (default %(default)s)")
    q.add_argument("--replace", action="store_true",
                   help="replace an existing CA (clients must be given the new ca.crt)")
    q.set_defaults(func=_make_ca)

    q = sub.add_parser("cert", help="make the central broker's TLS certificate, signed by the "
                       "local CA: <dir>/tls/server.crt and server.key (0600)")
    runtime(q)
    q.add_argument("--host", dest="names", action="append", default=[], metavar="NAME",
                   help="a DNS name clients connect to (repeatable; default this machine's "
                   "names); localhost is always added")
    q.add_argument("--ip", action="append", default=[], metavar="ADDRESS",
                   help="an address clients connect to (repeatable); 127.0.0.1 and ::1 are "
                   "always added")
    q.add_argument("--ca-dir", type=Path, help="folder of ca.crt/ca.key (default <dir>/tls)")
    q.add_argument("--days", type=int, default=825, help="validity (default %(default)s)")
    q.set_defaults(func=_make_cert)

    q = sub.add_parser("add-user", help="create (or re-key) user-<owner>: read-only access to "
                       "the owner's own job topics; password goes to <dir>/secrets/")
    runtime(q)
    q.add_argument("owner")
    q.set_defaults(func=_add_user)


def _dir(args: argparse.Namespace, role: str) -> Path:
    """The runtime directory: ``--dir``, else the configured one for ``role``."""
    return args.dir.resolve() if args.dir else load(BrokerConfig).runtime_dir(role)


def _run(args: argparse.Namespace) -> int:
    """``raas broker central|local``: run a broker (foreground, or ``--background``)."""
    from broker_config import runner

    kwargs: dict = {"port": args.port}
    if args.role == "central":
        kwargs["host"] = args.host
    else:
        kwargs.update(node_id=args.node_id, socket_path=args.socket,
                      central_url=args.central_url)
        if args.bridge_password_file:
            kwargs["bridge_password"] = read_secret(f"file:{args.bridge_password_file}")
    run_dir = _dir(args, args.role)
    if args.background:
        h = runner.start_broker(args.role, run_dir, **kwargs)
        where = f"{h.host}:{h.port}" if h.port else ""
        if h.tls_port:
            where += f" TLS {h.tls_host or '*'}:{h.tls_port}"
        if h.socket_path:
            where += f" unix:{h.socket_path}"
        print(f"{args.role} broker running (pid {h.pid}) on {where.strip()}; "
              f"secrets in {h.secrets}")
        return 0
    handle = runner.prepare(args.role, run_dir, **kwargs)
    print(f"{args.role} broker: {handle.conf_path}, secrets in {handle.secrets}", file=sys.stderr)
    return runner.run_foreground(handle)


def _stop(args: argparse.Namespace) -> int:
    """``raas broker stop``: stop a background broker."""
    from broker_config.runner import stop_broker

    run_dir = _dir(args, args.role)
    if stop_broker(run_dir):
        print(f"stopped the broker in {run_dir}")
        return 0
    print(f"no broker running in {run_dir}", file=sys.stderr)
    return 1


def _add_node(args: argparse.Namespace) -> int:
    """``raas broker add-node``: create or re-key a node's central accounts."""
    from broker_config import provision
    from broker_config.handle import running_central

    h = running_central(_dir(args, "central"))
    for username, fn in ((provision.node_username(args.node_id), provision.ensure_node),
                         (provision.bridge_username(args.node_id), provision.ensure_bridge)):
        write_private(h.secrets / username, fn(h.admin_address, args.node_id) + "\n")
        print(f"{username}: password in {h.secrets / username}")
    return 0


def _add_user(args: argparse.Namespace) -> int:
    """``raas broker add-user``: create or re-key a researcher's read-only account."""
    from broker_config import provision
    from broker_config.handle import running_central

    h = running_central(_dir(args, "central"))
    username = provision.user_username(args.owner)
    write_private(h.secrets / username,
                  provision.ensure_user(h.admin_address, args.owner) + "\n")
    print(f"{username}: password in {h.secrets / username}")
    return 0


def _make_ca(args: argparse.Namespace) -> int:
    """``raas broker ca``: make a local CA."""
    from broker_config.tls import make_ca  # cryptography

    path = make_ca(_dir(args, "central") / TLS_DIR, args.name, args.days, args.replace)
    print(f"CA certificate {path} (give it to clients); its key beside it (keep it private)")
    return 0


def _make_cert(args: argparse.Namespace) -> int:
    """``raas broker cert``: make the central broker's server certificate."""
    from broker_config.tls import default_names, make_server_cert  # cryptography

    names = list(dict.fromkeys([*(args.names or default_names()), "localhost"]))
    ips = list(dict.fromkeys(ipaddress.ip_address(a) for a in [*args.ip, "127.0.0.1", "::1"]))
    folder = _dir(args, "central") / TLS_DIR
    path = make_server_cert(folder, names, ips, ca_folder=args.ca_dir, days=args.days)
    print(f"server certificate {path} for {', '.join(names + [str(ip) for ip in ips])}; "
          "restart the central broker to use it")
    return 0
