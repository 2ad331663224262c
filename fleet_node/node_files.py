"""The files that make an enrolled node: env files, credentials, CA, systemd units, calibration.

:func:`node_files` renders every file of one node, keyed by its path below the root it is
installed into (``/`` on a Pi)::

    etc/raas/node.env                      shared by the three services (node id, central URL, CA)
    etc/raas/broker-local.env              the node-local broker (its bridge's password file)
    etc/raas/motor.env                     the motor node (backend, calibration, local login)
    etc/raas/agent.env                     the agent (central login, local logins, object store)
    etc/raas/secrets/node                  password of node-<id> on the central broker (0600)
    etc/raas/secrets/bridge                password of bridge-<id> on the central broker (0600)
    etc/raas/ca.crt                        the CA that signed the central broker's certificate
    etc/raas/calibration.toml              a placeholder until the robot is calibrated
    etc/systemd/system/raas-*.service      raas-broker-local, raas-motor, raas-agent
    etc/systemd/system/pigpiod.service.d/raas.conf   pigpio backend only

The node-local broker makes its own service passwords (admin, motor, agent) under
``var/lib/raas/broker-local/secrets/`` on its first start; the motor node and the agent read them
there. hardware/pi-setup.md describes the same layout for a node set up by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet_node.motor.gpio_motor import GpioConfig
from gym_raas_mqtt.calibration import DEFAULT_FILE

ETC, DATA, RUN = "/etc/raas", "/var/lib/raas", "/run/raas"
"""The node's folders as installed; :func:`relocate` moves them below another root."""
BROKER_DIR = f"{DATA}/broker-local"
SOCKET = f"{RUN}/sock/local.sock"
UNIT_DIR = "etc/systemd/system"
SERVICES = ("raas-broker-local", "raas-motor", "raas-agent")
"""The node's services, in start order."""
SECRET_MODE, CONFIG_MODE, PUBLIC_MODE = 0o600, 0o640, 0o644
GPIO_RELEASE = {
    "pigpio": ["ExecStopPost=-/usr/bin/pigs w ${RAAS_GPIO_MOTOR_FORWARD} 0 "
               "w ${RAAS_GPIO_MOTOR_BACKWARD} 0"],
    "lgpio": ["ExecStopPost=-/usr/bin/pinctrl set ${RAAS_GPIO_MOTOR_FORWARD} op dl",
              "ExecStopPost=-/usr/bin/pinctrl set ${RAAS_GPIO_MOTOR_BACKWARD} op dl"],
}
"""Per GPIO backend: drive both L298N inputs low after the motor node exits, crash included
(pigpio through pigpiod; lgpio lines are released with the process, so Raspberry Pi OS's
pinctrl)."""


@dataclass(frozen=True)
class NodeSpec:
    """What differs between nodes: identity, credentials, where the central services are.

    Attributes:
        node_id: the node's id (``RAAS_NODE_ID``).
        central_url: the central broker as the node reaches it (``mqtts://name:8883``).
        node_password: password of ``node-<id>`` (the agent's central login).
        bridge_password: password of ``bridge-<id>`` (the local broker's bridge).
        ca_pem: the CA certificate (PEM) that signed the central broker's; None when it is
            publicly trusted (the system's trust store is used).
        store_url: object store for result bundles (``RAAS_STORE_URL``).
        motor_backend: ``RAAS_MOTOR_BACKEND`` (pigpio, lgpio, sim).
        raas_bin: the ``raas`` executable on the node.
        user: the unprivileged account the services run as.
    """

    node_id: str
    central_url: str
    node_password: str
    bridge_password: str
    ca_pem: str | None
    store_url: str
    motor_backend: str = "pigpio"
    raas_bin: str = "/opt/raas/venv/bin/raas"
    user: str = "raas"


def file_mode(name: str) -> int:
    """The mode of node file ``name`` (a path below the root): passwords 0600, env files 0640
    (an operator may add the store's credentials), everything else 0644."""
    if name.startswith("etc/raas/secrets/"):
        return SECRET_MODE
    return CONFIG_MODE if name.endswith(".env") else PUBLIC_MODE


