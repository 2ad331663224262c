#!/usr/bin/env python3
"""Writes the "module → what it owns" table of docs/architecture.md from the modules' opening lines.

Every module of the seven packages opens with a docstring whose first sentence says what it owns
(tests/test_architecture.py checks that); this script puts those sentences into the table between
the ``<!-- modules -->`` markers, so the document cannot drift from the code. ``make docs`` runs it;
``--check`` exits 1 when the table is out of date.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gym_raas_mqtt", "broker_config", "dispatcher", "fleet_node", "dashboard",
            "raas_platform", "devstack")
DOC = ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- modules -->", "<!-- /modules -->"


def first_sentence(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    para = " ".join(doc.split("\n\n")[0].split())
    return para.replace("|", "\\|")


def table() -> str:
    rows = ["| module | lines | what it owns |", "|---|---:|---|"]
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            rel = path.relative_to(ROOT).as_posix()
            rows.append(f"| `{rel}` | {path.read_text().count(chr(10))} | {first_sentence(path)} |")
    return "\n".join(rows)


def main() -> int:
    text = DOC.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{table()}\n{END}{tail}"
    if "--check" in sys.argv:
        if new != text:
            print("docs/architecture.md's module table is out of date: run `make docs`",
                  file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
