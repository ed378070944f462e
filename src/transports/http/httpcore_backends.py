"""httpcore network backends: the outbound guard's connect, and the thread's exchange deadline.

``GuardedAsyncBackend`` / ``GuardedSyncBackend`` resolve the host themselves
and connect only to addresses the guard vetted (``transports.http.guard``
explains why). ``DeadlineBackend`` bounds every socket wait of the blocking
transport by the time left before the calling thread's ``Deadline``. Only
``transports.http.httpx_transport`` imports this module, when it makes a
transport: importing httpcore imports trio and anyio.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterable
from typing import Any

import httpcore

from transports.http.guard import (
    BlockedAddress,
    OutboundPolicy,
    resolve_vetted,
    resolve_vetted_sync,
)
from transports.http.lookups import LookupTimeout

_CONNECT_ERRORS = (httpcore.ConnectError, httpcore.ConnectTimeout)


def _time_left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (``time.monotonic``), or ``httpcore.ConnectTimeout``."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ConnectTimeout("the connect timeout ran out")
    return left


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
        try:
            addresses = resolve_vetted_sync(host, port, self.policy, timeout=timeout)
        except LookupTimeout as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        for address in addresses:
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


class Deadline(threading.local):
    """The calling thread's current exchange deadline (``time.monotonic`` seconds), if any."""

    at: float | None = None

    def bound(self, timeout: float | None, error: type[Exception]) -> float | None:
        """``timeout`` cut down to the time left; raise ``error`` when none is left."""
        if self.at is None:
            return timeout
        left = self.at - time.monotonic()
        if left <= 0:
            raise error("the total deadline of the exchange has passed")
        return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the calling thread's deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._deadline.bound(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._deadline.bound(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._stream.start_tls(
            ssl_context, server_hostname, self._deadline.bound(timeout, httpcore.ConnectTimeout)
        )
        return DeadlineStream(stream, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """A blocking backend with every wait bounded by the calling thread's deadline."""

    def __init__(self, deadline: Deadline, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(
            host,
            port,
            self._deadline.bound(timeout, httpcore.ConnectTimeout),
            local_address,
            socket_options,
        )
        return DeadlineStream(stream, self._deadline)
