"""Both GPIO backends on their emulated chips, made alike for the contract suites.

``make_rig(backend, params, **rig)`` builds the emulated pendulum behind that backend's library
(``FakePi`` for pigpio, ``FakeLgpio`` for lgpio); ``make_motor(backend, rig, params, **config)``
the backend's motor on it. ``start_us`` (either) sets the encoder clock's start in µs, to put the
decoder's uint32 µs ticks near their wrap-around.
"""

from __future__ import annotations

from typing import Any

from fake_lgpio import FakeLgpio
from fake_pigpio import FakePi
from fleet_node.motor.gpio_motor import GpioMotor
from fleet_node.motor.lgpio_motor import LgpioConfig, LgpioMotor
from fleet_node.motor.pigpio_motor import PigpioConfig, PigpioMotor
from gym_raas_mqtt.physics import DEFAULT_PARAMS, PendulumParams

BACKENDS = ("pigpio", "lgpio")


def make_rig(backend: str, params: PendulumParams = DEFAULT_PARAMS, *, start_us: int = 0,
             **rig: Any) -> FakePi | FakeLgpio:
    """The emulated pendulum behind ``backend``'s GPIO library."""
    if backend == "pigpio":
        return FakePi(params, start_tick=start_us, **rig)
    return FakeLgpio(params, start_ns=(start_us or 10**9) * 1000, **rig)


def make_motor(backend: str, rig: FakePi | FakeLgpio, params: PendulumParams = DEFAULT_PARAMS,
               **config: Any) -> GpioMotor:
    """``backend``'s motor on ``rig`` with config fields ``config`` (defaults otherwise)."""
    if backend == "pigpio":
        return PigpioMotor(params, pi=rig, config=PigpioConfig(**config))
    return LgpioMotor(params, lg=rig, config=LgpioConfig(**config), clock_ns=rig.monotonic_ns)


def make(backend: str, params: PendulumParams = DEFAULT_PARAMS, config: dict | None = None,
         **rig: Any) -> tuple[FakePi | FakeLgpio, GpioMotor]:
    """(rig, motor) for ``backend``: the same model in the rig and in the motor's calibration."""
    r = make_rig(backend, params, **rig)
    return r, make_motor(backend, r, params, **(config or {}))


def land_edges_in_flight(rig: FakePi | FakeLgpio) -> None:
    """Hold the shaft still until the edges in flight have reached the motor (lgpio delivers
    alerts ≥ 0.5 ms after their timestamp; pigpio's fake at once, so nothing is done there)."""
    if rig.delivery_delay_us:
        rig.rotate_by(0.0, rig.delivery_delay_us / 1e6 + rig.physics_dt)
