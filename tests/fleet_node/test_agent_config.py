"""AgentConfig: every setting from RAAS_* variables, validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet_node.config import AgentConfig
from gym_raas_mqtt.config import load
from gym_raas_mqtt.errors import ConfigError


def test_defaults_and_derived_values():
    cfg = load(AgentConfig, environ={})
    assert cfg.central_user == "node-dev-node"
    assert cfg.socket_path == Path("/run/raas/sock/local.sock")  # from the unix:// local URL
    assert cfg.clone_schemes == ("https", "ssh") and cfg.selftest


def test_environment_is_read():
    cfg = load(AgentConfig, environ={
        "RAAS_NODE_ID": "pend-3", "RAAS_CLONE_SCHEMES": "https, file",
        "RAAS_AGENT_WILL_DELAY_S": "4", "RAAS_LOCAL_MQTT_URL": "mqtt://127.0.0.1:1884",
        "RAAS_LOCAL_SOCKET": "/run/x/local.sock", "RAAS_AGENT_SELFTEST": "no",
        "RAAS_AGENT_CENTRAL_USERNAME": "node-custom"})
    assert (cfg.node_id, cfg.clone_schemes, cfg.will_delay_s) == ("pend-3", ("https", "file"), 4)
    assert cfg.socket_path == Path("/run/x/local.sock") and not cfg.selftest
    assert cfg.central_user == "node-custom"
    assert load(AgentConfig, environ={"RAAS_LOCAL_MQTT_URL": "mqtt://h:1"}).socket_path is None


@pytest.mark.parametrize("env", [
    {"RAAS_NODE_ID": "../etc"}, {"RAAS_CLONE_SCHEMES": "https,ext"},
    {"RAAS_AGENT_KEEPALIVE_S": "0"}, {"RAAS_AGENT_UPLOAD_ATTEMPTS": "0"},
    {"RAAS_CLONE_MAX_BYTES": "10"}, {"RAAS_AGENT_WILL_DELAY_S": "soon"},
])
def test_invalid_settings_are_refused(env):
    with pytest.raises(ConfigError):
        load(AgentConfig, environ=env)
