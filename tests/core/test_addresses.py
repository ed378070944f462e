"""Address vetting in the core: every spelling of a host, every special-purpose block."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook_core import ConfigError
from webhook_core.addresses import (
    METADATA_ADDRESSES,
    is_canonical_ip,
    parse_host,
    parse_networks,
    vet_address,
)

LOOPBACK = ipaddress.IPv4Address("127.0.0.1")

SPELLINGS = {
    "127.0.0.1": LOOPBACK,
    "127.0.0.1.": LOOPBACK,
    "2130706433": LOOPBACK,
    "0x7f000001": LOOPBACK,
    "0X7F000001": LOOPBACK,
    "017700000001": LOOPBACK,
    "0x7f.1": LOOPBACK,
    "127.1": LOOPBACK,
    "127.0.1": LOOPBACK,
    "0177.0.0.01": LOOPBACK,
    "0x7f.0.0.0x1": LOOPBACK,
    "0": ipaddress.IPv4Address("0.0.0.0"),
    "0x": ipaddress.IPv4Address("0.0.0.0"),
    "169.254.43518": ipaddress.IPv4Address("169.254.169.254"),
    "0xa9fea9fe": ipaddress.IPv4Address("169.254.169.254"),
    "2852039166": ipaddress.IPv4Address("169.254.169.254"),
    "10.1": ipaddress.IPv4Address("10.0.0.1"),
    "[::1]": ipaddress.IPv6Address("::1"),
    "::1": ipaddress.IPv6Address("::1"),
    "[::ffff:127.0.0.1]": ipaddress.IPv6Address("::ffff:7f00:1"),
    "[::127.0.0.1]": ipaddress.IPv6Address("::7f00:1"),
    "[64:ff9b::127.0.0.1]": ipaddress.IPv6Address("64:ff9b::7f00:1"),
    "fe80::1%eth0": ipaddress.IPv6Address("fe80::1%eth0"),
}


@pytest.mark.parametrize(("host", "address"), SPELLINGS.items(), ids=SPELLINGS.keys())
def test_every_spelling_of_an_address_is_recognised(
    host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> None:
    assert parse_host(host) == address
    assert not vet_address(address).allowed


@pytest.mark.parametrize(
    "host",
    ["2130706433", "0x7f.1", "017700000001", "127.1", "0177.0.0.01", "0xa9fea9fe", "10.1"],
)
def test_odd_ipv4_spellings_match_the_c_library(host: str) -> None:
    # inet_aton is what getaddrinfo and many HTTP clients fall back on.
    assert parse_host(host) == ipaddress.IPv4Address(socket.inet_aton(host))


@pytest.mark.parametrize(
    "host", ["example.com", "localhost", "1e100.net", "xn--bcher-kva.example", "a.b-c.d", "0x7g"]
)
def test_dns_names_are_not_addresses(host: str) -> None:
    assert parse_host(host) is None


@pytest.mark.parametrize(
    "host",
    ["256.0.0.1", "1.2.3.4.5", "example.123", "08.1", "0x1g.1", "1..2", "4294967296", "1.16777216"],
)
def test_a_host_that_ends_in_a_number_must_be_a_valid_address(host: str) -> None:
    with pytest.raises(ConfigError, match=host.replace(".", r"\.")):
        parse_host(host)


@pytest.mark.parametrize("host", ["[::1", "[example.com]", "fe80::zz", "[1.2.3.4]", "[1::2::3]"])
def test_malformed_ipv6_hosts_are_refused(host: str) -> None:
    with pytest.raises(ConfigError, match="IPv6"):
        parse_host(host)


@given(st.integers(0, 2**32 - 1))
def test_every_ipv4_notation_gives_the_same_address(value: int) -> None:
    address = ipaddress.IPv4Address(value)
    a, b, c, d = address.packed
    for spelling in (
        str(value),
        hex(value),
        "0" + oct(value)[2:],
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"{a}.{b}.{(c << 8) | d}",
        f"{hex(a)}.{oct(b).replace('0o', '0')}.{c}.{hex(d)}",
    ):
        assert parse_host(spelling) == address, spelling


REFUSED = {
    # IPv4 special-purpose blocks
    "0.0.0.0": "this network",
    "0.1.2.3": "this network",
    "10.0.0.1": "private",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.168.1.1": "private",
    "100.64.0.1": "carrier-grade NAT",
    "100.127.255.254": "carrier-grade NAT",
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "169.254.1.1": "link-local",
    "192.0.0.8": "IETF protocol assignments",
    "192.0.2.1": "documentation",
    "198.51.100.7": "documentation",
    "203.0.113.9": "documentation",
    "198.18.0.1": "benchmarking",
    "198.19.255.255": "benchmarking",
    "192.88.99.1": "6to4 relay",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "broadcast",
    # cloud metadata
    "169.254.169.254": "metadata",
    "169.254.170.2": "metadata",
    "fd00:ec2::254": "metadata",
    "100.100.100.200": "metadata",
    "168.63.129.16": "metadata",
    "192.0.0.192": "metadata",
    # IPv6 special-purpose blocks
    "::": "unspecified",
    "::1": "loopback",
    "fe80::1": "link-local",
    "fc00::1": "unique local",
    "fd12:3456::1": "unique local",
    "fec0::1": "site-local",
    "ff02::1": "multicast",
    "100::1": "discard-only",
    "2001:db8::1": "documentation",
    "3fff::1": "documentation",
    "2001:2::1": "IETF protocol assignments",
    "5f00::1": "SRv6",
    "64:ff9b:1::a00:1": "local-use NAT64",
    "4000::1": "outside global unicast",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "Teredo",
    # IPv6 forms that carry an IPv4 address
    "::ffff:127.0.0.1": "IPv4-mapped) 127.0.0.1, which is loopback",
    "::ffff:10.0.0.1": "IPv4-mapped) 10.0.0.1, which is private",
    "::ffff:169.254.169.254": "metadata",
    "::127.0.0.1": "IPv4-compatible) 127.0.0.1, which is loopback",
    "::8.8.8.8": "deprecated IPv4-compatible",
    "::ffff:0:127.0.0.1": "IPv4-translated) 127.0.0.1",
    "64:ff9b::127.0.0.1": "NAT64) 127.0.0.1, which is loopback",
    "64:ff9b::10.1.2.3": "NAT64) 10.1.2.3, which is private",
    "64:ff9b::a9fe:a9fe": "metadata",
    "2002:7f00:1::": "6to4) 127.0.0.1, which is loopback",
    "2002:c0a8:101::1": "6to4) 192.168.1.1, which is private",
    "2002:a9fe:a9fe::": "metadata",
    "2001:0:4136:e378:8000:63bf:80ff:fffe": "Teredo client) 127.0.0.1",
    "fe80::1%eth0": "link-local",
}


@pytest.mark.parametrize(("address", "reason"), REFUSED.items(), ids=REFUSED.keys())
def test_special_purpose_addresses_are_refused_with_a_reason(address: str, reason: str) -> None:
    verdict = vet_address(ipaddress.ip_address(address))
    assert not verdict.allowed
    assert reason in verdict.reason


ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",
    "100.128.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2002:808:808::1",
]


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    verdict = vet_address(ipaddress.ip_address(address))
    assert verdict.allowed
    assert "public" in verdict.reason


# What ``ipaddress.is_global`` gets wrong on this Python: each of these reports global,
# yet reaches the loopback, a metadata service or a range that is not routed.
IS_GLOBAL_WRONG = [
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "::127.0.0.1",  # IPv4-compatible 127.0.0.1
    "::ffff:0:7f00:1",  # IPv4-translated 127.0.0.1
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
    "168.63.129.16",  # Azure WireServer
    "192.0.0.192",  # Oracle Cloud metadata
    "192.88.99.1",  # deprecated 6to4 relay anycast
    "3fff::1",  # documentation (RFC 9637)
    "5f00::1",  # SRv6 SIDs (RFC 9602)
    "fec0::1",  # deprecated site-local
    "64:ff9b:1::a00:1",  # local-use NAT64 of 10.0.0.1
]


@pytest.mark.parametrize("address", IS_GLOBAL_WRONG)
def test_addresses_is_global_wrongly_calls_global_are_refused(address: str) -> None:
    parsed = ipaddress.ip_address(address)
    assert parsed.is_global  # what the standard library says...
    assert not vet_address(parsed).allowed  # ...and what the guard decides


def test_is_global_cannot_read_odd_spellings_at_all() -> None:
    for host in ("0x7f.1", "2130706433", "127.1"):
        with pytest.raises(ValueError):
            ipaddress.ip_address(host)
        assert parse_host(host) == LOOPBACK


@given(st.integers(0, 2**32 - 1))
def test_embedding_forms_get_the_verdict_of_the_ipv4_address(value: int) -> None:
    inner = ipaddress.IPv4Address(value)
    expected = vet_address(inner).allowed
    for outer in (
        ipaddress.IPv6Address(f"::ffff:{inner}"),
        ipaddress.IPv6Address(f"64:ff9b::{inner}"),
        ipaddress.IPv6Address((0x2002 << 112) | (value << 80) | 1),
    ):
        assert vet_address(outer).allowed is expected, (outer, inner)


def test_allowed_networks_let_addresses_through() -> None:
    networks = parse_networks("127.0.0.0/8, ::1/128, 10.20.0.0/16")
    for address in ("127.0.0.1", "127.9.9.9", "::1", "10.20.3.4", "::ffff:127.0.0.1"):
        verdict = vet_address(ipaddress.ip_address(address), networks)
        assert verdict.allowed, address
        assert "allowed network" in verdict.reason
    for address in ("10.21.0.1", "192.168.0.1", "::2", "64:ff9b::10.0.0.1"):
        assert not vet_address(ipaddress.ip_address(address), networks).allowed, address


def test_a_nat64_address_is_allowed_when_its_ipv4_network_is() -> None:
    networks = parse_networks("10.20.0.0/16")
    assert vet_address(ipaddress.ip_address("64:ff9b::10.20.0.1"), networks).allowed


@pytest.mark.parametrize("address", sorted(METADATA_ADDRESSES, key=str))
def test_metadata_addresses_are_refused_even_inside_allowed_networks(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    everything = parse_networks("0.0.0.0/0,::/0")
    verdict = vet_address(address, everything)
    assert not verdict.allowed
    assert "metadata" in verdict.reason


def test_everything_else_passes_when_all_networks_are_allowed() -> None:
    everything = parse_networks(["0.0.0.0/0", "::/0"])
    assert vet_address(LOOPBACK, everything).allowed
    assert vet_address(ipaddress.ip_address("fe80::1%eth0"), everything).allowed


@pytest.mark.parametrize(
    ("value", "bad"),
    [
        ("127.0.0.0/8,10.0.0.1/8", "10.0.0.1/8"),
        ("localhost", "localhost"),
        ("127.0.0.0/33", "127.0.0.0/33"),
        ("::1/129", "::1/129"),
        ("10.0.0.0/8;192.168.0.0/16", "10.0.0.0/8;192.168.0.0/16"),
    ],
)
def test_bad_networks_are_named(value: str, bad: str) -> None:
    with pytest.raises(ConfigError, match=f"allowed network '{bad}'"):
        parse_networks(value)


def test_network_lists() -> None:
    assert parse_networks("") == ()
    assert parse_networks(" 127.0.0.0/8 , ") == (ipaddress.ip_network("127.0.0.0/8"),)
    assert parse_networks(["10.0.0.0/8"]) == (ipaddress.ip_network("10.0.0.0/8"),)
    assert parse_networks([ipaddress.ip_network("::1/128")]) == (ipaddress.ip_network("::1"),)
    with pytest.raises(ConfigError, match="not a CIDR string"):
        parse_networks([5])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="empty"):
        parse_networks([""])


def test_canonical_spellings() -> None:
    assert is_canonical_ip("127.0.0.1", LOOPBACK)
    assert not is_canonical_ip("127.1", LOOPBACK)
    assert not is_canonical_ip("2130706433", LOOPBACK)
    assert is_canonical_ip("[::1]", ipaddress.IPv6Address("::1"))
    assert not is_canonical_ip("[fe80::1%eth0]", ipaddress.IPv6Address("fe80::1%eth0"))
