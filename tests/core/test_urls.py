"""Registration-time checks of endpoint URLs and custom headers, beyond the basics.

The basic cases (schemes, user info, fragments, ports, whitespace) are in
``test_endpoint_machine.py``; these are the hostile and unusual spellings.
"""

from __future__ import annotations

import pytest

from webhook_core import ConfigError, validate_headers, validate_url


def fullwidth(text: str) -> str:
    """``text`` in fullwidth forms (which IDNA maps back to ASCII)."""
    return "".join(chr(ord(c) + 0xFEE0) if c != "." else c for c in text)


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://bücher.example/hook", "https://xn--bcher-kva.example/hook"),
        ("https://BÜCHER.example:8443/a?b=1", "https://xn--bcher-kva.example:8443/a?b=1"),
        ("https://münchen.de./x", "https://xn--mnchen-3ya.de./x"),
        ("https://" + fullwidth("EXAMPLE") + ".com/", "https://example.com/"),
        ("https://xn--bcher-kva.example/", "https://xn--bcher-kva.example/"),
        ("https://example.com./hook", "https://example.com./hook"),
        ("https://a-b_c.example.com/", "https://a-b_c.example.com/"),
        ("https://[2001:db8::1]/", "https://[2001:db8::1]/"),
        ("https://[::ffff:1.2.3.4]:8443/", "https://[::ffff:1.2.3.4]:8443/"),
        ("https://93.184.215.14/", "https://93.184.215.14/"),
    ],
)
def test_hosts_are_accepted_in_the_form_that_is_dialled(url: str, normalised: str) -> None:
    assert validate_url(url) == normalised


@pytest.mark.parametrize(
    ("url", "message"),
    [
        # IPv4 addresses spelled the way resolvers accept but people do not write
        ("https://2130706433/", "spells the IP address 127.0.0.1 unusually"),
        ("https://0x7f.1/", "write it as 127.0.0.1"),
        ("https://017700000001/", "127.0.0.1"),
        ("https://127.1/", "127.0.0.1"),
        ("https://0/", "0.0.0.0"),
        ("https://0xa9fea9fe/latest/meta-data/", "169.254.169.254"),
        ("https://" + fullwidth("127.0.0.1") + "/", "127.0.0.1"),
        ("https://256.1.1.1/", "part out of range"),
        ("https://1.2.3.4.5/", "not an IPv4 address"),
        ("https://example.123/", "not an IPv4 address"),
        # IPv6
        ("https://[fe80::1%25eth0]/", "zone id"),
        ("https://[fe80::1%eth0]/", "zone id"),
        ("https://[::1/", "malformed"),
        ("https://[example.com]/", "malformed"),
        ("https://[::1]x/", "malformed"),
        ("https://::1/", "not in brackets"),
        # names
        ("https://exa_mple..com/", "empty label"),
        ("https://-example.com/", "starts or ends with '-'"),
        ("https://example-.com/", "starts or ends with '-'"),
        ("https://" + "a" * 64 + ".com/", "label longer than 63"),
        ("https://" + "a." * 127 + "com/", "longer than 253"),
        ("https://exa%6dple.com/", "character '%'"),
        ("https://example.com\\.evil.com/", "character '\\\\'"),
        ("https://xn--zz.example/", "not a valid internationalised name"),
        ("https://☃.net/", "not a valid internationalised name"),
        ("https://ex!ample.com/", "character '!'"),
        # authority tricks
        ("https://example.com\\@evil.com/", "user info"),
        ("https://example.com:443@evil.com/", "user info"),
        ("https://example.com:/", "not a number"),
        ("https://example.com:+443/", "not a number"),
        ("https://example.com:0443/", None),
        ("https://example.com:000000443/", "not a number"),
        ("https://example.com/\u0085", "control"),
        ("https://example.com/\u2028", "spaces"),
        ("https://example.com/\u3000", "spaces"),
        ("https:example.com/", "no host"),
        ("https://example.com/é", "non-ASCII"),
        ("javascript://example.com/", "must use https"),
        ("file:///etc/passwd", "must use https"),
        ("gopher://127.0.0.1:6379/_FLUSHALL", "must use https"),
    ],
)
def test_hostile_and_malformed_urls_are_refused(url: str, message: str | None) -> None:
    if message is None:
        assert validate_url(url) == url
        return
    with pytest.raises(ConfigError) as caught:
        validate_url(url)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "name",
    [
        "Content-Encoding",
        "content-md5",
        "Content-Disposition",
        "Keep-Alive",
        "TE",
        "Trailer",
        "Upgrade",
        "Expect",
        "Proxy-Authorization",
        "proxy-connection",
        "Webhook-Version",
        "X-Netasampark-Anything",
    ],
)
def test_header_families_owned_by_the_library_or_the_framing_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="set by the library"):
        validate_headers({name: "x"})


def test_ordinary_custom_headers_pass() -> None:
    headers = {"Authorization": "Bearer t0k", "X-Tenant": "acme", "Contented": "yes"}
    assert validate_headers(headers) == tuple(headers.items())


def test_registration_stores_the_idna_form_and_refuses_bad_input_without_storing() -> None:
    from transports.driving import operations
    from transports.stores.memory import MemoryStore

    store = MemoryStore()
    endpoint = operations.add_endpoint(store, "https://bücher.example/hook", 1_700_000_000.0)
    assert endpoint.url == "https://xn--bcher-kva.example/hook"
    changed = operations.change_endpoint(
        store, endpoint.id, 1_700_000_001.0, url="https://münchen.de/hook"
    )
    assert changed.url == "https://xn--mnchen-3ya.de/hook"
    with pytest.raises(ConfigError, match="unusually"):
        operations.add_endpoint(store, "https://0x7f.1/hook", 1_700_000_002.0)
    with pytest.raises(ConfigError, match="set by the library"):
        operations.add_endpoint(
            store, "https://example.com/", 1_700_000_003.0, headers={"Content-Encoding": "gzip"}
        )
    assert [e.url for e in store.list_endpoints()] == [changed.url]
