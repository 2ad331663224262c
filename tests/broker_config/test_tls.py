"""The brokers' TLS: the local CA and server certificates (``raas broker ca|cert``), the rendered
listeners and bridge, where the certificate files are found, and a TLS-only central broker."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from broker_config import render, tls
from broker_config.config import BrokerConfig
from broker_config.runner import start_broker
from gym_raas_mqtt.config import load
from gym_raas_mqtt.errors import ConfigError
from gym_raas_mqtt.mqtt import Link
from tests.conftest import free_port

RAAS = str(Path(sys.executable).with_name("raas"))


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_ca_and_server_certificate(tmp_path):
    ca_path = tls.make_ca(tmp_path)
    cert_path = tls.make_server_cert(tmp_path, ["central.lab.example", "localhost"],
                                     [ipaddress.ip_address("10.1.2.3")])
    ca, cert = _cert(ca_path), _cert(cert_path)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    cert.verify_directly_issued_by(ca)
    assert tls.dns_names(cert_path) == ["central.lab.example", "localhost"]
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3")]
    now = dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=824) < cert.not_valid_after_utc - now < dt.timedelta(days=826)
    assert dt.timedelta(days=3649) < ca.not_valid_after_utc - now
    for key in ("ca.key", "server.key"):
        assert (tmp_path / key).stat().st_mode & 0o777 == 0o600
    # Python's own verification accepts the pair, for the names in the certificate only
    ctx = ssl.create_default_context(cafile=ca_path)
    ctx.load_cert_chain(cert_path, tmp_path / "server.key")  # the key matches
    with pytest.raises(tls.CertificateError, match="already holds a CA"):
        tls.make_ca(tmp_path)


def test_broker_ca_and_cert_commands(tmp_path):
    for args in (["ca"], ["cert", "--host", "central.lab.example", "--ip", "10.1.2.3"]):
        out = subprocess.run([RAAS, "broker", *args, "--dir", str(tmp_path)],
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
    names = tls.dns_names(tmp_path / "tls" / "server.crt")
    assert names == ["central.lab.example", "localhost"]  # localhost: co-located clients
    out = subprocess.run([RAAS, "broker", "ca", "--dir", str(tmp_path)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 1 and "--replace" in out.stderr


def test_central_listeners_and_bridge_render_tls(tmp_path):
    listener = render.TlsListener("", 8883, Path("/c/server.crt"), Path("/c/server.key"))
    conf = render.render_central(tmp_path, host="127.0.0.1", port=1883, tls=listener,
                                 plugin="p.so", max_inflight=100, max_queued=10, user="u")
    assert "listener 1883 127.0.0.1\nlistener 8883\ncertfile /c/server.crt\n" \
           "keyfile /c/server.key\ntls_version tlsv1.2\n" in conf
    only_tls = render.render_central(tmp_path, host="127.0.0.1", port=0, tls=listener,
                                     plugin="p.so", max_inflight=100, max_queued=10, user="u")
    assert "listener 1883" not in only_tls and "listener 8883" in only_tls
    for ca, trust in ((Path("/etc/raas/ca.crt"), "bridge_cafile /etc/raas/ca.crt"),
                      (None, "bridge_capath /etc/ssl/certs")):
        bridge = render.Bridge("pi-07", "central.lab.example", 8883, "pw", tls=True, ca_file=ca)
        conf = render.render_local(tmp_path, socket_path=tmp_path / "s", port=0, plugin="p.so",
                                   max_inflight=100, max_queued=10, user="u", bridge=bridge)
        assert (f"address central.lab.example:8883\n{trust}\nbridge_insecure false\n"
                "bridge_tls_version tlsv1.2\n") in conf
    plain = render.Bridge("pi-07", "127.0.0.1", 1883, "pw")
    conf = render.render_local(tmp_path, socket_path=tmp_path / "s", port=0, plugin="p.so",
                               max_inflight=100, max_queued=10, user="u", bridge=plain)
    assert "bridge_insecure" not in conf and "bridge_cafile" not in conf


def test_tls_files_are_found_in_the_runtime_directory_or_configured(tmp_path):
    cfg = load(BrokerConfig, environ={})
    assert cfg.tls_files(tmp_path) is None  # no certificate: no TLS listener
    tls.make_ca(tmp_path / "tls")
    tls.make_server_cert(tmp_path / "tls", ["localhost"], [])
    cert, key, ca = cfg.tls_files(tmp_path)
    assert (cert.name, key.name, ca.name) == ("server.crt", "server.key", "ca.crt")
    assert load(BrokerConfig, environ={"RAAS_BROKER_TLS_PORT": "0"}).tls_files(tmp_path) is None
    with pytest.raises(ConfigError, match="needs RAAS_BROKER_TLS_KEY"):
        load(BrokerConfig, environ={"RAAS_BROKER_TLS_CERT": str(cert)}).tls_files(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load(BrokerConfig, environ={"RAAS_BROKER_TLS_CERT": str(tmp_path / "no.crt"),
                                    "RAAS_BROKER_TLS_KEY": str(key)}).tls_files(tmp_path)


@pytest.mark.broker
def test_a_tls_only_central_broker_is_adopted_with_its_listener(tmp_path):
    tls.make_ca(tmp_path / "tls")
    tls.make_server_cert(tmp_path / "tls", ["localhost"], [])
    cfg = load(BrokerConfig, environ={}, tls_port=free_port())
    handle = start_broker("central", tmp_path, cfg=cfg, port=0)
    try:
        again = start_broker("central", tmp_path, cfg=cfg, port=0)  # the running one, read back
        assert again.pid == handle.pid and again.tls_port == handle.tls_port
        admin = again.admin_address  # no plain-text port: the TLS listener, verified
        assert admin.tls and admin.ca_file == str(tmp_path / "tls" / "ca.crt")
        Link(admin, "admin-adopted").start(5.0).close()
    finally:
        handle.stop()
