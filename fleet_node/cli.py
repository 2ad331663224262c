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
    register_send(node_sub)


def register_send(node_sub: Any) -> None:
    """``raas node send NODE COMMAND``: an operator's command to a node (NodeCommand)."""
    from gym_raas_mqtt.protocol import NodeCommandKind

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
    import os
    import threading
    import time
    from pathlib import Path

    from gym_raas_mqtt import mqtt, protocol
    from gym_raas_mqtt.errors import RaasError

    url = args.url or os.environ.get("RAAS_CENTRAL_MQTT_URL", "mqtt://127.0.0.1:1883")
    pw_file = Path(args.password_file or Path(args.broker_dir) / "secrets" / args.username)
    address = mqtt.BrokerAddress.parse(url, username=args.username, password_file=pw_file)
    msg = protocol.NodeCommand(protocol.NodeCommandKind(args.command), time.time(),
                               job_id=args.job, reason=args.reason)
    spec = protocol.TOPICS[protocol.TopicKind.NODE_CMD]
    client = mqtt.make_client(address)
    connack: list = []
    connected = threading.Event()

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        connack.append(reason)
        connected.set()

    client.on_connect = on_connect
    mqtt.connect(client)
    client.loop_start()
    try:
        if not connected.wait(5.0) or connack[0].is_failure:
            raise RaasError(f"central broker {address.url()} refused {args.username}: "
                            f"{connack[0] if connack else 'no answer'}")
        info = client.publish(protocol.topic(protocol.TopicKind.NODE_CMD, node=args.node_id),
                              msg.to_bytes(), qos=spec.qos, retain=spec.retain,
                              properties=mqtt.message_expiry(60))
        info.wait_for_publish(5.0)
        if info.rc or not info.is_published():
            raise RaasError(f"the broker did not accept the command (rc {info.rc})")
    finally:
        mqtt.shutdown(client)
    print(f"sent {args.command} to {args.node_id}")
    return 0


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
