"""Accounts made at run time: users and nodes (central broker), per-job clients (node-local).

Naming (usernames equal their role names, so a client's rights are read off its name):

=========================  ================  ==================================================
username                   broker            made by
=========================  ================  ==================================================
``user-<owner>``           central           :func:`ensure_user` (dashboard/dispatcher, admin)
``node-<id>``              central           :func:`ensure_node` (operator, ``raas broker add-node``)
``bridge-<id>``            central           :func:`ensure_bridge` (idem)
``job-<job>-<random>``     node-local        :func:`create_job_client` (the agent, per job)
=========================  ================  ==================================================

Every one of these logins is bound to one MQTT client id, its username (:func:`acl.client_id`): the
broker refuses any other, so no login can take over another client's connection or session.

Passwords are stored hashed by the broker, so an ``ensure_*`` call sets a new one every time and
returns it: call it when the secret is handed out, not to check existence.
"""

from __future__ import annotations

import secrets

from broker_config import acl
from broker_config.dynsec import DynSec, DynSecError
from broker_config.seed import new_password
from gym_raas_mqtt.mqtt import BrokerAddress
from gym_raas_mqtt.protocol import check_id

JOB_ROLE = "job"


def user_username(owner: str) -> str:
    """The central username of researcher ``owner``."""
    return f"user-{check_id(owner, 'owner')}"


def node_username(node_id: str) -> str:
    """The central username of a fleet node's agent."""
    return f"node-{check_id(node_id, 'node id')}"


def bridge_username(node_id: str) -> str:
    """The central username of a node-local broker's bridge."""
    return f"bridge-{check_id(node_id, 'node id')}"


def _ensure_client(ds: DynSec, username: str, role_acls: list[acl.Acl],
                   password: str | None) -> str:
    ds.ensure_role(username, role_acls)
    password = password or new_password()
    try:
        ds.create_client(username, password, [username], clientid=acl.client_id(username))
    except DynSecError as e:
        if "already exists" not in e.error.lower():
            raise
        ds.set_password(username, password)
        client = ds.get_client(username) or {}
        if username not in {r.get("rolename") for r in client.get("roles", [])}:
            ds.add_client_role(username, username)
        if client.get("clientid") != acl.client_id(username):  # made before ids were bound
            ds.set_client_id(username, acl.client_id(username))
    return password


def ensure_user(admin: BrokerAddress, owner: str, password: str | None = None) -> str:
    """Create or update ``user-<owner>`` on the central broker: it may subscribe to
    ``raas/v1/jobs/<owner>/+/#`` (state, telemetry, log of its own jobs) and nothing else.

    Returns:
        The (new) password. Raises DynSecError on failure.
    """
    with DynSec(admin) as ds:
        return _ensure_client(ds, user_username(owner), acl.user_role(owner), password)


def ensure_node(admin: BrokerAddress, node_id: str, password: str | None = None) -> str:
    """Create or update the agent account ``node-<id>`` on the central broker.

    Returns:
        The (new) password. Raises DynSecError on failure.
    """
    with DynSec(admin) as ds:
        return _ensure_client(ds, node_username(node_id), acl.node_role(node_id), password)


def ensure_bridge(admin: BrokerAddress, node_id: str, password: str | None = None) -> str:
    """Create or update ``bridge-<id>`` on the central broker (job telemetry + its notification).

    Returns:
        The (new) password. Raises DynSecError on failure.
    """
    with DynSec(admin) as ds:
        return _ensure_client(ds, bridge_username(node_id), acl.bridge_role(node_id), password)


def remove_node(admin: BrokerAddress, node_id: str) -> None:
    """Delete a decommissioned node's accounts and roles (idempotent)."""
    with DynSec(admin) as ds:
        for name in (node_username(node_id), bridge_username(node_id)):
            ds.delete_client(name)
            ds.delete_role(name)


def remove_user(admin: BrokerAddress, owner: str) -> None:
    """Delete a researcher's account and role (idempotent)."""
    with DynSec(admin) as ds:
        ds.delete_client(user_username(owner))
        ds.delete_role(user_username(owner))


def create_job_client(local_admin: BrokerAddress, node_id: str, job_id: str) -> tuple[str, str]:
    """Create a fresh client for one job on node ``node_id``'s local broker, with role ``job``
    (act/reset/env state out; obs/reset reply/motor state in). The role is (re)asserted, so this
    works even on a broker whose role was edited.

    Args:
        local_admin: the agent's (or admin's) address on the node-local broker.

    Returns:
        ``(username, password)`` to hand to the job container; the login connects only with the
        client id ``username``. Raises DynSecError.
    """
    check_id(job_id, "job id")
    username = f"job-{job_id}-{secrets.token_hex(3)}"
    password = new_password()
    with DynSec(local_admin) as ds:
        ds.ensure_role(JOB_ROLE, acl.job_role(node_id))
        ds.create_client(username, password, [JOB_ROLE], clientid=acl.client_id(username),
                         textname=f"job {job_id}")
    return username, password


def delete_job_client(local_admin: BrokerAddress, username: str) -> bool:
    """Delete a job's client; the broker disconnects it at once. Idempotent.

    Returns:
        False when it did not exist.
    """
    with DynSec(local_admin) as ds:
        return ds.delete_client(username)
