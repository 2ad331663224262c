"""``raas node ...``: the fleet node's commands (motor node here; the agent adds its own)."""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    """Add the ``node`` command group to the ``raas`` parser's subparsers ``sub``."""
    node = sub.add_parser("node", help="run a fleet node's services (motor node, agent)")
    node_sub = node.add_subparsers(dest="node_command", metavar="SERVICE")
    node.set_defaults(func=lambda args: node.print_help() or 2)
    register_motor(node_sub)
    register_agent(node_sub)
    from fleet_node.calibrate_cli import register_calibrate  # owned by the calibration helper

    register_calibrate(node_sub)


def register_motor(node_sub: Any) -> None:
    """``raas node motor``: the real-time motor node (settings from RAAS_* variables)."""
    p = node_sub.add_parser(
        "motor", help="run the motor node: control loop, safety, reset, telemetry",
        description="Serve the env over the node-local broker. Settings come from RAAS_* "
                    "environment variables (raas config); the options below override them.")
    p.add_argument("--backend", choices=("sim", "pigpio"), help="motor driver (RAAS_MOTOR_BACKEND)")
    p.add_argument("--lockstep", action="store_true", default=None,
                   help="simulation only: each action advances one period at once, no clock")
    p.add_argument("--rate-hz", type=float, help="control rate (RAAS_MOTOR_RATE_HZ)")
    p.add_argument("--node-id", help="node id (RAAS_NODE_ID)")
    p.add_argument("--url", help="local broker URL (RAAS_LOCAL_MQTT_URL)")
    p.set_defaults(func=run_motor)


def run_motor(args: argparse.Namespace) -> int:
    from gym_raas_mqtt.config import load
    from fleet_node.motor.config import MotorConfig
    from fleet_node.motor.node import MotorNode

    overrides = {k: v for k, v in (("backend", args.backend), ("lockstep", args.lockstep),
                                   ("rate_hz", args.rate_hz), ("node_id", args.node_id),
                                   ("local_mqtt_url", args.url)) if v is not None}
    cfg = load(MotorConfig, **overrides)
    node = MotorNode(cfg)

    def stop(signum: int, frame: Any) -> None:
        node.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("motor node %s: %s backend, %g Hz%s, broker %s", cfg.node_id, cfg.backend,
             cfg.rate_hz, " lockstep" if cfg.lockstep else "", node.address.url())
    node.run()
    return 0


def register_agent(node_sub: Any) -> None:
    """``raas node agent``: the fleet agent (presence, job assignments, results)."""
    p = node_sub.add_parser(
        "agent", help="run the fleet agent: presence, job assignments, Docker runs, results",
        description="Take job assignments from the central broker and run them on this node. "
                    "Settings come from RAAS_* environment variables (raas config).")
    p.add_argument("--node-id", help="node id (RAAS_NODE_ID)")
    p.set_defaults(func=run_agent)


def run_agent(args: argparse.Namespace) -> int:
    from fleet_node.agent import Agent
    from fleet_node.config import AgentConfig
    from gym_raas_mqtt.config import load

    overrides = {"node_id": args.node_id} if args.node_id else {}
    agent = Agent(load(AgentConfig, **overrides))

    def stop(signum: int, frame: Any) -> None:
        agent.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("agent %s: central %s, local %s", agent.node_id, agent.central_address.url(),
             agent.local_address.url())
    agent.run()
    return 0
