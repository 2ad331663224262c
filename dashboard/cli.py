"""``raas dashboard`` (serve the web app with waitress) and ``raas user add|token|passwd``.

Handlers import the dashboard (Flask, peewee, waitress) when they run, so ``raas --help`` and the
researcher's commands stay light. ``raas user`` works on the database of the settings
(``RAAS_DATABASE_URL``) or, with ``--dir``, on that of a ``raas stack up`` folder; a database that
cannot be used is one line saying which and what to do, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import sys
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

from gym_raas_mqtt.config import load
from gym_raas_mqtt.errors import RaasError


def _config():  # type: ignore[no-untyped-def]
    """The dashboard's settings from the environment."""
    from dashboard.config import DashboardConfig

    return load(DashboardConfig)


def cmd_dashboard(args: argparse.Namespace) -> int:
    """``raas dashboard``: serve the web app until interrupted."""
    from dashboard.app import create_app
    from dashboard.server import make_server

    cfg = _config()
    host = args.host or cfg.host
    port = args.port if args.port is not None else cfg.port
    app = create_app()
    server = make_server(app, host, port, cfg.threads, cfg.trusted_proxy)
    print(f"raas dashboard on http://{host}:{server.effective_port} (waitress, {cfg.threads} "
          f"threads; live updates from {cfg.broker_url or 'nowhere: no broker configured'})",
          file=sys.stderr, flush=True)
    try:
        server.run()
    finally:
        sub = app.extensions.get("raas_subscriber")
        if sub is not None:
            sub.stop()
    return 0


def _where(url: str) -> str:
    """The database ``url`` without its password (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


@contextlib.contextmanager
def _db(args: argparse.Namespace) -> Iterator:  # type: ignore[type-arg]
    """Open the job database (``--dir``'s stack, else the settings') for the ``with`` body;
    yields the dashboard's settings.

    Raises:
        RaasError: no stack in ``--dir``, or the database failed (one actionable line).
    """
    import peewee

    from dispatcher.models import database, init_db

    cfg = _config()
    url = cfg.database_url
    if args.dir:
        from devstack.processes import Stack  # the stack's layout has one owner

        stack = Stack(Path(args.dir))
        if not (stack.root / "stack.json").is_file():
            raise RaasError(f"{args.dir} is not a stack folder (no stack.json): give the --dir "
                            "of `raas stack up`")
        url = stack.db_url
    try:
        init_db(url)
        with database.connection_context():
            yield cfg
    except peewee.PeeweeException as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RaasError(f"cannot use the job database {_where(url)}: {detail}. Run this where "
                        "the platform runs (its RAAS_DATABASE_URL), or give --dir of a "
                        "`raas stack up` folder.") from None


def _password(args: argparse.Namespace) -> str | None:
    """The password from ``--password-file``, one line of stdin, or a prompt (None: none)."""
    if args.password_file:
        return Path(args.password_file).read_text().strip()
    if args.no_password:
        return None
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    pw = getpass.getpass("password: ")
    if pw != getpass.getpass("again: "):
        raise SystemExit("raas: passwords differ")
    return pw


def cmd_user_add(args: argparse.Namespace) -> int:
    """``raas user add``: create a user."""
    from dashboard import accounts

    password = _password(args)
    with _db(args):
        owner = accounts.create_user(args.name, password, admin=args.admin,
                                     max_running=args.max_running)
    print(f"created user {owner.name}{' (admin)' if owner.is_admin else ''}")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    """``raas user passwd``: set a user's password."""
    from dashboard import accounts

    pw = _password(args)
    if pw is None:
        raise SystemExit("raas: a password is required")
    with _db(args):
        accounts.set_password(args.name, pw)
    print(f"password of {args.name} changed")
    return 0


def cmd_user_token(args: argparse.Namespace) -> int:
    """``raas user token``: print a new API token for a user."""
    from dashboard import accounts
    from dispatcher.models import Owner

    with _db(args) as cfg:
        if Owner.get_or_none(Owner.name == args.name) is None:
            raise accounts.AccountError(f"no user {args.name!r}")
        print(accounts.issue_token(args.name, args.token_name, lifetime_s=cfg.token_lifetime_s))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dashboard`` and ``user`` to the ``raas`` parser."""
    p = sub.add_parser("dashboard", help="serve the web dashboard and JSON API (waitress)")
    p.add_argument("--host", help="bind address (default RAAS_DASHBOARD_HOST)")
    p.add_argument("--port", type=int, help="TCP port (default RAAS_DASHBOARD_PORT)")
    p.set_defaults(func=cmd_dashboard)

    user = sub.add_parser("user", help="manage dashboard accounts (admin)")
    usub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    for name, fn, text in (("add", cmd_user_add, "create a user"),
                           ("passwd", cmd_user_passwd, "set a user's password")):
        p = usub.add_parser(name, help=text)
        p.add_argument("name", help="user name (letters, digits, '._-'; a topic level)")
        p.add_argument("--password-file", help="read the password from this file (else a prompt "
                       "or one line of stdin)")
        if name == "add":
            p.add_argument("--no-password", action="store_true",
                           help="token-only account (no web login)")
            p.add_argument("--admin", action="store_true", help="sees and cancels every job")
            p.add_argument("--max-running", type=int, default=1,
                           help="jobs of this user that may run at once (fair queue)")
        else:
            p.set_defaults(no_password=False)
        p.set_defaults(func=fn)
    p = usub.add_parser("token", help="print a new API token for a user (for RAAS_API_TOKEN)")
    p.add_argument("name")
    p.add_argument("--token-name", default="cli", help="label shown on the account page")
    p.set_defaults(func=cmd_user_token)
    for action in usub.choices.values():
        action.add_argument("--dir", help="the folder of a `raas stack up` (default: the database "
                            "of RAAS_DATABASE_URL)")
