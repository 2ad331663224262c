"""The dynamic-security JSON file written before Mosquitto starts: roles and service clients.

Writing it directly (instead of ``mosquitto_ctrl dynsec init`` plus one MQTT command per object)
makes a first start take milliseconds. On every start the file is merged, not replaced: service
roles get their current ACLs, missing service clients are added, and everything created at run time
(users, nodes, job clients) is kept.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Iterable

from broker_config.acl import Acl

ITERATIONS = 101
"""PBKDF2-SHA512 rounds, the same as mosquitto_ctrl and the plugin use (mosquitto 2.0.11)."""

DEFAULT_ACL_ACCESS = {"publishClientSend": False, "publishClientReceive": True,
                      "subscribe": False, "unsubscribe": True}


def new_password() -> str:
    """A random 32-character password (URL-safe, 192 bits)."""
    return secrets.token_urlsafe(24)


def write_private(path: Path, text: str, *, exclusive: bool = False) -> Path:
    """Write ``text`` to ``path``, readable by its owner only (0600; parent folders created).

    Args:
        exclusive: refuse to replace an existing file.

    Raises:
        FileExistsError: ``exclusive`` and the file exists.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    with os.fdopen(os.open(path, flags, 0o600), "w") as f:
        f.write(text)
    return path


def hash_password(password: str, salt: bytes | None = None) -> dict[str, object]:
    """The plugin's stored form of ``password``: PBKDF2-HMAC-SHA512 over a 12-byte salt."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS)
    return {"password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
            "iterations": ITERATIONS}


def role_entry(name: str, acls: Iterable[Acl]) -> dict[str, object]:
    """The plugin's JSON form of role ``name`` allowing exactly ``acls``."""
    return {"rolename": name,
            "acls": [{"acltype": t, "topic": f, "priority": 0, "allow": True} for t, f in acls]}


def merge(doc: dict, roles: dict[str, list[Acl]], clients: dict[str, str],
          client_ids: dict[str, str | None] | None = None) -> dict:
    """Return ``doc`` with ``roles`` set to exactly these ACLs and the service ``clients``
    (username → password, role of the same name) present with these passwords, each bound to
    its client id from ``client_ids`` (username → id; None or absent: unbound). Every other entry
    (users, nodes, job clients created at run time) is kept unchanged."""
    doc = dict(doc)
    doc["defaultACLAccess"] = dict(DEFAULT_ACL_ACCESS)
    by_role = {r["rolename"]: r for r in doc.get("roles", [])}
    for name, acls in roles.items():
        by_role[name] = {**by_role.get(name, {}), **role_entry(name, acls)}
    doc["roles"] = list(by_role.values())
    by_client = {c["username"]: c for c in doc.get("clients", [])}
    for username, password in clients.items():
        entry = dict(by_client.get(username, {"username": username,
                                              "textName": f"raas service {username}"}))
        entry["roles"] = [{"rolename": username}]
        entry.update(hash_password(password))
        cid = (client_ids or {}).get(username)
        if cid:
            entry["clientid"] = cid
        else:
            entry.pop("clientid", None)
        by_client[username] = entry
    doc["clients"] = list(by_client.values())
    doc.setdefault("groups", [])
    return doc


def write_json(path: Path, doc: dict) -> None:
    """Write ``doc`` atomically, readable by its owner only (it holds password hashes)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)
