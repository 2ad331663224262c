"""A client for Mosquitto's dynamic-security plugin: create and delete clients and roles at run time.

Commands go to ``$CONTROL/dynamic-security/v1`` as ``{"commands": [...]}``; the plugin answers on
``.../v1/response`` with ``{"responses": [{"command", "error"?, "data"?, "correlationData"?}]}``.
Each command carries a unique correlationData, so concurrent callers on one connection are safe.
Reference: https://mosquitto.org/documentation/dynamic-security/
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from typing import Any, Iterable

from broker_config.acl import CONTROL_RESPONSE, CONTROL_TOPIC, Acl
from gym_raas_mqtt.errors import RaasError
from gym_raas_mqtt.mqtt import BrokerAddress, BrokerUnreachable, ConnectionRefused, Link

log = logging.getLogger(__name__)
KEEPALIVE_S = 30  # MQTT keepalive of the admin connection [s]


class DynSecError(RaasError, RuntimeError):
    """The plugin refused a command, did not answer in time, or the admin could not connect."""

    def __init__(self, message: str, command: str = "", error: str = "") -> None:
        super().__init__(message)
        self.command = command
        self.error = error  # the plugin's own error text, e.g. "Client already exists"


class DynSec:
    """A connection to one broker as its dynsec administrator.

    Use as a context manager (connects on enter, disconnects on exit)::

        with DynSec(handle.admin_address) as ds:
            ds.create_client("node-pi1", password, ["node-pi1"])

    The ``$CONTROL`` topics are the plugin's, not the protocol's, so the :class:`Link` is raw.

    Args:
        admin_address: a client with the ``admin`` role (or the agent on a node-local broker).
        timeout_s: how long to wait for connecting and for each answer (s).

    Raises:
        DynSecError: from every method when the plugin reports an error or is silent.
    """

    def __init__(self, admin_address: BrokerAddress, timeout_s: float = 5.0) -> None:
        self.address = admin_address
        self.timeout_s = timeout_s
        self._pending: dict[str, tuple[threading.Event, list[dict]]] = {}
        self._lock = threading.Lock()
        self._link = Link(admin_address, f"dynsec-{uuid.uuid4().hex[:10]}", name="dynsec",
                          subscriptions=[(CONTROL_RESPONSE, 1)], on_message=self._on_response,
                          raw=True, keepalive_s=KEEPALIVE_S)

    def _on_response(self, topic: str, payload: bytes) -> None:
        """Hand each response to the command waiting for its correlationData (paho's thread)."""
        try:
            responses = json.loads(payload)["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("malformed dynsec response %r", payload[:200])
            return
        for resp in responses if isinstance(responses, list) else ():
            corr = resp.get("correlationData") if isinstance(resp, dict) else None
            with self._lock:
                waiter = self._pending.pop(corr, None) if isinstance(corr, str) else None
            if waiter is not None:
                waiter[1].append(resp)
                waiter[0].set()

    # -- connection -----------------------------------------------------------------------------
    def __enter__(self) -> "DynSec":
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> None:
        """Connect and subscribe to the response topic.

        Raises:
            DynSecError: refused (also: not allowed to subscribe the response topic),
                unreachable, or no answer within ``timeout_s``.
        """
        try:
            self._link.start(self.timeout_s)
        except BrokerUnreachable as e:
            self.close()
            raise DynSecError(f"cannot reach {self.address.url()}: {e}") from e
        except ConnectionRefused as e:
            self.close()
            raise DynSecError(f"dynsec admin {self.address.username!r} on {self.address.url()}: "
                              f"{e}") from e

    def close(self) -> None:
        """Disconnect and stop the network thread. Idempotent."""
        self._link.close()

    # -- raw commands ---------------------------------------------------------------------------
    def command(self, command: str, **params: Any) -> dict:
        """Send one command and return its response's ``data`` (empty dict when none).

        Raises:
            DynSecError: the plugin answered with an error, or did not answer in time.
        """
        corr = uuid.uuid4().hex
        event = threading.Event()
        box: list[dict] = []
        with self._lock:
            self._pending[corr] = (event, box)
        payload = json.dumps({"commands": [{"command": command, "correlationData": corr,
                                            **params}]})
        info = self._link.publish(CONTROL_TOPIC, payload.encode(), qos=1)
        if not event.wait(self.timeout_s):
            with self._lock:
                self._pending.pop(corr, None)
            raise DynSecError(f"dynsec {command}: no response within {self.timeout_s} s "
                              f"(publish rc {info.rc})", command)
        resp = box[0]
        if resp.get("error"):
            raise DynSecError(f"dynsec {command} failed: {resp['error']}", command, resp["error"])
        data = resp.get("data")
        return data if isinstance(data, dict) else {}

    # -- clients --------------------------------------------------------------------------------
    def create_client(self, username: str, password: str, roles: Iterable[str] = (),
                      clientid: str | None = None, textname: str | None = None) -> None:
        """Create a client with ``roles``; ``clientid`` binds it to one MQTT client id.

        Raises:
            DynSecError: e.g. it exists already (``error == "Client already exists"``).
        """
        params: dict[str, Any] = {"username": username, "password": password,
                                  "roles": [{"rolename": r} for r in roles]}
        if clientid:
            params["clientid"] = clientid
        if textname:
            params["textname"] = textname
        self.command("createClient", **params)

    def delete_client(self, username: str) -> bool:
        """Delete a client (its connections are closed by the broker). Idempotent.

        Returns:
            False when there was no such client.
        """
        try:
            self.command("deleteClient", username=username)
        except DynSecError as e:
            if "not found" in e.error.lower():
                return False
            raise
        return True

    def set_password(self, username: str, password: str) -> None:
        """Replace a client's password."""
        self.command("setClientPassword", username=username, password=password)

    def set_client_id(self, username: str, clientid: str | None) -> None:
        """Bind a client to one MQTT client id (None or "": unbind)."""
        self.command("modifyClient", username=username, clientid=clientid or "")

    def get_client(self, username: str) -> dict | None:
        """The client's description, or None when it does not exist."""
        try:
            return self.command("getClient", username=username).get("client")
        except DynSecError as e:
            if "not found" in e.error.lower():
                return None
            raise

    def add_client_role(self, username: str, role: str) -> None:
        """Give a client one more role."""
        self.command("addClientRole", username=username, rolename=role)

    def list_clients(self) -> list[str]:
        """Every client's username."""
        return list(self.command("listClients", count=-1, offset=0).get("clients", []))

    # -- roles ----------------------------------------------------------------------------------
    def add_role(self, name: str, acls: Iterable[Acl]) -> None:
        """Create role ``name`` allowing exactly ``acls`` ((acltype, topic) pairs).

        Raises:
            DynSecError: e.g. it exists already.
        """
        self.command("createRole", rolename=name, acls=[
            {"acltype": t, "topic": f, "priority": 0, "allow": True} for t, f in acls])

    def get_role(self, name: str) -> dict | None:
        """The role's description (with its ``acls``), or None when it does not exist."""
        try:
            return self.command("getRole", rolename=name).get("role")
        except DynSecError as e:
            if "not found" in e.error.lower():
                return None
            raise

    def ensure_role(self, name: str, acls: Iterable[Acl]) -> None:
        """Make role ``name`` exist with exactly these allow-ACLs (adding/removing the difference)."""
        wanted = {(t, f) for t, f in acls}
        role = self.get_role(name)
        if role is None:
            try:
                self.add_role(name, sorted(wanted))
                return
            except DynSecError as e:  # created concurrently
                if "already exists" not in e.error.lower():
                    raise
                role = self.get_role(name) or {}
        have = {(a["acltype"], a["topic"]) for a in role.get("acls", []) if a.get("allow")}
        denied = {(a["acltype"], a["topic"]) for a in role.get("acls", []) if not a.get("allow")}
        for t, f in (have - wanted) | denied:
            self.command("removeRoleACL", rolename=name, acltype=t, topic=f)
        for t, f in sorted(wanted - have):
            self.command("addRoleACL", rolename=name, acltype=t, topic=f, priority=0, allow=True)

    def delete_role(self, name: str) -> bool:
        """Delete a role. Idempotent; False when there was none."""
        try:
            self.command("deleteRole", rolename=name)
        except DynSecError as e:
            if "not found" in e.error.lower():
                return False
            raise
        return True
