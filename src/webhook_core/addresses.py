"""Which IP addresses a webhook may be sent to, however the address is written.

Theory of operation
-------------------
A webhook sender dials URLs that strangers typed in, so before it connects it
vets the address it is about to connect to. ``parse_host`` turns a URL host
into an IP address when it is one, in any spelling a resolver or browser
accepts: the odd IPv4 notations (``2130706433``, ``0x7f.1``, ``017700000001``,
``127.1``), bracketed IPv6 and IPv6 with a zone id (``fe80::1%eth0``). A DNS
name gives ``None``; the driver resolves it and vets every address it gets.

``vet_address`` decides. It does not trust ``ipaddress.is_global`` (which
calls ``64:ff9b::7f00:1``, ``::127.0.0.1``, ``2002:7f00:1::`` and the Azure
metadata address ``168.63.129.16`` global): it checks the special-purpose
blocks of the IANA registries itself, and for IPv6 forms that carry an IPv4
address inside (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) it vets the
IPv4 address as well. An address is allowed when it is ordinary global
unicast, or when it falls in one of the operator's ``allowed_networks``; cloud
metadata addresses are refused even then. Every verdict carries a reason that
says which rule decided.
"""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Iterable

import attrs

from webhook_core.errors import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata and platform services of the big clouds. Reaching one from a
# webhook sender hands out the host's credentials, so no setting lets them through.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle, ... IMDS
        "169.254.170.2",  # AWS ECS task metadata and credentials
        "169.254.170.23",  # AWS EKS Pod Identity agent
        "169.254.169.253",  # AWS VPC DNS resolver
        "169.254.169.123",  # AWS time sync
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS EKS Pod Identity agent over IPv6
        "fd00:ec2::253",  # AWS VPC DNS resolver over IPv6
        "168.63.129.16",  # Azure WireServer (a public address)
        "100.100.100.200",  # Alibaba Cloud metadata
        "192.0.0.192",  # Oracle Cloud legacy metadata
    )
)


def _blocks(*rows: tuple[str, str]) -> tuple[tuple[Network, str], ...]:
    return tuple((ipaddress.ip_network(cidr), label) for cidr, label in rows)


