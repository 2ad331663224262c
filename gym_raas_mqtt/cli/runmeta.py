"""The options of ``raas submit`` and how they travel to the API: source, limits and the run's
metadata (name, tags, notes, environment, ``run.py``'s arguments after ``--``); stdlib only.

``raas submit DIR --name swingup-v3 --tag lqr --tag x --note "..." --env K=V -- 600`` runs
``python run.py 600`` with ``K=V`` in its environment. argparse's ``REMAINDER`` takes everything
from the path on; :func:`finish_parsing` reads the options that follow the path and keeps what
comes after the first ``--`` for ``run.py``, untouched (even words that look like options). The
dashboard checks every field (its 400 answer names the one at fault); here only the shape of
``--env`` is checked.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from gym_raas_mqtt.cli.api import ClientError


def env_pair(text: str) -> tuple[str, str]:
    """``NAME=value`` of ``--env`` as a pair.

    Raises:
        argparse.ArgumentTypeError: no ``=``.
    """
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=value")
    return name, value


def submit_options() -> argparse.ArgumentParser:
    """The options of ``raas submit`` (a parent parser, also used by :func:`finish_parsing`)."""
    p = argparse.ArgumentParser(prog="raas submit", add_help=False)
    p.add_argument("--ref", help="git branch, tag or commit (default branch if absent)")
    p.add_argument("--time-limit", type=float, metavar="S", help="wall-clock limit [s]")
    p.add_argument("--wait", action="store_true",
                   help="follow the job to its end and print the summary")
    p.add_argument("--name", help="a short name for the run, e.g. swingup-v3")
    p.add_argument("--tag", action="append", dest="tags", metavar="TAG",
                   help="a tag (repeat for more, at most 8)")
    p.add_argument("--note", dest="notes", metavar="TEXT", help="notes about the run")
    p.add_argument("--env", action="append", dest="env", type=env_pair, metavar="NAME=VALUE",
                   help="an environment variable for run.py (repeat for more; not RAAS_*, "
                   "PATH, PYTHONPATH, LD_*...)")
    return p


def add_submit_arguments(p: argparse.ArgumentParser) -> None:
    """Give the ``submit`` parser ``p`` its words: the path or URL, options, ``-- ARGS``."""
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="PATH_OR_URL [-- ARGS...]",
                   help="a folder with run.py (packed and uploaded), a .tar.gz/.zip, or a git "
                   "URL; after --, the arguments of run.py")


def finish_parsing(args: argparse.Namespace) -> argparse.Namespace:
    """Set ``args.source`` and ``args.run_args`` from ``args.words``, parsing the options that
    follow the path into ``args`` (options before the path argparse has parsed already).

    Raises:
        ClientError: no path or URL.
        SystemExit: an unknown option or stray word between the path and ``--`` (argparse's
            usage message).
    """
    words = list(args.words)
    if not words or words[0].startswith("-"):
        raise ClientError("give a folder with run.py, a .tar.gz/.zip archive or a git URL "
                          "(then options, then -- and the arguments of run.py)")
    args.source, rest = words[0], words[1:]
    cut = rest.index("--") if "--" in rest else len(rest)
    head, args.run_args = rest[:cut], rest[cut + 1:]
    submit_options().parse_args(head, namespace=args)
    return args


def metadata_json(args: argparse.Namespace) -> dict[str, Any]:
    """The run's metadata as fields of a JSON submission (only those given)."""
    fields = {"name": args.name, "tags": args.tags, "notes": args.notes,
              "args": args.run_args or None, "env": dict(args.env) if args.env else None}
    return {k: v for k, v in fields.items() if v is not None}


def metadata_form(args: argparse.Namespace) -> dict[str, str]:
    """The run's metadata as text fields of a multipart upload (the dashboard's form fields:
    comma-separated tags, ``run.py``'s arguments as shell words, ``NAME=value`` lines)."""
    fields = {"name": args.name, "tags": ",".join(args.tags or ()) or None, "notes": args.notes,
              "args": shlex.join(args.run_args) if args.run_args else None,
              "env": "\n".join(f"{k}={v}" for k, v in args.env) if args.env else None}
    return {k: v for k, v in fields.items() if v is not None}