def node_files(spec: NodeSpec) -> dict[str, str]:
    """Every file of the node: path below the root → text (modes: :func:`file_mode`)."""
    ca = {"RAAS_CENTRAL_CA_FILE": f"{ETC}/ca.crt"} if spec.ca_pem else {}
    files = {
        "etc/raas/node.env": _env("shared by every RaaS service of this node", {
            "RAAS_NODE_ID": spec.node_id, "RAAS_DATA_DIR": DATA, "RAAS_BROKER_DIR": BROKER_DIR,
            "RAAS_LOCAL_SOCKET": SOCKET, "RAAS_LOCAL_MQTT_URL": f"unix://{SOCKET}",
            "RAAS_CENTRAL_MQTT_URL": spec.central_url,
            # the motor node's model, and the agent's sim-vs-real replay of each job
            "RAAS_CALIBRATION_FILE": f"{ETC}/calibration.toml", **ca}),
        "etc/raas/broker-local.env": _env("the node-local Mosquitto: unix socket only, bridged "
                                           "to the central broker over TLS", {
            "RAAS_LOCAL_BROKER_PORT": "0",
            "RAAS_BRIDGE_PASSWORD": f"file:{ETC}/secrets/bridge"}),
        "etc/raas/motor.env": _env("the motor node", {
            "RAAS_MOTOR_BACKEND": spec.motor_backend,
            "RAAS_MOTOR_MQTT_PASSWORD_FILE": f"{BROKER_DIR}/secrets/motor",
            **_pins(spec.motor_backend)}),
        "etc/raas/agent.env": _env("the agent (add the object store's credentials here, e.g. "
                                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)", {
            "RAAS_AGENT_CENTRAL_PASSWORD_FILE": f"{ETC}/secrets/node",
            "RAAS_AGENT_LOCAL_PASSWORD_FILE": f"{BROKER_DIR}/secrets/agent",
            "RAAS_AGENT_LOCAL_ADMIN_PASSWORD_FILE": f"{BROKER_DIR}/secrets/admin",
            "RAAS_STORE_URL": spec.store_url}),
        "etc/raas/secrets/node": spec.node_password + "\n",
        "etc/raas/secrets/bridge": spec.bridge_password + "\n",
        "etc/raas/calibration.toml": calibration_placeholder(spec.node_id),
    }
    if spec.ca_pem:
        files["etc/raas/ca.crt"] = spec.ca_pem
    for name, text in _units(spec).items():
        files[f"{UNIT_DIR}/{name}"] = text
    return files


def calibration_placeholder(node_id: str) -> str:
    """A calibration file for a robot not calibrated yet: the original hardware's model under
    the id ``<node>-uncalibrated``, so every result says so (hardware/calibration.md replaces
    it)."""
    body = DEFAULT_FILE.read_text()
    lines = [ln for ln in body.splitlines() if not ln.startswith("id ")]
    return (f"# PLACEHOLDER written by `raas node enroll`: the original hardware's model, not\n"
            f"# this robot's. Calibrate it (hardware/calibration.md) and replace this file.\n"
            f'id = "{node_id}-uncalibrated"\n' + "\n".join(lines) + "\n")


def relocate(text: str, root: str) -> str:
    """``text`` (an env file or unit) with the node's folders moved below ``root`` (a scratch
    tree); unchanged for ``/``."""
    root = root.rstrip("/")
    if not root:
        return text
    for folder in (ETC, DATA, RUN):
        text = text.replace(folder, root + folder)
    return text


def read_env_file(text: str) -> dict[str, str]:
    """The variables of a systemd ``EnvironmentFile`` (``KEY=value`` lines; ``#`` comments and
    blank lines skipped; values used verbatim, as the files written here need no quoting)."""
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    return env


def _env(purpose: str, values: dict[str, str]) -> str:
    lines = [f"# {purpose}; written by `raas node enroll`.", *(f"{k}={v}" for k, v in
                                                              values.items())]
    return "\n".join(lines) + "\n"


