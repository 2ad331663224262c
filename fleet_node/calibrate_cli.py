"""``raas node calibrate fit|counts|direction``: per-robot calibration commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register_calibrate(node_sub: Any) -> None:
    """Add ``calibrate`` to the ``raas node`` subparsers ``node_sub``."""
    cal = node_sub.add_parser(
        "calibrate", help="calibrate this robot: fit the model, count encoder steps",
        description="Per-robot calibration (hardware/calibration.md).")
    cal_sub = cal.add_subparsers(dest="calibrate_command", metavar="STEP")
    cal.set_defaults(func=lambda args: cal.print_help() or 2)

    p = cal_sub.add_parser(
        "fit", help="refit gravity_coeff, action_gain, damping from telemetry CSV files",
        description="Least squares on (θ̇[k+1] − θ̇[k])/dt = a·sin θ[k] + b·u[k] − c·θ̇[k] over "
                    "clean transitions of motor-node telemetry; writes a calibration file.")
    p.add_argument("telemetry", nargs="+", type=Path, help="telemetry CSV file(s)")
    p.add_argument("--id", required=True, dest="new_id", help="id of the new calibration")
    p.add_argument("-o", "--output", required=True, type=Path, help="calibration TOML to write")
    p.add_argument("--base", type=Path,
                   help="calibration in force when logging (limits, counts/rev; default bundled)")
    p.add_argument("--dt", type=float, help="control period [s] (default: the base's dt)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(func=cmd_fit)

    p = cal_sub.add_parser(
        "counts", help="measure encoder counts per revolution by turning the rod by hand",
        description="Needs the GPIO (pigpiod, or RAAS_MOTOR_BACKEND=lgpio on a Pi 5) and the "
                    "motor node stopped. The motor stays off.")
    p.add_argument("--turns", type=int, default=5, help="full turns you will make (default 5)")
    p.add_argument("--base", type=Path, help="calibration file (default bundled)")
    p.set_defaults(func=cmd_counts)

    p = cal_sub.add_parser(
        "direction", help="pulse u=+1 for 0.15 s and check that θ increases",
        description="Needs the GPIO (pigpiod, or RAAS_MOTOR_BACKEND=lgpio on a Pi 5) and the "
                    "motor node stopped; the rod must hang free.")
    p.add_argument("--base", type=Path, help="calibration file (default bundled)")
    p.set_defaults(func=cmd_direction)


def cmd_fit(args: argparse.Namespace) -> int:
    """Refit a, b, c from telemetry files and write a calibration file."""
    from gym_raas_mqtt.calibration import load_calibration
    from fleet_node.calibrate import calibration_toml, fit_files, report

    if args.output.exists() and not args.force:
        print(f"raas: {args.output} exists (use --force to overwrite)", file=sys.stderr)
        return 1
    base = load_calibration(args.base)
    result = fit_files(args.telemetry, base, args.dt)
    text = calibration_toml(base, result, args.new_id, [str(p) for p in args.telemetry])
    args.output.write_text(text)
    print(report(base, result))
    print(f"wrote {args.output} (id {args.new_id})")
    return 0


def _motor(base: Path | None) -> Any:
    """The GPIO motor of RAAS_MOTOR_BACKEND (pigpio when it names the simulation)."""
    from gym_raas_mqtt.calibration import load_calibration
    from gym_raas_mqtt.config import load
    from fleet_node.motor.config import MotorConfig
    from fleet_node.motor.node import GPIO_MOTORS

    driver = GPIO_MOTORS.get(load(MotorConfig).backend, GPIO_MOTORS["pigpio"])
    return driver(load_calibration(base))


def cmd_counts(args: argparse.Namespace) -> int:
    """Measure encoder counts per revolution (turns made by hand)."""
    from fleet_node.calibrate import measure_counts

    motor = _motor(args.base)
    try:
        r = measure_counts(motor, args.turns)
    finally:
        motor.close()
    print(f"{r['counts']:+d} counts over {args.turns} turn(s): {r['exact']:.2f} counts/rev "
          f"(decoding errors: {r['errors']})")
    print(f"set counts_per_rev = {r['counts_per_rev']} in this robot's calibration file "
          "(current: {})".format(motor.params.counts_per_rev))
    return 0 if r["errors"] == 0 else 1


def cmd_direction(args: argparse.Namespace) -> int:
    """Pulse the motor and check the encoder's sign of θ."""
    from fleet_node.calibrate import check_direction

    motor = _motor(args.base)
    try:
        d = check_direction(motor)
    finally:
        motor.close()
    if abs(d) < 2 * 3.14159 / motor.params.counts_per_rev:
        print(f"θ moved {d:+.3f} rad: too little to tell (rod blocked? motor supply off?)")
        return 1
    if d > 0:
        print(f"θ moved {d:+.3f} rad under u > 0: encoder direction is right")
        return 0
    print(f"θ moved {d:+.3f} rad under u > 0: set RAAS_ENCODER_DIRECTION="
          f"{-motor.config.encoder_direction} (or swap the motor leads)")
    return 1
