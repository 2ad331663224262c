"""Broker addresses: ``mqtt://``, ``mqtts://`` (TLS, verified) and ``unix://`` URLs, and the TLS
context every ``mqtts://`` client gets."""

from __future__ import annotations

import ssl

import pytest

from gym_raas_mqtt.errors import ConfigError
from gym_raas_mqtt.mqtt import BrokerAddress, tls_context


def test_urls_parse_to_addresses_and_back():
    plain = BrokerAddress.parse("mqtt://u:p@127.0.0.1", ca_file="/ca.crt")
    assert plain == BrokerAddress("tcp", "127.0.0.1", 1883, "u", "p")  # no TLS: CA ignored
    secure = BrokerAddress.parse("mqtts://central.lab.example", "node-pi-07", "pw",
                                 ca_file="/etc/raas/ca.crt")
    assert secure == BrokerAddress("tcp", "central.lab.example", 8883, "node-pi-07", "pw",
                                   tls=True, ca_file="/etc/raas/ca.crt")
    assert secure.url() == "mqtts://central.lab.example:8883"
    assert BrokerAddress.parse(secure.url()).tls
    assert BrokerAddress.parse("mqtts://[::1]:9883").url() == "mqtts://[::1]:9883"
    unix = BrokerAddress.parse("unix:///run/raas/sock/local.sock", ca_file="/ca.crt")
    assert (unix.transport, unix.host, unix.tls) == ("unix", "/run/raas/sock/local.sock", False)
    with pytest.raises(ConfigError, match="mqtts://"):
        BrokerAddress.parse("ws://central:80")


def test_tls_context_verifies_and_refuses_old_versions():
    ctx = tls_context(BrokerAddress("tcp", "central", 8883, tls=True))
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2
    with pytest.raises(OSError):  # a CA file that is not there is an error, not "no CA"
        tls_context(BrokerAddress("tcp", "central", 8883, tls=True, ca_file="/nonexistent.crt"))
