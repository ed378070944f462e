"""The outbound address guard: resolve once, vet every address, connect only to a vetted one.

Theory of operation
-------------------
The HTTP transports do not let their connection pool resolve names. They give
it a network backend (``GuardedAsyncBackend`` / ``GuardedSyncBackend``) whose
``connect_tcp`` resolves the host itself (``resolve_vetted``), vets every
address with ``webhook_core.addresses.vet_address`` under the
``OutboundPolicy``, and then connects to the vetted IP addresses, in the
resolver's order, until one answers. The socket is opened to an address that
was checked, so no second lookup can hand a DNS-rebinding attacker the gap
between check and connect. TLS is unaffected: the pool still verifies the
certificate against, and sends SNI for, the host name in the URL.

A host is refused when **any** of its addresses is refused, not only when all
are: a name that resolves to one public and one private address is a rebinding
or misconfiguration signal, and which of them a connect would reach is up to
the network. The refusal is a ``BlockedAddress``, which the transports report
as a failed attempt of kind ``Outcome.BLOCKED`` naming the host, the address
and the rule.

Proxies: environment variables (``HTTPS_PROXY``, ``NO_PROXY``, ``.netrc``)
are never read. With a proxy configured explicitly the proxy opens the
connection and resolves the name itself, so the guard can only check the
target's addresses beforehand (best effort: the proxy's own lookup may
differ); the proxy must enforce egress rules of its own.

Lookups: ``socket.getaddrinfo`` has no timeout, and a stalled resolver would
hold an attempt past its deadline. Names are therefore looked up on at most
``LOOKUP_THREADS`` daemon threads of the guard's own, and callers wait for the
answer only as long as they may: the blocking side with the time left
(``httpcore.ConnectTimeout`` when it runs out), the async side until the
caller's cancel scope ends, without holding a thread while it waits. A lookup
already under way for the same host and port is joined, not repeated, so a
stalled name holds one thread however many attempts wait for it, and other
names go on being looked up on the other threads (past ``LOOKUP_THREADS``
stalled names, new lookups wait their turn, and time out). The threads are
daemons, so a lookup that never returns does not hold up the interpreter's
exit, as it would on asyncio's default executor, which ``asyncio.run`` joins;
nor does it take a thread the store's calls need from trio's default limiter.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anyio
import attrs
import certifi
import httpcore
import sniffio
import trio

from webhook_core import ConfigError
from webhook_core.addresses import (
    AddressVerdict,
    IPAddress,
    Network,
    parse_host,
    parse_networks,
    vet_address,
)

LOOKUP_THREADS = 16
ENV_ALLOWED_NETWORKS = "WEBHOOKS_ALLOWED_NETWORKS"
ENV_ALLOW_HTTP = "WEBHOOKS_ALLOW_HTTP"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


class BlockedAddress(Exception):
    """The guard refused to connect: ``detail`` names the host, the address and the rule."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _flag(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a yes/no flag (use 1 or 0)")


@attrs.frozen
class OutboundPolicy:
    """Where webhooks may be sent.

    ``allowed_networks``: CIDR networks let through the address guard (for
    example ``127.0.0.0/8`` for tests that deliver to a loopback receiver);
    cloud metadata addresses stay refused. ``allow_http``: plain ``http://``
    URLs may be registered (HTTPS only by default). ``ca_file``: a PEM bundle
    of certificate authorities trusted in addition to the public ones.
    ``proxy``: send through this proxy (never taken from the environment).
    """

    allowed_networks: tuple[Network, ...] = attrs.field(default=(), converter=parse_networks)
    allow_http: bool = False
    ca_file: str | None = None
    proxy: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OutboundPolicy:
        """The policy set by ``WEBHOOKS_ALLOWED_NETWORKS`` (comma-separated CIDRs) and
        ``WEBHOOKS_ALLOW_HTTP=1``; ``ConfigError`` names a malformed value."""
        env = os.environ if environ is None else environ
        networks = env.get(ENV_ALLOWED_NETWORKS, "")
        try:
            allowed = parse_networks(networks)
        except ConfigError as exc:
            raise ConfigError(f"{ENV_ALLOWED_NETWORKS}: {exc}") from None
        return cls(
            allowed_networks=allowed,
            allow_http=_flag(ENV_ALLOW_HTTP, env.get(ENV_ALLOW_HTTP, "")),
        )

    def vet(self, address: IPAddress) -> AddressVerdict:
        """The guard's verdict on one address under this policy."""
        return vet_address(address, self.allowed_networks)

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying TLS context: the public CAs (certifi) plus ``ca_file`` if set."""
        context = ssl.create_default_context(cafile=certifi.where())
        if self.ca_file is not None:
            try:
                context.load_verify_locations(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"CA file {self.ca_file!r} cannot be loaded: {exc}") from None
        return context


def vetted(host: str, addresses: Iterable[IPAddress], policy: OutboundPolicy) -> list[str]:
    """``addresses`` as connectable strings, or ``BlockedAddress`` if any is refused."""
    unique = list(dict.fromkeys(addresses))
    if not unique:
        raise BlockedAddress(f"{host} has no addresses")
    for address in unique:
        verdict = policy.vet(address)
        if not verdict.allowed:
            where = "" if str(address) == host else f" to {host}"
            raise BlockedAddress(f"refused to connect{where}: {verdict.reason}")
    return [str(a) for a in unique]


def _literal(host: str) -> IPAddress | None:
    try:
        return parse_host(host)
    except ConfigError as exc:
        raise BlockedAddress(f"refused to connect: {exc}") from None


def _addresses(infos: Iterable[tuple[Any, ...]]) -> list[IPAddress]:
    found: list[IPAddress] = []
    for info in infos:
        text = str(info[4][0])
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and len(info[4]) > 3 and info[4][3]:
            address = ipaddress.IPv6Address(f"{address}%{info[4][3]}")
        found.append(address)
    return found


_AddressInfo = list[tuple[Any, ...]]
_Key = tuple[str, int]


class _Lookups:
    """``getaddrinfo`` on at most ``limit`` daemon threads, one lookup per (host, port).

    A thread is started for each new lookup while fewer than ``limit`` run, and
    ends when no lookup is waiting; past the limit, lookups wait their turn.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._forget()

    def _forget(self) -> None:
        """Start empty; also in a forked child, which has none of the parent's threads."""
        self._lock = threading.Lock()
        self._pending: dict[_Key, concurrent.futures.Future[_AddressInfo]] = {}
        self._waiting: deque[_Key] = deque()
        self._threads = 0

    def lookup(self, host: str, port: int) -> concurrent.futures.Future[_AddressInfo]:
        """The answer for ``host``, ``port``, from the lookup under way or a new one."""
        key = (host, port)
        with self._lock:
            future = self._pending.get(key)
            if future is None:
                future = self._pending[key] = concurrent.futures.Future()
                self._waiting.append(key)
                if self._threads < self._limit:
                    self._threads += 1
                    threading.Thread(target=self._work, name="webhooks-lookup", daemon=True).start()
            return future

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._waiting:
                    self._threads -= 1
                    return
                key = self._waiting.popleft()
            infos: _AddressInfo = []
            error: Exception | None = None
            try:
                infos = socket.getaddrinfo(*key, type=socket.SOCK_STREAM)
            except Exception as exc:
                error = exc
            with self._lock:
                future = self._pending.pop(key)
            if error is None:
                future.set_result(infos)
            else:
                future.set_exception(error)


