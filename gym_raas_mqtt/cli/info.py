"""``raas protocol`` and ``raas config``: print the wire contract and every setting."""

from __future__ import annotations

import argparse
import importlib


def _table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(r[c].replace("|", "\\|") for c in cols) + " |" for r in rows]
    return "\n".join(out)


def cmd_protocol(args: argparse.Namespace) -> int:
    from gym_raas_mqtt import protocol

    print(f"Protocol version {protocol.PROTOCOL_VERSION}, root `{protocol.ROOT}/`\n")
    print(_table([{k: f"`{v}`" if k == "topic" else v for k, v in r.items()}
                  for r in protocol.describe_topics()]))
    return 0


CONFIG_CLASSES = (
    "gym_raas_mqtt.backends.bus:BusConfig",
    "gym_raas_mqtt.cli.client:ClientConfig",
    "broker_config.config:BrokerConfig",
    "fleet_node.motor.config:MotorConfig",
    "fleet_node.motor.pigpio_motor:PigpioConfig",
    "fleet_node.config:AgentConfig",
    "fleet_node.runner:RunnerConfig",
    "dispatcher.config:DispatcherConfig",
    "dashboard.config:DashboardConfig",
)


def cmd_config(args: argparse.Namespace) -> int:
    from gym_raas_mqtt.config import describe

    for ref in CONFIG_CLASSES:
        mod, _, name = ref.partition(":")
        try:
            cls = getattr(importlib.import_module(mod), name)
        except (ModuleNotFoundError, AttributeError):
            continue
        print(f"## {name} (`{mod}`)\n")
        print(_table([{"variable": f"`{r['env']}`", "default": f"`{r['default']}`",
                       "unit": r["unit"], "meaning": r["help"]} for r in describe(cls)]))
        print()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("protocol", help="print the MQTT topic tree (Markdown)")
    p.set_defaults(func=cmd_protocol)
    p = sub.add_parser("config", help="print every RAAS_* setting with its default (Markdown)")
    p.set_defaults(func=cmd_config)
