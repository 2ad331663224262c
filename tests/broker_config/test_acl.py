"""Unit checks of the ACL tables and the rendered configs (no broker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker_config import acl, render, seed
from gym_raas_mqtt import protocol as p
from gym_raas_mqtt.errors import ProtocolError


def _matches(filt: str, topic: str) -> bool:
    f, t = filt.split("/"), topic.split("/")
    for i, lv in enumerate(f):
        if lv == "#":
            return True
        if i >= len(t) or (lv != "+" and lv != t[i]):
            return False
    return len(f) == len(t)


ALL_TOPICS = [p.topic(k, **{n: "n1" if n == "node" else "x1" for n in p.TOPICS[k].placeholders})
              for k in p.TopicKind]
ROLES = {**{f"central:{k}": v for k, v in acl.central_service_roles().items()},
         **{f"local:{k}": v for k, v in acl.local_service_roles("n1").items()},
         "node": acl.node_role("n1"), "bridge": acl.bridge_role("n1"), "user": acl.user_role("x1")}


@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_acl_names_protocol_topics(role):
    """No ACL may be a typo: each one matches at least one topic of the contract."""
    for kind, filt in ROLES[role]:
        assert kind in (acl.PUB, acl.SUB, acl.RECV, acl.UNSUB)
        if filt.startswith("$") or filt == "#":
            continue
        assert any(_matches(filt, t) for t in ALL_TOPICS), (role, filt)


def test_job_role_never_touches_fleet_topics():
    for _, filt in acl.job_role("n1"):
        kind = p.parse_topic(filt).kind
        assert p.TOPICS[kind].local and kind in (
            p.TopicKind.ENV_ACT, p.TopicKind.ENV_RESET, p.TopicKind.ENV_STATE, p.TopicKind.ENV_OBS,
            p.TopicKind.ENV_RESET_REPLY, p.TopicKind.ENV_MOTOR_STATE)


def test_bridge_notification_topic_decodes():
    t = p.topic(p.TopicKind.NODE_BRIDGE, node="n1")
    assert p.decode(t, b"1") == (p.ParsedTopic(p.TopicKind.NODE_BRIDGE, node="n1"), None)
    assert p.bridge_connected(b"1") and not p.bridge_connected(b"0")
    with pytest.raises(ProtocolError):
        p.decode(t, b"yes")


def test_password_hash_matches_mosquitto_format():
    # reference produced by `mosquitto_ctrl dynsec init` (mosquitto 2.0.11) for "secret123"
    import base64

    salt = base64.b64decode("xy/8sJuAbA8Yq2Uk")
    h = seed.hash_password("secret123", salt)
    assert h["password"].startswith("sdQDpVb8X36iaxhIjipZTbomf8glGhFRn56byiB3gafJ")
    assert h["iterations"] == 101


def test_merge_keeps_runtime_entries_and_resets_service_roles():
    doc = {"clients": [{"username": "user-a", "roles": [{"rolename": "user-a"}]}],
           "roles": [{"rolename": "user-a", "acls": []},
                     {"rolename": "dispatcher", "acls": [{"acltype": acl.PUB, "topic": "#"}]}]}
    out = seed.merge(doc, acl.central_service_roles(), {"dispatcher": "pw"})
    roles = {r["rolename"]: r for r in out["roles"]}
    assert "user-a" in roles and {c["username"] for c in out["clients"]} == {"user-a",
                                                                            "dispatcher"}
    assert {(a["acltype"], a["topic"]) for a in roles["dispatcher"]["acls"]} == set(
        acl.dispatcher_role())
    assert out["defaultACLAccess"]["publishClientSend"] is False


def test_rendered_local_config_has_socket_limits_and_bridge():
    text = render.render_local(Path("/r"), socket_path=Path("/r/sock/local.sock"), port=1884,
                               plugin="/p.so", max_inflight=100, max_queued=20000, user="raas",
                               bridge=render.Bridge("n1", "central", 1883, "pw"))
    lines = text.splitlines()
    for want in ("listener 0 /r/sock/local.sock", "listener 1884 127.0.0.1",
                 "set_tcp_nodelay true", "allow_anonymous false", "bridge_protocol_version mqttv50",
                 "cleansession false", "remote_username bridge-n1",
                 f"notification_topic {p.topic(p.TopicKind.NODE_BRIDGE, node='n1')}",
                 f"topic {p.topic_filter(p.TopicKind.NODE_JOB_TELEMETRY, node='n1')} out 0"):
        assert want in lines, want
