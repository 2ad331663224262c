"""``raas node ...``: the fleet node's commands: motor node, agent, calibration, send."""

from __future__ import annotations

import argparse
import logging
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet_node.calibrate_cli import register_calibrate
from fleet_node.motor.config import BACKENDS
from fleet_node.enroll_cli import register_enrollment
from gym_raas_mqtt import protocol
from gym_raas_mqtt.config import load
from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.protocol import NodeCommandKind
from raas_platform.settings import CENTRAL_CA_FILE, CENTRAL_MQTT_URL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendConfig:
    """What ``raas node send`` reads from the environment: the central broker's address."""

    central_mqtt_url: str = CENTRAL_MQTT_URL.field()
    central_ca_file: Path | None = CENTRAL_CA_FILE.field()


def register(sub: Any) -> None:
    """Add the ``node`` command group to the ``raas`` parser's subparsers ``sub``."""
    node = sub.add_parser("node", help="run a fleet node's services (motor node, agent)")
    node_sub = node.add_subparsers(dest="node_command", metavar="SERVICE")
    node.set_defaults(func=lambda args: node.print_help() or 2)
    register_motor(node_sub)
    register_agent(node_sub)
    register_calibrate(node_sub)
    register_send(node_sub)
    register_enrollment(node_sub)


def register_send(node_sub: Any) -> None:
    """``raas node send NODE COMMAND``: an operator's command to a node (NodeCommand)."""
    p = node_sub.add_parser(
        "send", help="send a node a command: drain, resume, rebirth, clear_maintenance, cancel_job",
        description="Publish a NodeCommand on the node's cmd topic of the central broker (needs a "
                    "login allowed to: the dispatcher's or the broker admin's).")
    p.add_argument("node_id")
    p.add_argument("command", choices=[c.value for c in NodeCommandKind])
    p.add_argument("--job", help="job id (cancel_job)")
    p.add_argument("--reason", default="operator command")
    p.add_argument("--url", help="central broker mqtt://host:port (RAAS_CENTRAL_MQTT_URL)")
    p.add_argument("--username", default="admin")
    p.add_argument("--password-file", help="file with the password (default: "
                                           "<broker-dir>/secrets/<username>)")
    p.add_argument("--broker-dir", default="var/broker/central",
                   help="central broker runtime dir holding the secrets (default %(default)s)")
    p.set_defaults(func=run_send)


def run_send(args: argparse.Namespace) -> int:
    """Publish one NodeCommand on the node's cmd topic and wait for the broker's PUBACK."""
    from gym_raas_mqtt.mqtt import BrokerAddress, Link, message_expiry  # paho: keeps --help light

    cfg = load(SendConfig)
    url = args.url or cfg.central_mqtt_url
    pw_file = Path(args.password_file or Path(args.broker_dir) / "secrets" / args.username)
    address = BrokerAddress.parse(url, username=args.username, password_file=pw_file,
                                  ca_file=cfg.central_ca_file)
    msg = protocol.NodeCommand(NodeCommandKind(args.command), time.time(), job_id=args.job,
                               reason=args.reason)
    link = Link(address, f"raas-send-{uuid.uuid4().hex[:12]}", name="central")
    try:
        link.start(5.0)
        info = link.send(protocol.topic(protocol.TopicKind.NODE_CMD, node=args.node_id), msg,
                         properties=message_expiry(60))
        info.wait_for_publish(5.0)
        if info.rc or not info.is_published():
            raise RaasError(f"the broker did not accept the command (rc {info.rc})")
    finally:
        link.close()
    print(f"sent {args.command} to {args.node_id}")
    return 0


def register_motor(node_sub: Any) -> None:
    """``raas node motor``: the real-time motor node (settings from RAAS_* variables)."""
    p = node_sub.add_parser(
        "motor", help="run the motor node: control loop, safety, reset, telemetry",
        description="Serve the env over the node-local broker. Settings come from RAAS_* "
                    "environment variables (raas config); the options below override them.")
    p.add_argument("--backend", choices=BACKENDS, help="motor driver (RAAS_MOTOR_BACKEND)")
    p.add_argument("--lockstep", action="store_true", default=None,
                   help="simulation only: each action advances one period at once, no clock")
    p.add_argument("--rate-hz", type=float, help="control rate (RAAS_MOTOR_RATE_HZ)")
    p.add_argument("--node-id", help="node id (RAAS_NODE_ID)")
    p.add_argument("--url", help="local broker URL (RAAS_LOCAL_MQTT_URL)")
    p.set_defaults(func=run_motor)


def run_motor(args: argparse.Namespace) -> int:
    """Run the motor node until SIGTERM/SIGINT."""
    from fleet_node.motor.config import MotorConfig
    from fleet_node.motor.node import MotorNode

    overrides = {k: v for k, v in (("backend", args.backend), ("lockstep", args.lockstep),
                                   ("rate_hz", args.rate_hz), ("node_id", args.node_id),
                                   ("local_mqtt_url", args.url)) if v is not None}
    cfg = load(MotorConfig, **overrides)
    node = MotorNode(cfg)
    log.info("motor node %s: %s backend, %g Hz%s, broker %s", cfg.node_id, cfg.backend,
             cfg.rate_hz, " lockstep" if cfg.lockstep else "", node.address.url())
    return serve_until_signal(node)


def register_agent(node_sub: Any) -> None:
    """``raas node agent``: the fleet agent (presence, job assignments, results)."""
    p = node_sub.add_parser(
        "agent", help="run the fleet agent: presence, job assignments, Docker runs, results",
        description="Take job assignments from the central broker and run them on this node. "
                    "Settings come from RAAS_* environment variables (raas config).")
    p.add_argument("--node-id", help="node id (RAAS_NODE_ID)")
    p.set_defaults(func=run_agent)


def run_agent(args: argparse.Namespace) -> int:
    """Run the fleet agent until SIGTERM/SIGINT."""
    from fleet_node.agent import Agent
    from fleet_node.config import AgentConfig
    from fleet_node.runner import RunnerConfig

    overrides = {"node_id": args.node_id} if args.node_id else {}
    agent = Agent(load(AgentConfig, **overrides), runner_config=load(RunnerConfig))
    log.info("agent %s: central %s, local %s", agent.node_id, agent.central_address.url(),
             agent.local_address.url())
    return serve_until_signal(agent)


def serve_until_signal(service: Any) -> int:
    """Run ``service`` (``run()`` blocks until ``request_stop()``), stopping it cleanly on
    SIGTERM or SIGINT; returns the exit status 0."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: service.request_stop())
    service.run()
    return 0
