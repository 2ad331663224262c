"""A local certificate authority and the central broker's certificate (``raas broker ca|cert``).

For installations without a CA of their own: one ECDSA P-256 CA (10 years) signs server
certificates (825 days, the longest lifetime clients such as Apple's accept for private CAs) whose
subject alternative names carry every host name and address clients use. Clients are given the
CA certificate (``ca.crt``; nodes get it in their enrollment bundle, users on the account page);
the CA's key stays on the central host, readable by its owner only.

Needs the ``cryptography`` library (``pip install './raas-platform[broker]'``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker_config.config import CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY
from broker_config.seed import write_private
from gym_raas_mqtt.errors import RaasError

CA_DAYS = 3650
SERVER_DAYS = 825
BACKDATE = dt.timedelta(hours=1)  # tolerate clocks a little behind the CA's


class CertificateError(RaasError):
    """A CA or certificate could not be made or read."""


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def default_names() -> list[str]:
    """Host names a server certificate carries unless told otherwise: this machine's fully
    qualified name and host name, and ``localhost``."""
    names = [socket.getfqdn(), socket.gethostname(), "localhost"]
    return list(dict.fromkeys(n for n in names if n))


def make_ca(folder: Path, common_name: str = "RaaS-MQTT CA", days: int = CA_DAYS,
            replace: bool = False) -> Path:
    """Create a CA: ``<folder>/ca.crt`` (public) and ``<folder>/ca.key`` (0600).

    Args:
        folder: where to write (created).
        common_name: the CA's name, shown by clients.
        days: validity [days].
        replace: overwrite an existing CA (every certificate it signed stops being trusted by
            clients given the new one).

    Returns:
        The CA certificate's path.

    Raises:
        CertificateError: a CA exists there and ``replace`` is False.
    """
    cert_path, key_path = folder / CA_CERT, folder / CA_KEY
    if not replace and (cert_path.exists() or key_path.exists()):
        raise CertificateError(f"{folder} already holds a CA (--replace makes a new one)")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .sign(key, hashes.SHA256()))
    _write_pair(cert_path, cert, key_path, key)
    return cert_path


def make_server_cert(folder: Path, names: list[str], ips: list[IpAddress], *,
                     ca_folder: Path | None = None, days: int = SERVER_DAYS) -> Path:
    """Create ``<folder>/server.crt`` and ``<folder>/server.key`` (0600), signed by the CA in
    ``ca_folder`` (default ``folder``).

    Args:
        names: DNS names clients connect to (the first is also the subject's common name).
        ips: addresses clients connect to.
        days: validity [days].

    Returns:
        The certificate's path.

    Raises:
        CertificateError: no CA there, or neither a name nor an address.
    """
    if not names and not ips:
        raise CertificateError("a server certificate needs at least one host name or address")
    ca_folder = ca_folder or folder
    ca_cert, ca_key = load_ca(ca_folder)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    alt = [x509.DNSName(n) for n in names] + [x509.IPAddress(ip) for ip in ips]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names
                                            else str(ips[0]))])
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    path = folder / SERVER_CERT
    _write_pair(path, cert, folder / SERVER_KEY, key)
    return path


def load_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA certificate and key in ``folder``.

    Raises:
        CertificateError: missing or unreadable (make one with :func:`make_ca`).
    """
    try:
        cert = x509.load_pem_x509_certificate((folder / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((folder / CA_KEY).read_bytes(), password=None)
    except (OSError, ValueError) as e:
        raise CertificateError(f"no usable CA in {folder} (raas broker ca makes one): "
                               f"{e}") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{folder / CA_KEY}: expected an EC key")
    return cert, key


def dns_names(cert_path: Path) -> list[str]:
    """The DNS names in the subject alternative names of the (first) certificate in
    ``cert_path``, in order.

    Raises:
        CertificateError: not a readable PEM certificate.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as e:
        raise CertificateError(f"{cert_path}: {e}") from e
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return alt.get_values_for_type(x509.DNSName)


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False,
                         decipher_only=False)


def _write_pair(cert_path: Path, cert: x509.Certificate, key_path: Path,
                key: ec.EllipticCurvePrivateKey) -> None:
    write_private(key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode())
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    cert_path.chmod(0o644)
