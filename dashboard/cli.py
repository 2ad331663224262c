"""``raas dashboard`` (serve the web app with waitress) and ``raas user add|token|passwd``.

Handlers import the dashboard (Flask, peewee, waitress) when they run, so ``raas --help`` and the
researcher's commands stay light.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from gym_raas_mqtt.config import load


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


def _db():  # type: ignore[no-untyped-def]
    """Open the job database named by the settings; returns the dashboard's settings."""
    from dispatcher.models import init_db

    cfg = _config()
    init_db(cfg.database_url)
    return cfg


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

    _db()
    owner = accounts.create_user(args.name, _password(args), admin=args.admin,
                                 max_running=args.max_running)
    print(f"created user {owner.name}{' (admin)' if owner.is_admin else ''}")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    """``raas user passwd``: set a user's password."""
    from dashboard import accounts

    _db()
    pw = _password(args)
    if pw is None:
        raise SystemExit("raas: a password is required")
    accounts.set_password(args.name, pw)
    print(f"password of {args.name} changed")
    return 0


def cmd_user_token(args: argparse.Namespace) -> int:
    """``raas user token``: print a new API token for a user."""
    from dashboard import accounts
    from dispatcher.models import Owner

    cfg = _db()
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
