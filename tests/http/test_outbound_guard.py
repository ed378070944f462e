"""The outbound guard in the real transports: every connection over real loopback sockets.

Each test runs once per transport: the async one under trio and under asyncio
(through the async driver's ``send_with_deadline``) and the blocking one
(through the threaded driver's). The default policy refuses loopback, so the
tests that expect a delivery allow 127.0.0.0/8 explicitly.
"""

from __future__ import annotations

import gzip
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import anyio
import httpcore
import pytest

import transports.aio.service
import transports.sync.service
from transports.aio.clock import AnyioClock
from transports.clocks import SystemClock
from transports.http.guard import (
    BlockedAddress,
    OutboundPolicy,
    resolve_vetted,
    resolve_vetted_sync,
    vetted,
)
from transports.http.httpx_transport import HttpxSyncTransport, HttpxTransport
from transports.testing import (
    LOOPBACK_NETWORKS,
    CloseWithoutResponse,
    Drip,
    Garbage,
    LoopbackReceiver,
    Reset,
    Respond,
)
from webhook_core import AttemptResult, ConfigError, HttpRequest, Outcome

KINDS = ("trio", "asyncio", "sync")
STRICT = OutboundPolicy(allow_http=True)  # the receivers here speak plain http
LOOPBACK = OutboundPolicy(LOOPBACK_NETWORKS, allow_http=True)

each_transport = pytest.mark.parametrize("kind", KINDS)


def deliver(
    kind: str, url: str, policy: OutboundPolicy = LOOPBACK, timeout: float = 5.0, **options: Any
) -> tuple[AttemptResult, bytes]:
    """POST a small body to ``url`` with a fresh transport of ``kind`` under ``policy``."""
    request = HttpRequest(url, (("content-type", "application/json"),), b"{}", timeout)
    if kind == "sync":
        http = HttpxSyncTransport(policy=policy, **options)
        try:
            return transports.sync.service.send_with_deadline(http, request, SystemClock())
        finally:
            http.close()

    async def main() -> tuple[AttemptResult, bytes]:
        transport = HttpxTransport(policy=policy, **options)
        try:
            return await transports.aio.service.send_with_deadline(transport, request, AnyioClock())
        finally:
            await transport.aclose()

    result: tuple[AttemptResult, bytes] = anyio.run(main, backend=kind)
    return result


@pytest.fixture
def rx() -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver() as receiver:
        yield receiver


def blocked(result: AttemptResult, *words: str) -> None:
    assert result.error_kind is Outcome.BLOCKED, result
    for word in words:
        assert word in (result.error or ""), result.error


# -- the address guard ------------------------------------------------------------------


@each_transport
def test_loopback_is_refused_by_default(kind: str, rx: LoopbackReceiver) -> None:
    result, _ = deliver(kind, rx.url("/hook"), STRICT)
    blocked(result, "127.0.0.1 is loopback")
    assert rx.requests == []


@each_transport
def test_loopback_is_reached_when_allowed(kind: str, rx: LoopbackReceiver) -> None:
    result, body = deliver(kind, rx.url("/hook"))
    assert result.status == 200 and body == b"OK"
    assert [r.path for r in rx.requests] == ["/hook"]


@each_transport
@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "017700000001", "127.1", "0x7f000001"])
def test_odd_spellings_of_loopback_are_refused_and_reach_it_only_when_allowed(
    kind: str, rx: LoopbackReceiver, host: str
) -> None:
    url = f"http://{host}:{rx.port}/hook"
    result, _ = deliver(kind, url, STRICT)
    blocked(result, "127.0.0.1 is loopback")
    assert rx.requests == []
    result, _ = deliver(kind, url)
    assert result.status == 200
    assert len(rx.requests) == 1


@each_transport
def test_a_name_that_resolves_to_loopback_is_refused(kind: str, rx: LoopbackReceiver) -> None:
    result, _ = deliver(kind, f"http://localhost:{rx.port}/hook", STRICT)
    blocked(result, "refused to connect to localhost: 127.0.0.1 is loopback")
    assert rx.requests == []


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("[::ffff:127.0.0.1]", "IPv4-mapped"),
        ("[::1]", "loopback"),
        ("[64:ff9b::7f00:1]", "NAT64"),
        ("169.254.169.254", "metadata"),
        ("[fd00:ec2::254]", "metadata"),
        ("0.0.0.0", "this network"),
        ("10.0.0.1", "private"),
    ],
)
@each_transport
def test_refused_addresses_are_never_dialled(kind: str, host: str, reason: str) -> None:
    # No listener is needed: a refused address must fail before any connect.
    result, _ = deliver(kind, f"http://{host}:9/hook", STRICT, timeout=2.0)
    blocked(result, reason)


