"""``raas stack up|down|demo``: the whole platform on one machine, for demos, tests and development."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from devstack.demo import print_results, run_demo
from devstack.processes import Stack


def cmd_up(args: argparse.Namespace) -> int:
    """``raas stack up``: start the platform and leave it running."""
    stack = Stack(Path(args.dir), nodes=tuple(args.nodes), central_port=args.central_port,
                  dashboard_port=args.dashboard_port)
    try:
        stack.up()
    except BaseException:
        stack.down()
        raise
    print(f"platform running; dashboard {stack.dashboard_url}; stop it with `raas stack down "
          f"--dir {args.dir}` (or `make down`)")
    print(first_user_hint(args.dir, stack.dashboard_url))
    return 0


def first_user_hint(folder: str, dashboard_url: str) -> str:
    """How to create the first account of the stack in ``folder`` and start using it."""
    return (f"create the first user: raas user add NAME --dir {folder} (add --admin to see every "
            f"job), then log in at {dashboard_url} or: raas login --url {dashboard_url} "
            f"--user NAME")


def cmd_down(args: argparse.Namespace) -> int:
    """``raas stack down``: stop what ``up`` started."""
    Stack(Path(args.dir)).down()
    print("platform stopped")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``raas stack demo``: start a fresh platform, run the example jobs, print results, stop."""
    root = Path(args.dir)
    if root.exists():
        Stack(root).down(log=lambda *_: None)
        shutil.rmtree(root)
    stack = Stack(root, nodes=tuple(args.nodes), central_port=args.central_port,
                  dashboard_port=args.dashboard_port)
    t0 = time.monotonic()
    ok = False
    try:
        stack.up()
        results = run_demo(stack)
        ok = print_results(results, stack)
    finally:
        stack.down()
        print(f"everything stopped; demo took {time.monotonic() - t0:.1f} s")
    return 0 if ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``stack up|down|demo`` to the ``raas`` parser."""
    p = sub.add_parser("stack", help="run the whole platform on this machine (demo/development)")
    ssub = p.add_subparsers(dest="stack_command", metavar="ACTION", required=True)
    for name, func, text, default_dir in (
            ("up", cmd_up, "start broker, dispatcher, dashboard and simulated nodes", "var/stack"),
            ("down", cmd_down, "stop what `up` started", "var/stack"),
            ("demo", cmd_demo, "start, run the example jobs, print results, stop", "var/demo")):
        q = ssub.add_parser(name, help=text)
        q.add_argument("--dir", default=default_dir, help=f"state folder (default {default_dir})")
        if name != "down":
            q.add_argument("--nodes", nargs="+", default=["sim-1", "sim-2"], help="node ids")
            q.add_argument("--central-port", type=int, default=1883)
            q.add_argument("--dashboard-port", type=int, default=8080)
        q.set_defaults(func=func)
