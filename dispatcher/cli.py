"""``raas dispatcher``: run the job dispatcher (settings from ``RAAS_*``, see ``raas config``)."""

from __future__ import annotations

import argparse

from dispatcher.autoscale.config import AutoscaleConfig
from dispatcher.config import DispatcherConfig
from dispatcher.limits import QueueLimits
from dispatcher.webhooks import WebhookConfig
from gym_raas_mqtt.config import load


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``dispatcher`` subcommand to the ``raas`` parser."""
    p = sub.add_parser("dispatcher", help="run the job dispatcher (central broker + job database)",
                       description="Assign queued jobs to idle nodes over MQTT and keep every "
                                   "job's state. Settings: RAAS_DATABASE_URL, "
                                   "RAAS_CENTRAL_MQTT_URL, ... (raas config).")
    p.add_argument("--database-url", help="override RAAS_DATABASE_URL")
    p.add_argument("--mqtt-url", help="override RAAS_CENTRAL_MQTT_URL")
    p.add_argument("--init-db", action="store_true",
                   help="create the tables (and indexes) and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``raas dispatcher``: build the settings and the queue's policy once, then serve."""
    # peewee and paho load here, not when `raas --help` builds the parser
    from dispatcher.models import init_db
    from dispatcher.service import Dispatcher

    overrides = {}
    if args.database_url:
        overrides["database_url"] = args.database_url
    if args.mqtt_url:
        overrides["mqtt_url"] = args.mqtt_url
    config = load(DispatcherConfig, **overrides)
    if args.init_db:
        init_db(config.database_url)
        return 0
    Dispatcher(config, load(QueueLimits), webhooks=load(WebhookConfig),
               autoscale=load(AutoscaleConfig)).run_forever()
    return 0
