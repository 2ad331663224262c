"""Which webhook URLs the platform calls: scheme, form and the addresses a host resolves to.

A shared platform must not become a proxy into its own network (SSRF): a URL is refused when its
host resolves to a loopback, link-local, private, multicast or otherwise non-public address,
unless :attr:`WebhookConfig.allow_private` says otherwise. The check runs when a user adds a URL
and again before every delivery attempt, which then connects to the very address it checked (so a
DNS answer that changes in between cannot redirect the request).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from dispatcher.webhooks.config import WebhookConfig
from gym_raas_mqtt.errors import RaasError

MAX_URL_CHARS = 2000
DEFAULT_PORTS = {"http": 80, "https": 443}


class UrlRefused(RaasError):
    """A webhook URL the platform will not call; the message says why (shown to the user)."""


@dataclass(frozen=True)
class Target:
    """A checked webhook URL and the address to connect to.

    Attributes:
        scheme: ``https`` or ``http``.
        host: the URL's host name (HTTP ``Host`` header and TLS server name).
        port: TCP port.
        path: path and query to request (``/`` when empty).
        address: the IP address the host resolved to that passed the check.
    """

    scheme: str
    host: str
    port: int
    path: str
    address: str


def check_form(url: object, policy: WebhookConfig) -> tuple[str, str, int, str]:
    """Check a URL's form without resolving it.

    Returns:
        ``(scheme, host, port, path)``.

    Raises:
        UrlRefused: not a string, too long, not ASCII, not http(s), plain http while not
            allowed, no host, credentials or a fragment in it, or a bad port.
    """
    if not isinstance(url, str) or not url:
        raise UrlRefused("the webhook URL must be a non-empty string")
    if len(url) > MAX_URL_CHARS or not url.isascii() or any(c.isspace() or ord(c) < 32
                                                             for c in url):
        raise UrlRefused(f"the webhook URL must be at most {MAX_URL_CHARS} ASCII characters "
                         "without spaces or control characters (write international host "
                         "names in punycode, xn--...)")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UrlRefused("the webhook URL must start with https://")
    if scheme == "http" and not policy.allow_http:
        raise UrlRefused("plain http:// webhooks are not allowed here; use https://")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("the webhook URL must not carry a user name or password; the "
                         "X-Raas-Signature-256 header authenticates deliveries")
    if parts.fragment:
        raise UrlRefused("the webhook URL must not have a #fragment")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise UrlRefused("the webhook URL has an invalid port") from None
    host = parts.hostname
    if not host:
        raise UrlRefused("the webhook URL has no host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port, path


def refusal(address: str, policy: WebhookConfig) -> str | None:
    """Why ``address`` may not be called (None: it may)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_multicast:
        return f"{ip} is not a host address"
    if policy.allow_private or ip.is_global:
        return None
    kind = ("a loopback" if ip.is_loopback else "a link-local" if ip.is_link_local
            else "a private" if ip.is_private else "a non-public")
    return f"{ip} is {kind} address"


def resolve(url: object, policy: WebhookConfig) -> Target:
    """Check ``url`` and resolve its host; every address it resolves to must pass.

    Raises:
        UrlRefused: a bad form (:func:`check_form`), a host that does not resolve, or an address
            :func:`refusal` refuses.
    """
    scheme, host, port, path = check_form(url, policy)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise UrlRefused(f"the webhook host {host} does not resolve ({e})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UrlRefused(f"the webhook host {host} does not resolve")
    for address in addresses:
        why = refusal(address, policy)
        if why is not None:
            raise UrlRefused(f"the webhook host {host} resolves to {why}; webhooks must reach "
                             "a public address")
    return Target(scheme, host, port, path, addresses[0])
