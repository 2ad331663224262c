"""The ``raas`` console script: one entry point, subcommands contributed by each component.

argparse (stdlib) keeps the researcher's install free of extra dependencies. The researcher's own
commands are the modules in :data:`COMMAND_MODULES`; an installed platform adds its service and
operator commands through the ``raas.commands`` entry-point group (raas-platform/pyproject.toml),
so this package never imports the platform. Each provider defines ``register(subparsers)``, adding
its subcommands with ``set_defaults(func=handler)``; a missing extra gives a clear message.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from importlib.metadata import entry_points
from typing import Any, Callable, Iterator, Sequence

from gym_raas_mqtt import __version__
from gym_raas_mqtt.errors import RaasError

COMMAND_MODULES = (
    "gym_raas_mqtt.cli.info",  # protocol, config: docs of the contract and settings
    "gym_raas_mqtt.cli.client",  # login, submit, logs, results, nodes, cancel (REST client)
    "gym_raas_mqtt.cli.runs",  # jobs (the runs table), status
    "gym_raas_mqtt.cli.verify",  # verify: result bundles' signatures, offline
    "gym_raas_mqtt.cli.dataset",  # dataset export: jobs' telemetry as a Minari dataset
)
COMMAND_GROUP = "raas.commands"
"""Entry-point group through which other distributions add commands (value: ``module:register``)."""


def _registrars() -> Iterator[tuple[str, Callable[[Any], None]]]:
    for name in COMMAND_MODULES:
        yield name, importlib.import_module(name).register
    for ep in entry_points(group=COMMAND_GROUP):
        try:
            yield ep.value, ep.load()
        except ModuleNotFoundError as e:  # the distribution's extra is not installed
            logging.getLogger(__name__).debug("skipping %s: %s", ep.value, e)


def build_parser() -> argparse.ArgumentParser:
    """The ``raas`` argument parser with every installed command."""
    parser = argparse.ArgumentParser(
        prog="raas", description="RaaS-MQTT: run Gymnasium controllers on real pendulums.")
    parser.add_argument("--version", action="version", version=f"raas {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _, register in _registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``raas`` command line; returns the exit status."""
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
        print(f"raas: {e.name} is not installed; install the platform's matching extra, e.g. "
              f"pip install './raas-platform[node,dispatcher,dashboard]' from the repository",
              file=sys.stderr)
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
