"""``raas node enroll|install``: enrolling a node on the central host and installing it on the node.

Handlers import the enrollment machinery when they run, so ``raas --help`` stays light.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet_node.motor.config import BACKENDS
from gym_raas_mqtt.config import load
from raas_platform.settings import STORE_URL


@dataclass(frozen=True)
class EnrollConfig:
    """What ``raas node enroll`` reads from the central host's environment."""

    store_url: str = STORE_URL.field()


def register_enrollment(node_sub: Any) -> None:
    """Add ``enroll`` and ``install`` to the ``raas node`` subparsers ``node_sub``."""
    p = node_sub.add_parser(
        "enroll", help="on the central host: make a node's logins and its install bundle",
        description="Create (or re-key) the node's central logins node-<id> and bridge-<id> on "
                    "the running central broker and write everything the node needs (env files, "
                    "passwords, CA certificate, systemd units, a calibration placeholder) into "
                    "one tarball for `raas node install` (hardware/pi-setup.md).")
    p.add_argument("node_id")
    p.add_argument("--broker-dir", type=Path, default=Path("var/broker/central"),
                   help="the central broker's runtime directory (default %(default)s)")
    p.add_argument("--central-url", help="how the node reaches the central broker (default "
                   "mqtts://<its certificate's name>:<its TLS port>)")
    p.add_argument("--ca-file", type=Path, help="CA certificate the node verifies it with "
                   "(default the broker's: RAAS_CENTRAL_CA_FILE or <broker-dir>/tls/ca.crt)")
    p.add_argument("--store-url", help="object store for result bundles (RAAS_STORE_URL)")
    p.add_argument("--motor-backend", choices=BACKENDS, default="pigpio",
                   help="pigpio: Pi 4 on Bookworm; lgpio: Pi 5 or Trixie (default %(default)s)")
    p.add_argument("--raas-bin", default="/opt/raas/venv/bin/raas",
                   help="the raas executable on the node (default %(default)s)")
    p.add_argument("-o", "--output", type=Path,
                   help="bundle to write (default ./<node_id>.raas-node.tar.gz)")
    p.set_defaults(func=cmd_enroll)

    p = node_sub.add_parser(
        "install", help="on the node: install an enrollment bundle and start the services",
        description="Install the files of a `raas node enroll` bundle (passwords 0600; an "
                    "existing calibration file is kept) and, with systemd, enable and restart "
                    "raas-broker-local, raas-motor and raas-agent.")
    p.add_argument("bundle", type=Path)
    p.add_argument("--root", type=Path, default=Path("/"),
                   help="install below this folder instead of / (a scratch tree: paths in the "
                        "env files and units point into it; nothing is started)")
    p.add_argument("--no-start", action="store_true", help="install only")
    p.set_defaults(func=cmd_install)


def cmd_enroll(args: argparse.Namespace) -> int:
    """``raas node enroll``: make a node's logins and write its bundle."""
    from broker_config.handle import running_central
    from fleet_node.enroll import enroll, write_bundle

    spec = enroll(running_central(args.broker_dir.resolve()), args.node_id,
                  store_url=args.store_url or load(EnrollConfig).store_url,
                  central_url=args.central_url, ca_file=args.ca_file,
                  motor_backend=args.motor_backend, raas_bin=args.raas_bin)
    out = write_bundle(spec, args.output or Path(f"{spec.node_id}.raas-node.tar.gz"))
    print(f"{out}: node {spec.node_id}, central broker {spec.central_url}. It holds the node's "
          f"passwords: copy it to the node over SSH, run `sudo {spec.raas_bin} node install "
          f"{out.name}` there, then delete it.")
    if "://" not in spec.store_url or spec.store_url.startswith("file:"):
        print(f"note: the store {spec.store_url} is a local path; a node on another machine "
              "needs a shared store (s3://...)", file=sys.stderr)
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    """``raas node install``: install a bundle and start the node's services."""
    from fleet_node.install import install, service_commands

    done = install(args.bundle, args.root, start=not args.no_start)
    print(f"node {done.node_id} installed below {done.root} ({len(done.written)} files; central "
          f"broker {done.central_url})")
    for path in done.kept:
        print(f"kept {path} (this robot's calibration)")
    if done.started:
        print("services enabled and started: systemctl status raas-broker-local raas-motor "
              "raas-agent")
        return 0
    print("services not started; each runs, in this order, as:")
    for service, (env, argv) in service_commands(done.root).items():
        print(f"  {service}: env {' '.join(f'{k}={v}' for k, v in env.items())} "
              f"{' '.join(argv)}")
    return 0
