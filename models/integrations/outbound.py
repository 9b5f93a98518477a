"""Outbound HTTP that cannot be pointed inside: the guard for webhooks and the video
metadata API (Dagster-free).

Policy. A request may go to a public address only. Refused, after DNS resolution:
loopback, link-local, private (10/8, 172.16/12, 192.168/16, fc00::/7), CGNAT
(100.64/10), unspecified, multicast, reserved/documentation ranges and cloud metadata
endpoints (169.254.169.254, fd00:ec2::254, 168.63.129.16), including the IPv6 forms
that reach an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, 6to4, NAT64) and anything else
Python does not call globally routable. Every address a host resolves to must pass, and
so must the address the socket actually connected to (`getpeername()`, checked before a
byte is sent), so a name that re-resolves to 127.0.0.1 between check and connect (DNS
rebinding) is refused too. Integer and short IPv4 forms (`http://2130706433/`,
`http://127.1/`) resolve to what they mean and are refused like the dotted form.

Allowlist. Deployment configuration, never run config: `CLIPFLOW_OUTBOUND_ALLOW`, a
comma-separated list of entries, each either
  - a CIDR or a bare IP (`10.0.0.0/8`, `127.0.0.1`, `::1`): any port on those addresses;
  - `host` or `host:port` (`localhost:8080`, `hooks.internal`, `[::1]:9000`,
    `127.0.0.1:8080`): URLs that name that host (case-insensitive; an IP literal matches
    URLs that name that IP), on that port when one is given, whatever it resolves to.
A malformed entry refuses every request with a message naming the variable (fail closed).

Checks. `check_url(url, field)` refuses (`OutboundRefused`) a URL that is not http(s) or
whose host resolves to any refused address; the message names the field, the URL's host
and the range, e.g. "webhook url: 127.0.0.1 is loopback (127.0.0.0/8); allowlist it in
CLIPFLOW_OUTBOUND_ALLOW to allow". A host that does not resolve passes (it may resolve
later); the transport (models/integrations/outbound_http.py) checks again when it
connects, on the address actually connected to.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from urllib.parse import urlsplit

import requests

ALLOW_ENV = "CLIPFLOW_OUTBOUND_ALLOW"
_HOST = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")

# First match wins: the specific entries come before the ranges that hold them.
_RANGES = [
    (ip_network(net), label)
    for net, label in [
        ("169.254.169.254/32", "a cloud metadata endpoint"),
        ("168.63.129.16/32", "the Azure WireServer metadata endpoint"),
        ("fd00:ec2::254/128", "a cloud metadata endpoint"),
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "CGNAT shared address space"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved for IETF protocol assignments"),
        ("192.0.2.0/24", "reserved for documentation"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved for benchmarking"),
        ("198.51.100.0/24", "reserved for documentation"),
        ("203.0.113.0/24", "reserved for documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/8", "reserved"),
        ("100::/64", "reserved for discard-only use"),
        ("2001::/23", "reserved for IETF protocol assignments"),
        ("2001:db8::/32", "reserved for documentation"),
        ("64:ff9b:1::/48", "reserved for local-use NAT64"),
        ("fc00::/7", "unique-local private"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "reserved site-local"),
        ("ff00::/8", "multicast"),
    ]
]
_NAT64 = ip_network("64:ff9b::/96")


class OutboundError(requests.RequestException):
    """An outbound request the guard stopped (the subclasses say why)."""


class OutboundRefused(OutboundError):
    """A URL or address the policy refuses (the message names field, host and range)."""


class ResponseTooLarge(OutboundError):
    """A response body past the size limit (reading stopped there)."""


class DeadlineExceeded(OutboundError, requests.Timeout):
    """A request that did not finish within its total deadline."""


def _embedded_v4(ip: IPv6Address) -> tuple[IPv4Address, str] | None:
    """The IPv4 address an IPv6 address reaches, with the form's name, if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    if ip in _NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    return None


