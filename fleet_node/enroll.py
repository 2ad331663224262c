"""Enrolling a node on the central host: its central logins and its bundle (``raas node enroll``).

:func:`enroll` creates (or re-keys) the node's two logins on the running central broker —
``node-<id>`` for its agent and ``bridge-<id>`` for its local broker's bridge
(:mod:`broker_config.provision`) — and :func:`write_bundle` packs everything the node needs
(:func:`fleet_node.node_files.node_files`) into one gzipped tarball, readable by its owner only,
for ``raas node install`` on the node (:mod:`fleet_node.install`).

Nodes reach the central broker over TLS: the bundle names its ``mqtts://`` address (by default
the first DNS name of its certificate and its TLS port) and carries the CA certificate that
verifies it. Enrolling again re-keys both logins: an older bundle of that node stops working.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from broker_config import provision
from broker_config.handle import BrokerHandle
from broker_config.runner import is_loopback
from fleet_node.node_files import NodeSpec, file_mode, node_files
from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.protocol import check_id

MANIFEST = "raas-node-bundle.json"
"""The bundle's table of contents (not installed): format, node, central URL, files."""
FORMAT = 1
"""Version of the bundle layout; :mod:`fleet_node.install` refuses others."""


class EnrollError(RaasError):
    """A node cannot be enrolled, or a bundle cannot be read or installed."""


def enroll(handle: BrokerHandle, node_id: str, *, store_url: str, central_url: str | None = None,
           ca_file: Path | None = None, motor_backend: str = "pigpio",
           raas_bin: str = "/opt/raas/venv/bin/raas") -> NodeSpec:
    """Create or re-key node ``node_id``'s central logins and describe its files.

    Args:
        handle: the running central broker (its admin makes the logins).
        node_id: the new node's id.
        store_url: the object store nodes upload result bundles to.
        central_url: how the node reaches the central broker; default :func:`public_url`.
        ca_file: the CA certificate nodes verify it with; default the broker's own
            (``RAAS_CENTRAL_CA_FILE`` or ``<dir>/tls/ca.crt``), none for a public certificate.
        motor_backend: the node's ``RAAS_MOTOR_BACKEND``.
        raas_bin: the ``raas`` executable on the node.

    Raises:
        EnrollError: no TLS address for nodes, or a plain-text one off this machine, or an
            unreadable CA file. DynSecError: the broker refused a login.
    """
    check_id(node_id, "node id")
    url = central_url or public_url(handle)
    check_node_url(url)
    ca_path = ca_file or handle.ca_file
    ca_pem = None
    if ca_path is not None:
        try:
            ca_pem = Path(ca_path).read_text()
        except OSError as e:
            raise EnrollError(f"cannot read the CA certificate {ca_path}: {e}") from e
        if "-----BEGIN CERTIFICATE-----" not in ca_pem:
            raise EnrollError(f"{ca_path} is not a PEM certificate")
    admin = handle.admin_address
    return NodeSpec(node_id=node_id, central_url=url,
                    node_password=provision.ensure_node(admin, node_id),
                    bridge_password=provision.ensure_bridge(admin, node_id), ca_pem=ca_pem,
                    store_url=store_url, motor_backend=motor_backend, raas_bin=raas_bin)


def public_url(handle: BrokerHandle) -> str:
    """The central broker's address for nodes: ``mqtts://<name>:<TLS port>``, ``<name>`` the
    first DNS name of its certificate other than ``localhost`` (else ``localhost``).

    Raises:
        EnrollError: it has no TLS listener.
    """
    if not handle.tls_port or handle.tls_cert is None:
        raise EnrollError(f"the central broker in {handle.dir} has no TLS listener: make its "
                          "certificate (raas broker ca; raas broker cert --host NAME), restart "
                          "it, or pass --central-url mqtts://NAME:PORT")
    from broker_config.tls import dns_names  # cryptography: the broker extra, central host only

    names = [n for n in dns_names(handle.tls_cert) if n != "localhost"] or ["localhost"]
    return f"mqtts://{names[0]}:{handle.tls_port}"


def check_node_url(url: str) -> None:
    """Refuse a central URL that would send a node's passwords in clear text: only
    ``mqtts://``, or plain ``mqtt://`` to this machine's loopback (a node on the central host).

    Raises:
        EnrollError: any other URL.
    """
    parts = urlsplit(url)
    if parts.scheme == "mqtts" and parts.hostname:
        return
    if parts.scheme == "mqtt" and parts.hostname and is_loopback(parts.hostname):
        return
    raise EnrollError(f"{url!r}: nodes reach the central broker over TLS (mqtts://NAME:8883)")


def write_bundle(spec: NodeSpec, out: Path) -> Path:
    """Write the node's bundle to ``out`` (a ``.tar.gz``, mode 0600: it holds two passwords).

    Returns:
        ``out``.
    """
    files = node_files(spec)
    manifest = {"format": FORMAT, "node_id": spec.node_id, "central_url": spec.central_url,
                "motor_backend": spec.motor_backend, "created": time.time(),
                "files": sorted(files)}
    entries = [(MANIFEST, json.dumps(manifest, indent=1) + "\n", 0o644),
               *((name, text, file_mode(name)) for name, text in sorted(files.items()))]
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, text, mode in entries:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, int(manifest["created"])
            tar.addfile(info, io.BytesIO(data))
    return out


def read_bundle(path: Path) -> tuple[dict, dict[str, bytes]]:
    """The manifest and files (path below the root → bytes) of a bundle written by
    :func:`write_bundle`. Only regular files named in the manifest are read.

    Raises:
        EnrollError: not a bundle, another format, or a member outside the manifest.
    """
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers()}
            if MANIFEST not in members:
                raise EnrollError(f"{path} is not a node bundle (no {MANIFEST})")
            manifest = json.loads(_read(tar, members[MANIFEST]))
            if manifest.get("format") != FORMAT:
                raise EnrollError(f"{path}: bundle format {manifest.get('format')!r}, this "
                                  f"version installs format {FORMAT}")
            names = set(manifest["files"])
            extra = set(members) - names - {MANIFEST}
            if extra:
                raise EnrollError(f"{path}: unexpected members {sorted(extra)}")
            files = {name: _read(tar, members[name]) for name in sorted(names)}
    except (OSError, tarfile.TarError, ValueError, KeyError) as e:
        raise EnrollError(f"cannot read the bundle {path}: {e}") from e
    return manifest, files


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    if not member.isfile():
        raise EnrollError(f"bundle member {member.name} is not a regular file")
    f = tar.extractfile(member)
    assert f is not None  # a regular file always has a stream
    return f.read()