@each_transport
def test_metadata_is_refused_even_when_every_network_is_allowed(kind: str) -> None:
    everything = OutboundPolicy("0.0.0.0/0,::/0", allow_http=True)
    result, _ = deliver(kind, "http://169.254.169.254/latest/meta-data/", everything, 2.0)
    blocked(result, "metadata")


@each_transport
def test_plain_http_is_refused_unless_allowed(kind: str, rx: LoopbackReceiver) -> None:
    https_only = OutboundPolicy(LOOPBACK_NETWORKS)
    result, _ = deliver(kind, rx.url("/hook"), https_only)
    blocked(result, "plain http is not allowed")
    assert rx.requests == []


@each_transport
def test_redirects_are_not_followed(kind: str, rx: LoopbackReceiver) -> None:
    rx.route("/hook", Respond(302, b"", (("Location", rx.url("/elsewhere")),)))
    result, _ = deliver(kind, rx.url("/hook"))
    assert result.status == 302
    assert [r.path for r in rx.requests] == ["/hook"]


@each_transport
def test_proxy_variables_in_the_environment_are_ignored(
    kind: str, rx: LoopbackReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LoopbackReceiver() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.url())
        monkeypatch.setenv("NO_PROXY", "")
        result, _ = deliver(kind, rx.url("/hook"))
        assert result.status == 200
        assert proxy.requests == []
    assert len(rx.requests) == 1


@each_transport
def test_an_explicit_proxy_gets_only_targets_that_pass_the_guard(kind: str) -> None:
    # The loopback receiver plays the forward proxy: it records the absolute-form
    # target it was asked for; nothing leaves the machine.
    with LoopbackReceiver() as proxy:
        policy = OutboundPolicy(allow_http=True, proxy=proxy.url())
        result, _ = deliver(kind, "http://10.1.2.3/hook", policy)
        blocked(result, "10.1.2.3 is private")
        assert proxy.requests == []
        result, _ = deliver(kind, "http://93.184.215.14/hook", policy)
        assert result.status == 200
        [forwarded] = proxy.requests
        assert forwarded.path == "http://93.184.215.14/hook"


# -- response handling --------------------------------------------------------------------


@each_transport
def test_only_the_first_64_kib_of_a_body_are_read(kind: str, rx: LoopbackReceiver) -> None:
    rx.route("/hook", Respond(200, b"x" * (4 * 1024 * 1024)))
    result, body = deliver(kind, rx.url("/hook"))
    assert result.status == 200
    assert body == b"x" * (64 * 1024)


@each_transport
def test_bodies_are_never_decompressed(kind: str, rx: LoopbackReceiver) -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))  # 64 MiB of zeros in about 64 KiB
    rx.route("/hook", Respond(200, bomb, (("Content-Encoding", "gzip"),)))
    result, body = deliver(kind, rx.url("/hook"))
    assert result.status == 200
    assert body == bomb[: 64 * 1024]


@each_transport
def test_a_huge_response_head_is_a_protocol_error(kind: str, rx: LoopbackReceiver) -> None:
    headers = tuple((f"X-Filler-{i}", "y" * 1000) for i in range(200))
    rx.route("/hook", Respond(200, b"OK", headers))
    result, _ = deliver(kind, rx.url("/hook"))
    assert result.error_kind is Outcome.PROTOCOL_ERROR, result