# IANA IPv4 Special-Purpose Address Registry, the blocks not globally reachable.
_IPV4_REFUSED = _blocks(
    ("0.0.0.0/8", "'this network' (connecting to it reaches the local host)"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "carrier-grade NAT (shared address space)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved for IETF protocol assignments"),
    ("192.0.2.0/24", "reserved for documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved for benchmarking"),
    ("198.51.100.0/24", "reserved for documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "reserved for documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("240.0.0.0/4", "reserved"),
)

# IANA IPv6 Special-Purpose Address Registry and the address architecture. The
# blocks that embed an IPv4 address come first so that their reason names it.
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIXTOFOUR = ipaddress.IPv6Network("2002::/16")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_IPV6_REFUSED = _blocks(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001:db8::/32", "reserved for documentation"),
    ("2001::/23", "reserved for IETF protocol assignments"),
    ("3fff::/20", "reserved for documentation"),
    ("5f00::/16", "reserved for SRv6 segment identifiers"),
    ("fc00::/7", "unique local (private)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "deprecated site-local"),
    ("ff00::/8", "multicast"),
)


@attrs.frozen
class AddressVerdict:
    """Whether ``address`` may be connected to, and why."""

    address: IPAddress
    allowed: bool
    reason: str


def vet_address(address: IPAddress, allowed_networks: Iterable[Network] = ()) -> AddressVerdict:
    """Decide whether a webhook may be sent to ``address``.

    Refused: loopback, private, link-local, carrier-grade NAT, multicast,
    reserved, unspecified, benchmarking and documentation ranges, cloud
    metadata addresses, and IPv6 addresses that embed a refused IPv4 address.
    ``allowed_networks`` let addresses through (for an IPv4-mapped IPv6
    address, its IPv4 address is matched too), except metadata addresses.
    """
    plain = _without_zone(address)
    networks = tuple(allowed_networks)
    metadata = _metadata_reason(plain)
    if metadata is not None:
        return AddressVerdict(address, False, metadata)
    if _in_any(plain, networks):
        return AddressVerdict(address, True, f"{plain} is in an allowed network")
    reason = _refusal(plain, networks)
    if reason is not None:
        return AddressVerdict(address, False, reason)
    return AddressVerdict(address, True, f"{plain} is a public address")


def _without_zone(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return ipaddress.IPv6Address(int(address))
    return address


def _metadata_reason(address: IPAddress) -> str | None:
    if address in METADATA_ADDRESSES:
        return f"{address} is a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        for kind, inner in _embedded(address):
            if inner in METADATA_ADDRESSES:
                return f"{address} embeds ({kind}) {inner}, a cloud metadata address"
    return None


def _in_any(address: IPAddress, networks: tuple[Network, ...]) -> bool:
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(a.version == n.version and a in n for a in candidates for n in networks)


def _embedded(address: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, with the name of the form."""
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _MAPPED:
        return [("IPv4-mapped", low)]
    if address in _TRANSLATED:
        return [("IPv4-translated", low)]
    if address in _COMPATIBLE and int(address) > 1:
        return [("IPv4-compatible", low)]
    if address in _NAT64:
        return [("NAT64", low)]
    if address in _SIXTOFOUR:
        assert address.sixtofour is not None
        return [("6to4", address.sixtofour)]
    if address in _TEREDO:
        assert address.teredo is not None
        server, client = address.teredo
        return [("Teredo server", server), ("Teredo client", client)]
    return []


def _ipv4_refusal(address: ipaddress.IPv4Address) -> str | None:
    for network, label in _IPV4_REFUSED:
        if address in network:
            return f"{label} ({network})"
    return None


def _refusal(address: IPAddress, networks: tuple[Network, ...]) -> str | None:
    """Why ``address`` is refused, or None if it is ordinary global unicast."""
    if isinstance(address, ipaddress.IPv4Address):
        label = _ipv4_refusal(address)
        return None if label is None else f"{address} is {label}"
    embedded = _embedded(address)
    for kind, inner in embedded:
        label = None if _in_any(inner, networks) else _ipv4_refusal(inner)
        if label is not None:
            return f"{address} embeds ({kind}) {inner}, which is {label}"
    if embedded and (address in _COMPATIBLE or address in _TRANSLATED):
        kind, inner = embedded[0]
        return f"{address} is a deprecated {kind} address (of {inner})"
    if address in _TEREDO:
        return f"{address} is a Teredo tunnel address (2001::/32)"
    for network, label in _IPV6_REFUSED:
        if address in network:
            return f"{address} is {label} ({network})"
    if address in _MAPPED or address in _NAT64 or address in _SIXTOFOUR:
        return None
    if address not in _GLOBAL_UNICAST:
        return f"{address} is reserved (outside global unicast 2000::/3)"
    return None


# -- host spellings -------------------------------------------------------------------

_HEX = frozenset(string.hexdigits)
_OCT = frozenset(string.octdigits)


def parse_host(host: str) -> IPAddress | None:
    """The IP address a URL host denotes, in any spelling; ``None`` for a DNS name.

    Accepts ``[v6]``, ``v6%zone`` and every IPv4 notation ``inet_aton`` and the
    WHATWG URL standard accept: one to four parts, each decimal, octal (leading
    ``0``) or hex (``0x``), the last filling the remaining bytes. A host whose
    last label is a number but which is not a valid address raises
    ``ConfigError`` (browsers refuse it too, and resolvers disagree about it).
    """
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            return ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ConfigError(f"host [{host}] is not an IPv6 address: {exc}") from None
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ConfigError(f"host {host!r} is not an IPv6 address: {exc}") from None
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    if _ipv4_part(labels[-1]) is None:
        return None
    parts = [_ipv4_part(label) for label in labels]
    numbers = [p for p in parts if p is not None]
    if len(numbers) != len(parts) or len(numbers) > 4:
        raise ConfigError(f"host {host!r} ends in a number but is not an IPv4 address")
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (4 - len(leading)):
        raise ConfigError(f"host {host!r} is an IPv4 address with a part out of range")
    value = last
    for index, number in enumerate(leading):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _ipv4_part(text: str) -> int | None:
    """One part of an IPv4 address in decimal, octal or hex; None if not a number."""
    if text[:2] in ("0x", "0X"):
        digits = text[2:]
        if not digits:
            return 0
        return int(digits, 16) if set(digits) <= _HEX else None
    if not text.isascii() or not text.isdigit():
        return None
    if len(text) > 1 and text[0] == "0":
        return int(text, 8) if set(text) <= _OCT else None
    return int(text)


def is_canonical_ip(host: str, address: IPAddress) -> bool:
    """Whether ``host`` spells ``address`` the usual way (dotted quad, or bracketed IPv6)."""
    if isinstance(address, ipaddress.IPv4Address):
        return host == str(address)
    return host.startswith("[") and "%" not in host


def parse_networks(value: str | Iterable[str | Network]) -> tuple[Network, ...]:
    """CIDR networks from a comma-separated string or an iterable; ``ConfigError`` names a bad one.

    ``"127.0.0.0/8, ::1/128"`` gives two networks; an empty string gives none.
    A network with host bits set (``10.0.0.1/8``) is refused.
    """
    items = value.split(",") if isinstance(value, str) else value
    networks: list[Network] = []
    for item in items:
        if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
            networks.append(item)
            continue
        if not isinstance(item, str):
            raise ConfigError(f"allowed network {item!r} is not a CIDR string")
        text = item.strip()
        if not text:
            if isinstance(value, str):
                continue
            raise ConfigError("allowed network '' is empty")
        try:
            networks.append(ipaddress.ip_network(text))
        except ValueError as exc:
            raise ConfigError(f"allowed network {text!r} is not a CIDR network: {exc}") from None
    return tuple(networks)
