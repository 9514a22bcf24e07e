"""SSRF guard: a webhook URL is resolved once and refused if any address is not public.

The connection is then made to the vetted address (with the original host name for the
Host header and TLS), so a DNS answer that changes between the check and the connect
(rebinding) cannot steer the request to an internal address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["AllowList", "Refused", "Target", "Unresolved", "allowed_address", "check_url", "parse_allow_list"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., Sequence[tuple[Any, ...]]]


class Refused(ValueError):
    """A URL Handoff will not call: bad scheme, no host, or an internal address not allowed by name."""


class Unresolved(Refused):
    """The host name did not resolve now; DNS trouble may pass, so the caller may retry."""


@dataclass(frozen=True)
class Target:
    """A vetted URL: where to connect (`address`) and what to call it (`host`)."""

    scheme: str
    host: str
    port: int
    path: str          # path plus query, never empty
    addresses: tuple[str, ...]  # every address the name resolved to, all vetted; tried in order

    @property
    def address(self) -> str:
        return self.addresses[0]

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


@dataclass(frozen=True)
class AllowList:
    names: frozenset[str]
    networks: tuple[IPNetwork, ...]


def parse_allow_list(entries: Collection[str]) -> AllowList:
    """Host names (exact, case-insensitive), IP addresses or CIDR ranges the deployment allows."""
    names: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in entries:
        text = entry.strip().lower().rstrip(".")
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            names.add(text)
    return AllowList(names=frozenset(names), networks=tuple(networks))


def _describe(address: IPAddress) -> str | None:
    """Why an address is internal (loopback, link-local, ...), or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _describe(address.ipv4_mapped)
    checks = (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    )
    for word, hit in checks:
        if hit:
            return word
    # Shared address space (100.64/10), documentation ranges and the like are not global either.
    return None if address.is_global else "non-public"


def allowed_address(address: str, *, host: str, allow: AllowList) -> str | None:
    """Why connecting to `address` (resolved from `host`) is refused, or None when it may be called."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    why = _describe(ip)
    if why is None:
        return None
    if host.lower().rstrip(".") in allow.names or any(ip in network for network in allow.networks):
        return None
    return f"{why} address {ip}"


def check_url(url: str, *, allow: AllowList, resolve: Resolver = socket.getaddrinfo) -> Target:
    """Vet `url`: http(s) only, no credentials, every resolved address public or allowed.

    Raises Refused with a one-line reason; a host that does not resolve is refused too
    (the caller decides whether that is worth retrying).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"webhook url is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise Refused(f'webhook url must be http or https, not "{scheme or "(none)"}"')
    if parts.username is not None or parts.password is not None:
        raise Refused("webhook url must not carry credentials; use the signing secret")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise Refused("webhook url has no host")
    port = port or (443 if scheme == "https" else 80)
    try:
        infos = resolve(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolved(f"webhook host {host} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise Unresolved(f"webhook host {host} does not resolve")
    for address in addresses:
        why = allowed_address(address, host=host, allow=allow)
        if why is not None:
            raise Refused(f"webhook host {host} resolves to a {why}; refused unless listed in "
                          "[connectors.webhook] allow_hosts")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme=scheme, host=host, port=port, path=path, addresses=tuple(addresses))
