"""Who may do what on which broker: every role's ACLs, built from the topics in protocol.py.

An ACL is ``(acltype, topic)`` with allow=True; everything not allowed is refused because the
dynamic-security default is: publish denied, subscribe denied, receive allowed (a client only
receives what it was allowed to subscribe to), unsubscribe allowed. ``subscribePattern`` ACLs are
filters: a subscription is allowed when it is no wider than the ACL's filter.

Roles (see broker_config/README.md for the table):

central broker: ``admin``, ``dispatcher``, ``dashboard``, ``readonly``, ``node-<id>``,
``bridge-<id>``, ``user-<owner>``.
node-local broker: ``admin``, ``motor``, ``agent``, ``job``.
"""

from __future__ import annotations

from gym_raas_mqtt.protocol import TopicKind as K
from gym_raas_mqtt.protocol import job_filter, node_filter, root_filter, topic, topic_filter

PUB = "publishClientSend"
SUB = "subscribePattern"
RECV = "publishClientReceive"
UNSUB = "unsubscribePattern"

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
CONTROL_RESPONSE = "$CONTROL/dynamic-security/v1/response"
CONTROL_FILTER = "$CONTROL/dynamic-security/#"

Acl = tuple[str, str]


def _rw(filt: str) -> list[Acl]:
    return [(PUB, filt), (SUB, filt)]


def _dynsec_admin() -> list[Acl]:
    return [(PUB, CONTROL_FILTER), (SUB, CONTROL_FILTER), (RECV, CONTROL_FILTER)]


# ---------------------------------------------------------------------------------------- central
def admin_role() -> list[Acl]:
    """Operator superuser: dynsec administration and read/write of every topic (incl. $SYS)."""
    return _dynsec_admin() + _rw("#") + [(SUB, "$SYS/#")]


def dispatcher_role() -> list[Acl]:
    """The dispatcher: reads the whole tree, writes its birth, node commands/assignments, replies
    to job updates, job states and the telemetry and logs it relays from the node that runs the
    job; may clear a decommissioned node's retained state/meta."""
    return [(SUB, root_filter())] + [(PUB, f) for f in (
        topic(K.DISPATCHER_STATE),
        topic_filter(K.NODE_CMD),
        topic_filter(K.NODE_JOB_NEXT),
        topic_filter(K.NODE_JOB_ACCEPTED),
        topic_filter(K.NODE_JOB_REJECTED),
        topic_filter(K.NODE_STATE),
        topic_filter(K.NODE_META),
        topic_filter(K.JOB_STATE),
        topic_filter(K.JOB_TELEMETRY),
        topic_filter(K.JOB_LOG),
    )]


def readonly_role() -> list[Acl]:
    """Operators and the dashboard: read everything (incl. broker statistics), write nothing."""
    return [(SUB, root_filter()), (SUB, "$SYS/#")]


def node_role(node: str) -> list[Acl]:
    """A fleet node's agent on the central broker: its own state/meta, heartbeat, self-test
    results, job updates and its jobs' logs, all in its own subtree (the dispatcher relays the logs
    of the job the node holds); it reads its own subtree (jobs/next, cmd, update replies) and the
    dispatcher's state. It cannot write jobs/next, cmd, the update replies, or anything under
    jobs/."""
    return [(PUB, f) for f in (
        topic(K.NODE_STATE, node=node),
        topic(K.NODE_META, node=node),
        topic(K.NODE_HEARTBEAT, node=node),
        topic(K.NODE_SELFTEST, node=node),
        topic_filter(K.NODE_JOB_UPDATE, node=node),
        topic_filter(K.NODE_JOB_LOG, node=node),
    )] + [(SUB, node_filter(node)), (SUB, topic(K.DISPATCHER_STATE))]


def bridge_role(node: str) -> list[Acl]:
    """The node-local broker's bridge: its node's job telemetry out (relayed by the dispatcher),
    plus its connection notification."""
    return [(PUB, topic_filter(K.NODE_JOB_TELEMETRY, node=node)),
            (PUB, topic(K.NODE_BRIDGE, node=node))]


def user_role(owner: str) -> list[Acl]:
    """A researcher: read-only access to their own jobs' state, telemetry and log."""
    return [(SUB, job_filter(owner))]


# ---------------------------------------------------------------------------------------- local
def motor_role(node: str) -> list[Acl]:
    """The motor node: serves act/reset, obeys estop/job/selftest, records telemetry."""
    reads = (K.ENV_ACT, K.ENV_RESET, K.ENV_STATE, K.ENV_ESTOP, K.ENV_JOB, K.ENV_SELFTEST)
    writes = (K.ENV_OBS, K.ENV_RESET_REPLY, K.ENV_MOTOR_STATE, K.ENV_SELFTEST_REPLY)
    return ([(SUB, topic(k, node=node)) for k in reads]
            + [(PUB, topic(k, node=node)) for k in writes]
            + [(PUB, topic_filter(K.NODE_JOB_TELEMETRY, node=node))])


def agent_role(node: str) -> list[Acl]:
    """The agent on its node-local broker: watches motor/env, sends estop/job/selftest and clears
    a finished job's retained env state. (It creates and deletes job logins as the broker's
    ``admin``; a retained action or reset a job may leave is ignored by the motor node.)"""
    reads = (K.ENV_MOTOR_STATE, K.ENV_STATE, K.ENV_SELFTEST_REPLY)
    writes = (K.ENV_ESTOP, K.ENV_JOB, K.ENV_SELFTEST, K.ENV_STATE)
    return ([(SUB, topic(k, node=node)) for k in reads]
            + [(PUB, topic(k, node=node)) for k in writes])


def job_role(node: str) -> list[Acl]:
    """The user's env in a job container: its side of the env loop, nothing else."""
    writes = (K.ENV_ACT, K.ENV_RESET, K.ENV_STATE)
    reads = (K.ENV_OBS, K.ENV_RESET_REPLY, K.ENV_MOTOR_STATE)
    return [(PUB, topic(k, node=node)) for k in writes] + [(SUB, topic(k, node=node))
                                                           for k in reads]


def central_service_roles() -> dict[str, list[Acl]]:
    """Central roles that exist from the start; each has a service client of the same name."""
    return {"admin": admin_role(), "dispatcher": dispatcher_role(), "dashboard": readonly_role(),
            "readonly": readonly_role()}


def local_service_roles(node: str) -> dict[str, list[Acl]]:
    """Node-local roles that exist from the start (service clients admin, motor, agent)."""
    return {"admin": admin_role(), "motor": motor_role(node), "agent": agent_role(node),
            "job": job_role(node)}


LOCAL_SERVICE_CLIENTS = ("admin", "motor", "agent")


def client_id(username: str, node: str | None = None) -> str | None:
    """The one MQTT client id login ``username`` may connect with (the broker refuses any other,
    so no login can take over another's connection or resume its session); None for ``admin``,
    the operator's superuser, which stays unbound.

    Args:
        node: for the node-local service logins ``motor`` and ``agent``: their node's id.
    """
    if username == "admin":
        return None
    if node is not None and username in ("motor", "agent"):
        return f"{username}-{node}"
    return username
CENTRAL_SERVICE_CLIENTS = ("admin", "dispatcher", "dashboard", "readonly")
