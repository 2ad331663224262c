"""Settings more than one platform service reads, each declared once (``raas config`` lists them).

Services make fields of them with :meth:`~gym_raas_mqtt.config.Setting.field`; a setting one
service alone reads is declared in that service's own config module. The node id, which the env in
a job container reads too, is :data:`gym_raas_mqtt.config.NODE_ID`.
"""

from __future__ import annotations

from pathlib import Path

from gym_raas_mqtt.config import Setting

CENTRAL_MQTT_URL = Setting(
    "RAAS_CENTRAL_MQTT_URL", "mqtt://127.0.0.1:1883",
    "central broker: mqtt://127.0.0.1:port on the central host, mqtts://name:8883 from anywhere "
    "else (credentials are separate settings); the dashboard takes an empty value as 'no live "
    "updates'")
CENTRAL_CA_FILE = Setting(
    "RAAS_CENTRAL_CA_FILE", None,
    "CA certificate (PEM) that signed the central broker's TLS certificate: an mqtts:// central "
    "URL is verified against it (unset: the system's trust store); the dashboard shows it to "
    "users for mosquitto_sub --cafile")
DATABASE_URL = Setting(
    "RAAS_DATABASE_URL", "sqlite:///var/raas.db",
    "job database of the dispatcher and the dashboard: sqlite:///path (WAL) or "
    "postgresql://user@host/db")
STORE_URL = Setting(
    "RAAS_STORE_URL", "var/store",
    "object store of uploaded archives and result bundles (path, file:// or s3://bucket/prefix)")
DATA_DIR = Setting(
    "RAAS_DATA_DIR", Path("/var/lib/raas"),
    "a node's data: session counter, job work dirs, motor telemetry (<dir>/telemetry/<job>.csv)")
CALIBRATION_FILE = Setting(
    "RAAS_CALIBRATION_FILE", None,
    "this robot's calibration TOML (bundled default if unset): the motor node's model, and what "
    "the agent replays a job's actions in for its sim-vs-real report")
LOCAL_MQTT_URL = Setting(
    "RAAS_LOCAL_MQTT_URL", "unix:///run/raas/sock/local.sock",
    "the node-local broker, as the motor node and the agent reach it (unix:///path or "
    "mqtt://127.0.0.1:port)")
LOCAL_SOCKET = Setting(
    "RAAS_LOCAL_SOCKET", None,
    "the node-local broker's unix socket, mounted into job containers (default: "
    "<broker dir>/sock/local.sock for the broker, the path of RAAS_LOCAL_MQTT_URL for the agent)")
CODE_MAX_BYTES = Setting(
    "RAAS_CLONE_MAX_BYTES", 50 * 1024 * 1024,
    "largest job code: the unpacked size of an uploaded archive (checked by the API) and of a "
    "git checkout or extracted archive (checked again by the node)", unit="bytes")
CODE_MAX_FILES = Setting(
    "RAAS_CLONE_MAX_FILES", 10_000,
    "most entries (files and folders) in a job's code, archive or git checkout",
    unit="entries")
GIT_SCHEMES = Setting(
    "RAAS_CLONE_SCHEMES", ("https", "ssh"),
    "git URL schemes the API accepts and nodes fetch (comma-separated, from https, ssh, file; "
    "file lets users name any repository on the host: dev stacks only)")