@pytest.mark.parametrize(
    ("behaviour", "kinds"),
    [
        (Garbage(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"), {Outcome.PROTOCOL_ERROR}),
        (Garbage(b"HTTP/1.1 abc Nope\r\n\r\n"), {Outcome.PROTOCOL_ERROR}),
        (Garbage(b"\x00\xff" * 1000), {Outcome.PROTOCOL_ERROR}),
        (Garbage(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), {Outcome.NETWORK_ERROR}),
        (Reset(), {Outcome.NETWORK_ERROR}),
        (CloseWithoutResponse(), {Outcome.NETWORK_ERROR}),
    ],
    ids=["ssh-banner", "bad-status", "binary", "short-body", "reset", "closed"],
)
@each_transport
def test_broken_receivers_are_failed_attempts(
    kind: str, rx: LoopbackReceiver, behaviour: Any, kinds: set[Outcome]
) -> None:
    rx.route("/hook", behaviour)
    result, _ = deliver(kind, rx.url("/hook"))
    assert result.error_kind in kinds, result
    assert result.error


@each_transport
def test_a_dripping_receiver_is_cut_off_at_the_total_deadline(
    kind: str, rx: LoopbackReceiver
) -> None:
    rx.route("/hook", Drip(200, b"x" * 100, interval=0.05))
    result, _ = deliver(kind, rx.url("/hook"), timeout=0.5)
    assert result.error_kind is Outcome.TIMEOUT, result


# -- resolution -------------------------------------------------------------------------


def resolve(kind: str, host: str, policy: OutboundPolicy) -> list[str]:
    if kind == "sync":
        return resolve_vetted_sync(host, 443, policy)

    async def main() -> list[str]:
        return await resolve_vetted(host, 443, policy)

    result: list[str] = anyio.run(main, backend=kind)
    return result


@each_transport
def test_resolution_vets_every_address(kind: str) -> None:
    assert resolve(kind, "localhost", LOOPBACK) == ["127.0.0.1"]
    assert resolve(kind, "0x7f.1", LOOPBACK) == ["127.0.0.1"]
    assert resolve(kind, "93.184.215.14", STRICT) == ["93.184.215.14"]
    with pytest.raises(BlockedAddress, match=r"connect to localhost: 127\.0\.0\.1 is loopback"):
        resolve(kind, "localhost", STRICT)
    with pytest.raises(BlockedAddress, match="ends in a number"):
        resolve(kind, "1.2.3.4.5", LOOPBACK)


@each_transport
def test_a_name_that_does_not_resolve_is_a_connect_error(kind: str) -> None:
    with pytest.raises(httpcore.ConnectError, match="cannot resolve"):
        resolve(kind, "no-such-host.invalid", LOOPBACK)


@each_transport
def test_the_connection_goes_to_the_address_that_was_vetted(
    kind: str, rx: LoopbackReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DNS rebinding: the first answer passes the guard, every later one points at
    # a private address. The transport must connect to what it vetted without
    # asking again. (A real rebinding DNS server cannot be put in front of the
    # system resolver here, so the resolver is replaced for this test.)
    calls: list[str] = []

    def answer(host: Any) -> Any:
        if host != "rebind.test":
            return host
        calls.append(host)
        return "127.0.0.1" if len(calls) == 1 else "10.9.9.9"

    real = socket.getaddrinfo

    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real(answer(host), *args, **kwargs)

    # Both sides look names up with socket.getaddrinfo, on the guard's threads.
    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    result, _ = deliver(kind, f"http://rebind.test:{rx.port}/hook")
    assert result.status == 200
    assert calls == ["rebind.test"]
    [request] = rx.requests
    assert request.header("host") == f"rebind.test:{rx.port}"


# -- the policy ---------------------------------------------------------------------------


def test_a_host_with_any_refused_address_is_refused() -> None:
    public = ipaddress.ip_address("93.184.215.14")
    private = ipaddress.ip_address("10.0.0.7")
    assert vetted("example.test", [public, public], STRICT) == ["93.184.215.14"]
    with pytest.raises(BlockedAddress, match=r"connect to example\.test: 10\.0\.0\.7 is private"):
        vetted("example.test", [public, private], STRICT)
    with pytest.raises(BlockedAddress, match="no addresses"):
        vetted("example.test", [], STRICT)


def test_policy_from_the_environment() -> None:
    policy = OutboundPolicy.from_env(
        {"WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8, ::1/128", "WEBHOOKS_ALLOW_HTTP": "1"}
    )
    assert policy.allow_http
    assert [str(n) for n in policy.allowed_networks] == ["127.0.0.0/8", "::1/128"]
    assert OutboundPolicy.from_env({}) == OutboundPolicy()
    with pytest.raises(ConfigError, match=r"WEBHOOKS_ALLOWED_NETWORKS: .*'10.0.0.1/8'"):
        OutboundPolicy.from_env({"WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8,10.0.0.1/8"})
    with pytest.raises(ConfigError, match=r"WEBHOOKS_ALLOW_HTTP='maybe'"):
        OutboundPolicy.from_env({"WEBHOOKS_ALLOW_HTTP": "maybe"})


def test_policy_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOKS_ALLOWED_NETWORKS", "10.0.0.0/8")
    monkeypatch.delenv("WEBHOOKS_ALLOW_HTTP", raising=False)
    policy = OutboundPolicy.from_env()
    assert not policy.allow_http
    assert policy.vet(ipaddress.ip_address("10.1.1.1")).allowed


def test_a_missing_ca_file_is_named(tmp_path: Any) -> None:
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(ConfigError, match=r"nope\.pem"):
        OutboundPolicy(ca_file=missing).ssl_context()