def forbidden_range(address: str | IPv4Address | IPv6Address) -> str | None:
    """Why an address is refused, e.g. "loopback (127.0.0.0/8)"; None for a public one."""
    ip = ip_address(str(address).split("%", 1)[0])  # a scope id (fe80::1%eth0) is dropped
    if ip.version == 6 and (embedded := _embedded_v4(ip)) is not None:
        v4, form = embedded
        reason = forbidden_range(v4)
        return f"{reason}, {form}" if reason else None
    for net, label in _RANGES:
        if ip.version == net.version and ip in net:
            return f"{label} ({net})"
    return None if ip.is_global else "reserved (not globally routable)"


@dataclass(frozen=True)
class Allowlist:
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    hosts: tuple[tuple[str, int | None], ...] = ()  # (normalized host, port or None: any)

    def allows_host(self, host: str, port: int) -> bool:
        host = _norm_host(host)
        return any(h == host and p in (None, port) for h, p in self.hosts)

    def allows_address(self, address: str) -> bool:
        ip = ip_address(address.split("%", 1)[0])
        candidates = [ip]
        if ip.version == 6 and (embedded := _embedded_v4(ip)) is not None:
            candidates.append(embedded[0])
        return any(c.version == n.version and c in n for c in candidates for n in self.networks)


def _norm_host(host: str) -> str:
    host = host.strip().strip("[]").lower().rstrip(".")
    with suppress(ValueError):
        return str(ip_address(host))
    return host


def parse_allowlist(text: str) -> Allowlist:
    """The entries of `CLIPFLOW_OUTBOUND_ALLOW` (see the module docstring); OutboundRefused
    naming the variable and the entry for a malformed one."""
    networks, hosts = [], []
    for raw in (e.strip() for e in text.split(",")):
        if not raw:
            continue
        try:
            networks.append(ip_network(raw, strict=False))
            continue
        except ValueError:
            pass
        host, port = _host_entry(raw)
        if not host:
            raise OutboundRefused(f"{ALLOW_ENV}: {raw!r} is neither a CIDR nor host[:port]")
        hosts.append((host, port))
    return Allowlist(tuple(networks), tuple(hosts))


def _host_entry(raw: str) -> tuple[str, int | None]:
    """(host, port or None) of a `host[:port]` / `[v6]:port` entry; ("", None) if malformed."""
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", raw)
    if not match:
        return "", None
    host = _norm_host(match.group(1) or match.group(3))
    port_text = match.group(2) or match.group(4)
    port = int(port_text) if port_text else None
    if not (_HOST.match(host) or _is_ip(host)) or (port is not None and not 0 < port < 65536):
        return "", None
    return host, port


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def allowlist(environ: Mapping[str, str] | None = None) -> Allowlist:
    """The operator's allowlist from `CLIPFLOW_OUTBOUND_ALLOW` (empty when unset)."""
    return parse_allowlist((os.environ if environ is None else environ).get(ALLOW_ENV, ""))


def _target(url: str, field: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused(f"{field}: an http:// or https:// URL with a host is required")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise OutboundRefused(f"{field}: the port is not a number in 1-65535") from None
    return parts.hostname, port


def _refusal(field: str, host: str, address: str, reason: str) -> OutboundRefused:
    same = _norm_host(address) == _norm_host(host)
    subject = host if same else f"{host} resolves to {address}, which"
    return OutboundRefused(f"{field}: {subject} is {reason}; allowlist it in {ALLOW_ENV} to allow")


def check_address(field: str, host: str, port: int, address: str, allow: Allowlist) -> None:
    """OutboundRefused unless `address` (one of `host`'s) may be reached on `port`."""
    if allow.allows_host(host, port) or allow.allows_address(address):
        return
    reason = forbidden_range(address)
    if reason is not None:
        raise _refusal(field, host, address, reason)


def check_url(
    url: str,
    field: str,
    environ: Mapping[str, str] | None = None,
    allow: Allowlist | None = None,
) -> list[str]:
    """Refuse (OutboundRefused) a URL that is not http(s) or whose host resolves to any
    refused address; the resolved addresses, or [] for a host that does not resolve now
    (it is checked again when connecting). `allow` defaults to `environ`'s allowlist."""
    allow = allowlist(environ) if allow is None else allow
    host, port = _target(url, field)
    if allow.allows_host(host, port):
        return []
    try:
        infos = socket.getaddrinfo(host.rstrip("."), port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        check_address(field, host, port, address, allow)
    return addresses
