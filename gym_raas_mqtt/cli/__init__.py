"""The ``raas`` console script: one entry point, subcommands contributed by each component.

argparse (stdlib) keeps the researcher's install free of extra dependencies. Each component module
listed in :data:`COMMAND_MODULES` defines ``register(subparsers)``, adding its subcommands with
``set_defaults(func=handler)``; handlers import their heavy dependencies themselves, so ``raas
--help`` works with only the base install and a missing extra gives a clear message.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from gym_raas_mqtt import __version__
from gym_raas_mqtt.errors import RaasError

COMMAND_MODULES = (
    "gym_raas_mqtt.cli.info",  # protocol, config: docs of the contract and settings
    "gym_raas_mqtt.cli.client",  # submit, jobs, logs, results, nodes, cancel (REST client)
    "gym_raas_mqtt.cli.stack",  # stack up/down/demo: the whole platform on one machine
    "broker_config.cli",  # broker central|local, broker passwd
    "fleet_node.cli",  # node motor|agent|calibrate
    "dispatcher.cli",  # dispatcher
    "dashboard.cli",  # dashboard, user
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raas", description="RaaS-MQTT: run Gymnasium controllers on real pendulums.")
    parser.add_argument("--version", action="version", version=f"raas {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:  # component not installed in this environment
            logging.getLogger(__name__).debug("skipping %s: %s", name, e)
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ModuleNotFoundError as e:
        print(f"raas: {e.name} is not installed; install the matching extra, e.g. "
              f"pip install 'gym-raas-mqtt[node,dispatcher,dashboard]'", file=sys.stderr)
        return 3
    except RaasError as e:
        print(f"raas: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # unreachable broker or server, missing file: a reason, not a traceback
        print(f"raas: {e.__class__.__name__}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
