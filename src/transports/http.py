"""HTTP transports: send one signed request, report a status or a classified failure.

The core decides what an outcome means; a transport only performs the POST
and sorts failures into ``Outcome`` kinds (timeout, connect, TLS, network,
protocol). The async drivers bound ``send`` by the request's total deadline
with a cancel scope (unless the transport ``keeps_deadline`` itself); a
blocking ``send`` cannot be abandoned, so the blocking transports keep the
deadline themselves, every wait (name resolution included) bounded by the
time left. ``HttpxTransport`` (async) and
``HttpxSyncTransport`` (threads) are the general-purpose transports, both on
httpcore, httpx's engine: they connect only to addresses the outbound guard
vetted (``transports.guard``), never follow redirects, never read the
environment (proxy variables, ``.netrc``, ``SSL_CERT_FILE``), refuse response
heads over h11's 100 KiB and read only the first ``body_limit`` bytes of a
body.
"""

from __future__ import annotations

import functools
import ssl
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

import attrs
import h11
import httpcore
import httpx

from transports.guard import (
    BlockedAddress,
    GuardedAsyncBackend,
    GuardedSyncBackend,
    OutboundPolicy,
    resolve_vetted,
    resolve_vetted_sync,
)
from webhook_core import AttemptResult, HttpRequest, Outcome

BODY_LIMIT = 64 * 1024


@attrs.frozen
class HttpResponse:
    """What came back: the status, the headers and the first bytes of the body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


def attempt_result(
    started: float, ended: float, outcome: HttpResponse | TransportError
) -> tuple[AttemptResult, bytes]:
    """The core's view of an exchange that ended with ``outcome``, and the body read."""
    if isinstance(outcome, TransportError):
        return AttemptResult(started, ended, error_kind=outcome.kind, error=outcome.detail), b""
    excerpt = outcome.body.decode("utf-8", errors="replace")
    result = AttemptResult(
        started,
        ended,
        status=outcome.status,
        response_excerpt=excerpt,
        retry_after=outcome.header("retry-after"),
    )
    return result, outcome.body


def timeout_result(started: float, ended: float, timeout: float) -> tuple[AttemptResult, bytes]:
    """The core's view of an exchange cut off at its total deadline."""
    return attempt_result(started, ended, timeout_error(timeout))


def timeout_error(timeout: float) -> TransportError:
    """The error of an exchange cut off at its total deadline of ``timeout`` seconds."""
    return TransportError(Outcome.TIMEOUT, f"no complete response within {timeout:g} s")


class TransportError(Exception):
    """A failed exchange, classified as one of the core's error kinds."""

    def __init__(self, kind: Outcome, detail: str) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail


class AsyncHttpTransport(Protocol):
    """An async HTTP client the drivers can deliver through.

    The drivers bound ``send`` by the request's total deadline with a cancel
    scope, unless the transport has ``keeps_deadline = True``: its ``send``
    then raises ``TransportError`` of kind ``timeout`` by the deadline itself.
    """

    async def send(self, request: HttpRequest) -> HttpResponse:
        """POST ``request``; raise ``TransportError`` for anything but an HTTP response."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class SyncHttpTransport(Protocol):
    """A blocking HTTP client for the threaded driver.

    ``send`` must end by the request's total deadline by itself (raising
    ``TransportError`` of kind ``timeout``): a blocking call cannot be abandoned.
    """

    def send(self, request: HttpRequest) -> HttpResponse:
        """POST ``request``; raise ``TransportError`` for anything but an HTTP response."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def classify(exc: BaseException) -> TransportError:
    """Sort an httpx, h11 or OS exception into a ``TransportError`` of the right kind."""
    detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    if any(isinstance(e, ssl.SSLError) for e in chain) or "CERTIFICATE" in detail.upper():
        return TransportError(Outcome.TLS_ERROR, detail)
    if isinstance(exc, httpx.TimeoutException):
        return TransportError(Outcome.TIMEOUT, detail)
    if isinstance(exc, (httpx.ConnectError, httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return TransportError(Outcome.CONNECT_ERROR, detail)
    if isinstance(exc, httpx.RemoteProtocolError | h11.RemoteProtocolError):
        lowered = str(exc).lower()
        if "disconnect" in lowered or "closed" in lowered:
            return TransportError(Outcome.NETWORK_ERROR, detail)
        return TransportError(Outcome.PROTOCOL_ERROR, detail)
    if isinstance(exc, ConnectionRefusedError):
        return TransportError(Outcome.CONNECT_ERROR, detail)
    return TransportError(Outcome.NETWORK_ERROR, detail)


@functools.lru_cache(maxsize=1024)
def _core_url(url: str) -> httpcore.URL:
    """httpx's parsing of ``url`` (IDNA, percent-encoding) in httpcore's form."""
    parsed = httpx.URL(url)
    return httpcore.URL(
        scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path
    )


# httpcore's exceptions as the httpx ones ``classify`` sorts.
_HTTPCORE_ERRORS: dict[type[Exception], type[httpx.TransportError]] = {
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
}


# Everything a send can end with besides a response.
_SEND_ERRORS: tuple[type[Exception], ...] = (
    BlockedAddress,
    *_HTTPCORE_ERRORS,
    httpx.InvalidURL,
    OSError,
)


def _ssl_context(verify: ssl.SSLContext | bool | None, policy: OutboundPolicy) -> ssl.SSLContext:
    """The TLS context: the policy's (public CAs plus its CA file) unless one is given."""
    if verify is None or verify is True:
        return policy.ssl_context()
    if verify is False:
        return httpx.create_ssl_context(verify=False, trust_env=False)
    return verify


def _core_proxy(proxy: str | None) -> httpcore.Proxy | None:
    if proxy is None:
        return None
    parsed = httpx.Proxy(proxy)
    return httpcore.Proxy(
        _core_url(str(parsed.url)), auth=parsed.raw_auth, headers=parsed.headers.raw
    )


def _allowed_scheme(url: httpcore.URL, policy: OutboundPolicy) -> httpcore.URL:
    """``url``, or ``BlockedAddress`` if it is plain http and the policy allows only https."""
    if url.scheme == b"http" and not policy.allow_http:
        raise BlockedAddress("refused to send: plain http is not allowed (allow_http is off)")
    return url


def _target(url: httpcore.URL) -> tuple[str, int]:
    """The host and port a request to ``url`` connects to (for the proxy pre-check)."""
    default = 443 if url.scheme == b"https" else 80
    return url.host.decode("ascii"), url.port or default


def _timeouts(timeout: float) -> dict[str, object]:
    return {"timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}}


def _response(
    status: int, headers: Iterable[tuple[bytes, bytes]], chunks: list[bytes], limit: int
) -> HttpResponse:
    return HttpResponse(
        status,
        tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers),
        b"".join(chunks)[:limit],
    )


def _failure(exc: Exception) -> TransportError:
    """Any exception a send can end with, as a classified ``TransportError``."""
    if isinstance(exc, BlockedAddress):
        return TransportError(Outcome.BLOCKED, exc.detail)
    error_type = _HTTPCORE_ERRORS.get(type(exc))
    if error_type is not None:
        translated = error_type(str(exc))
        translated.__cause__ = exc
        return classify(translated)
    return classify(exc)


class HttpxTransport:
    """Async transport on httpcore, httpx's engine (works under trio and asyncio).

    Connections go only to addresses the ``policy``'s guard vetted (see
    ``transports.guard``); TLS is verified with ``verify`` if given, else with
    the policy's CAs. The drivers bound the whole exchange with their deadline.
    """

    def __init__(
        self,
        *,
        policy: OutboundPolicy | None = None,
        verify: ssl.SSLContext | bool | None = None,
        proxy: str | None = None,
        max_connections: int = 256,
        body_limit: int = BODY_LIMIT,
    ) -> None:
        self.policy = policy or OutboundPolicy()
        self.body_limit = body_limit
        self._proxy = proxy if proxy is not None else self.policy.proxy
        backend = GuardedAsyncBackend(self.policy) if self._proxy is None else None
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=_ssl_context(verify, self.policy),
            proxy=_core_proxy(self._proxy),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            network_backend=backend,
        )

    async def send(self, request: HttpRequest) -> HttpResponse:
        """POST ``request`` and read at most ``body_limit`` bytes of the answer."""
        try:
            url = _allowed_scheme(_core_url(request.url), self.policy)
            if self._proxy is not None:
                await resolve_vetted(*_target(url), self.policy)
            async with self._pool.stream(
                "POST",
                url,
                headers=list(request.headers),
                content=request.body,
                extensions=_timeouts(request.timeout),
            ) as response:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_stream():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= self.body_limit:
                        break
                return _response(response.status, response.headers, chunks, self.body_limit)
        except _SEND_ERRORS as exc:
            raise _failure(exc) from exc

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._pool.aclose()


class _Deadline(threading.local):
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


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the calling thread's deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: _Deadline) -> None:
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
        return _DeadlineStream(stream, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """A blocking backend with every wait bounded by the calling thread's deadline."""

    def __init__(self, deadline: _Deadline, backend: httpcore.NetworkBackend) -> None:
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
        return _DeadlineStream(stream, self._deadline)


class HttpxSyncTransport:
    """Blocking transport for the threaded driver on httpcore, httpx's engine (thread-safe).

    The whole exchange (connect, TLS, send, response headers and body) ends
    within the request's ``timeout``: each socket wait is bounded by the time
    left before the deadline, so a receiver that drips its answer a byte at a
    time is cut off at the deadline (``Outcome.TIMEOUT``), without a watchdog
    thread; name resolution included, waited for on the guard's lookup threads
    (``transports.guard``). Connections go only to addresses the ``policy``'s
    guard vetted.
    """

    def __init__(
        self,
        *,
        policy: OutboundPolicy | None = None,
        verify: ssl.SSLContext | bool | None = None,
        proxy: str | None = None,
        max_connections: int = 256,
        body_limit: int = BODY_LIMIT,
    ) -> None:
        self.policy = policy or OutboundPolicy()
        self.body_limit = body_limit
        self._deadline = _Deadline()
        self._proxy = proxy if proxy is not None else self.policy.proxy
        backend: httpcore.NetworkBackend = (
            GuardedSyncBackend(self.policy) if self._proxy is None else httpcore.SyncBackend()
        )
        self._pool = httpcore.ConnectionPool(
            ssl_context=_ssl_context(verify, self.policy),
            proxy=_core_proxy(self._proxy),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            network_backend=_DeadlineBackend(self._deadline, backend),
        )

    def send(self, request: HttpRequest) -> HttpResponse:
        """POST ``request`` and read at most ``body_limit`` bytes, all within its timeout."""
        self._deadline.at = time.monotonic() + request.timeout
        try:
            url = _allowed_scheme(_core_url(request.url), self.policy)
            if self._proxy is not None:
                left = self._deadline.bound(None, httpcore.ConnectTimeout)
                resolve_vetted_sync(*_target(url), self.policy, timeout=left)
            with self._pool.stream(
                "POST",
                url,
                headers=list(request.headers),
                content=request.body,
                extensions=_timeouts(request.timeout),
            ) as response:
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_stream():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= self.body_limit:
                        break
                return _response(response.status, response.headers, chunks, self.body_limit)
        except _SEND_ERRORS as exc:
            raise _failure(exc) from exc
        finally:
            self._deadline.at = None

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.close()