def _pins(backend: str) -> dict[str, str]:
    if backend not in GPIO_RELEASE:
        return {}
    pins = GpioConfig()  # GPIO_RELEASE names these pins through the env file
    return {"RAAS_GPIO_MOTOR_FORWARD": str(pins.gpio_forward),
            "RAAS_GPIO_MOTOR_BACKWARD": str(pins.gpio_backward)}


def _unit(comment: str, unit: list[str], service: list[str], spec: NodeSpec) -> str:
    lines = [f"# {comment}", "[Unit]", *unit, "", "[Service]", "Type=simple",
             f"User={spec.user}", f"Group={spec.user}", *service, "NoNewPrivileges=yes",
             "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "",
             "[Install]", "WantedBy=multi-user.target"]
    return "\n".join(lines) + "\n"


def _units(spec: NodeSpec) -> dict[str, str]:
    def env(service: str) -> list[str]:
        return [f"EnvironmentFile={ETC}/node.env", f"EnvironmentFile={ETC}/{service}.env"]

    backend = spec.motor_backend
    pigpio = backend == "pigpio"
    motor_needs = ("pigpiod.service " if pigpio else "") + "raas-broker-local.service"
    lgpio = [  # /dev/gpiochip* and /dev/gpiomem0 (pinctrl) belong to group gpio
        "SupplementaryGroups=gpio",
        "# importing lgpio makes its notification FIFO in LG_WD: a writable runtime directory",
        "RuntimeDirectory=raas-motor", "Environment=LG_WD=/run/raas-motor"]
    units = {
        "raas-broker-local.service": _unit(
            "Node-local Mosquitto: the motor node, the agent and the job container meet here.",
            ["Description=RaaS node-local MQTT broker", "Wants=network-online.target",
             "After=network-online.target"],
            [*env("broker-local"),
             "# /run/raas/sock holds local.sock; kept across restarts so clients reconnect",
             "RuntimeDirectory=raas raas/sock", "RuntimeDirectoryMode=0755",
             "RuntimeDirectoryPreserve=yes", "StateDirectory=raas",
             f"ExecStart={spec.raas_bin} broker local", "Restart=always", "RestartSec=2",
             f"ReadWritePaths={DATA} {RUN}"], spec),
        "raas-motor.service": _unit(
            f"The motor node ({backend}): owns the motor and the clock (control loop, watchdog, "
            "reset).",
            ["Description=RaaS motor node" + ("" if pigpio else f" ({backend})"),
             f"Requires={motor_needs}",
             f"After={motor_needs}"],
            [*(lgpio if backend == "lgpio" else []), *env("motor"),
             f"ExecStart={spec.raas_bin} node motor",
             "# SIGTERM: the node zeroes the torque and publishes its state before exiting.",
             "KillSignal=SIGTERM", "TimeoutStopSec=10", *GPIO_RELEASE.get(backend, []),
             "Restart=always", "RestartSec=2",
             "# the control loop should win against the agent's uploads and Docker",
             "Nice=-10", f"ReadWritePaths={DATA}"], spec),
        "raas-agent.service": _unit(
            "The agent: presence on the central broker, job assignments, Docker runs, uploads.",
            ["Description=RaaS fleet agent", "Requires=raas-broker-local.service docker.service",
             "Wants=network-online.target raas-motor.service",
             ("After=network-online.target docker.service raas-broker-local.service "
              "raas-motor.service")],
            ["# membership of docker is root-equivalent; the agent is the one service needing it",
             "SupplementaryGroups=docker", *env("agent"), f"ExecStart={spec.raas_bin} node agent",
             "Restart=always", "RestartSec=5", "TimeoutStopSec=30", f"ReadWritePaths={DATA}"],
            spec),
    }
    if pigpio:
        units["pigpiod.service.d/raas.conf"] = (
            "# pigpiod on localhost only (it has no authentication), 5 µs sampling, PCM clock\n"
            "[Service]\nExecStart=\nExecStart=/usr/bin/pigpiod -l -s 5 -t 1\n")
    return units