_LOOKUPS = _Lookups(LOOKUP_THREADS)
os.register_at_fork(after_in_child=_LOOKUPS._forget)


def _from_thread(callback: Callable[[], object]) -> Callable[[], None]:
    """``callback`` made safe to call from any thread: it then runs in this event loop."""
    schedule: Callable[[Callable[[], object]], object]
    if sniffio.current_async_library() == "trio":
        schedule = trio.lowlevel.current_trio_token().run_sync_soon
    else:
        schedule = asyncio.get_running_loop().call_soon_threadsafe

    def call() -> None:
        # A loop that has ended raises RuntimeError (trio's RunFinishedError is one);
        # nobody is left waiting then.
        with contextlib.suppress(RuntimeError):
            schedule(callback)

    return call


async def _lookup(host: str, port: int) -> _AddressInfo:
    future = _LOOKUPS.lookup(host, port)
    if not future.done():
        answered = anyio.Event()
        wake = _from_thread(answered.set)
        future.add_done_callback(lambda _: wake())
        await answered.wait()
    return future.result()


def _lookup_sync(host: str, port: int, timeout: float | None) -> _AddressInfo:
    future = _LOOKUPS.lookup(host, port)
    done, _ = concurrent.futures.wait([future], timeout)
    if not done:
        raise httpcore.ConnectTimeout(
            f"resolving {host!r} took longer than the {timeout:g} s left of the deadline"
        )
    return future.result()


async def resolve_vetted(host: str, port: int, policy: OutboundPolicy) -> list[str]:
    """Resolve ``host`` once and vet every address; the addresses to connect to, in order.

    The wait ends with the caller's cancel scope (the lookup is abandoned, not
    stopped). Raises ``BlockedAddress`` if any address is refused,
    ``httpcore.ConnectError`` if the name does not resolve.
    """
    literal = _literal(host)
    if literal is not None:
        return vetted(host, [literal], policy)
    try:
        infos = await _lookup(host, port)
    except (OSError, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
    return vetted(host, _addresses(infos), policy)


def resolve_vetted_sync(
    host: str, port: int, policy: OutboundPolicy, *, timeout: float | None = None
) -> list[str]:
    """``resolve_vetted`` for threads, waiting at most ``timeout`` seconds for the lookup.

    Raises ``httpcore.ConnectTimeout`` when the time is up (the lookup is
    abandoned, not stopped), besides ``resolve_vetted``'s errors.
    """
    literal = _literal(host)
    if literal is not None:
        return vetted(host, [literal], policy)
    try:
        infos = _lookup_sync(host, port, timeout)
    except (OSError, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
    return vetted(host, _addresses(infos), policy)


def _time_left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (``time.monotonic``), or ``httpcore.ConnectTimeout``."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ConnectTimeout("the connect timeout ran out")
    return left


_CONNECT_ERRORS = (httpcore.ConnectError, httpcore.ConnectTimeout)


class GuardedAsyncBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to vetted addresses."""

    def __init__(
        self, policy: OutboundPolicy, backend: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self.policy = policy
        self._backend = backend or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        last: Exception | None = None
        for address in await resolve_vetted(host, port, self.policy):
            try:
                return await self._backend.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except _CONNECT_ERRORS as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddress(f"refused to connect: Unix socket {path!r} is not a network address")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class GuardedSyncBackend(httpcore.NetworkBackend):
    """The blocking twin of ``GuardedAsyncBackend``."""

    def __init__(
        self, policy: OutboundPolicy, backend: httpcore.NetworkBackend | None = None
    ) -> None:
        self.policy = policy
        self._backend = backend or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """A connection to the first vetted address of ``host`` that answers, all of it
        (the lookup and every connect) within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: Exception | None = None
        for address in resolve_vetted_sync(host, port, self.policy, timeout=timeout):
            try:
                return self._backend.connect_tcp(
                    address, port, _time_left(deadline), local_address, socket_options
                )
            except _CONNECT_ERRORS as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise BlockedAddress(f"refused to connect: Unix socket {path!r} is not a network address")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)
