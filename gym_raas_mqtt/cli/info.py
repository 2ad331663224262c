"""``raas protocol`` and ``raas config``: print the wire contract and every setting."""

from __future__ import annotations

import argparse
from importlib.metadata import entry_points

from gym_raas_mqtt import protocol
from gym_raas_mqtt.config import describe

SETTINGS_GROUP = "raas.settings"
"""Entry-point group naming every installed config dataclass (value: ``module:Class``)."""


def _table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    out += ["| " + " | ".join(r[c].replace("|", "\\|") for c in cols) + " |" for r in rows]
    return "\n".join(out)


def cmd_protocol(args: argparse.Namespace) -> int:
    """``raas protocol``: print the topic tree and the payload forms as Markdown."""
    print(f"Protocol version {protocol.PROTOCOL_VERSION}, root `{protocol.ROOT}/`\n")
    print(_table([{k: f"`{v}`" if k == "topic" else v for k, v in r.items()}
                  for r in protocol.describe_topics()]))
    print(f"\nPayloads are JSON (MQTT 5 content type `{protocol.JSON_CONTENT_TYPE}` or none), "
          f"except these, sent in a fixed-layout binary form named by their content type (JSON is "
          f"still accepted for them); layouts: `gym_raas_mqtt/protocol/binary.py`.\n")
    print(_table([{k: f"`{v}`" if k == "content type" else v for k, v in r.items()}
                  for r in protocol.describe_forms()]))
    return 0


def config_classes() -> list[type]:
    """Every installed config dataclass, researcher's first (``raas.settings`` entry points)."""
    out = []
    eps = sorted(entry_points(group=SETTINGS_GROUP),
                 key=lambda ep: not ep.value.startswith("gym_raas_mqtt."))
    for ep in eps:
        try:
            out.append(ep.load())
        except (ModuleNotFoundError, AttributeError):  # that distribution's extra is missing
            continue
    return out


def cmd_config(args: argparse.Namespace) -> int:
    """``raas config``: print every ``RAAS_*`` variable once, under the first service that reads
    it, with every service that reads it (Markdown)."""
    rows = describe(config_classes())
    by_first: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_first.setdefault(r["used_by"].split(", ")[0], []).append(r)
    for cls in config_classes():
        own = by_first.get(cls.__name__, [])
        if not own:
            continue
        print(f"## {cls.__name__} (`{cls.__module__}`)\n")
        print(_table([{"variable": f"`{r['env']}`", "default": f"`{r['default']}`",
                       "unit": r["unit"], "meaning": r["help"], "also read by": ", ".join(
                           r["used_by"].split(", ")[1:])} for r in own]))
        print()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``protocol`` and ``config`` to the ``raas`` parser."""
    p = sub.add_parser("protocol", help="print the MQTT topic tree and payload forms (Markdown)")
    p.set_defaults(func=cmd_protocol)
    p = sub.add_parser("config", help="print every RAAS_* setting with its default (Markdown)")
    p.set_defaults(func=cmd_config)
