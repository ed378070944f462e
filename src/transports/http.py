"""HTTP transports: send one signed request, report a status or a classified failure.

The core decides what an outcome means; a transport only performs the POST
and sorts failures into ``Outcome`` kinds (timeout, connect, TLS, network,
protocol). Deadlines are enforced by the drivers around ``send``, so every
transport gets the same total deadline. ``HttpxTransport`` (async) and
``HttpxSyncTransport`` (threads) are the general-purpose transports: redirects
are never followed, proxy and ``.netrc`` settings from the environment are
ignored unless a proxy is given, and only the first ``body_limit`` bytes of a
response are read.
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
    reason = f"no complete response within {timeout:g} s"
    return AttemptResult(started, ended, error_kind=Outcome.TIMEOUT, error=reason), b""


class TransportError(Exception):
    """A failed exchange, classified as one of the core's error kinds."""

    def __init__(self, kind: Outcome, detail: str) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail


class AsyncHttpTransport(Protocol):
    """An async HTTP client the drivers can deliver through."""

    async def send(self, request: HttpRequest) -> HttpResponse:
        """POST ``request``; raise ``TransportError`` for anything but an HTTP response."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class SyncHttpTransport(Protocol):
    """A blocking HTTP client for the threaded driver."""

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


def _client_options(
    verify: ssl.SSLContext | str | bool, proxy: str | None, max_connections: int
) -> dict[str, object]:
    return {
        "verify": verify,
        "proxy": proxy,
        "trust_env": False,
        "follow_redirects": False,
        "limits": httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
    }


class HttpxTransport:
    """Async transport on ``httpx.AsyncClient`` (works under trio and asyncio)."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        proxy: str | None = None,
        max_connections: int = 256,
        body_limit: int = BODY_LIMIT,
    ) -> None:
        self.body_limit = body_limit
        self._client = httpx.AsyncClient(**_client_options(verify, proxy, max_connections))  # type: ignore[arg-type]

    async def send(self, request: HttpRequest) -> HttpResponse:
        """POST ``request`` and read at most ``body_limit`` bytes of the answer."""
        try:
            async with self._client.stream(
                "POST",
                request.url,
                content=request.body,
                headers=list(request.headers),
                timeout=request.timeout,
            ) as response:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_raw():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= self.body_limit:
                        break
                return HttpResponse(
                    response.status_code,
                    tuple(response.headers.items()),
                    b"".join(chunks)[: self.body_limit],
                )
        except httpx.HTTPError as exc:
            raise classify(exc) from exc
        except OSError as exc:
            raise classify(exc) from exc

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._client.aclose()


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
    """httpcore's socket backend with every wait bounded by the calling thread's deadline."""

    def __init__(self, deadline: _Deadline) -> None:
        self._backend = httpcore.SyncBackend()
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


class HttpxSyncTransport:
    """Blocking transport for the threaded driver on httpcore, httpx's engine (thread-safe).

    The whole exchange (connect, TLS, send, response headers and body) ends
    within the request's ``timeout``: each socket wait is bounded by the time
    left before the deadline, so a receiver that drips its answer a byte at a
    time is cut off at the deadline (``Outcome.TIMEOUT``), without a watchdog
    thread. Name resolution is the one wait the deadline cannot bound.
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        proxy: str | None = None,
        max_connections: int = 256,
        body_limit: int = BODY_LIMIT,
    ) -> None:
        self.body_limit = body_limit
        self._deadline = _Deadline()
        core_proxy = None
        if proxy is not None:
            parsed = httpx.Proxy(proxy)
            core_proxy = httpcore.Proxy(
                _core_url(str(parsed.url)), auth=parsed.raw_auth, headers=parsed.headers.raw
            )
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            proxy=core_proxy,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            network_backend=_DeadlineBackend(self._deadline),
        )

    def send(self, request: HttpRequest) -> HttpResponse:
        """POST ``request`` and read at most ``body_limit`` bytes, all within its timeout."""
        timeout = request.timeout
        self._deadline.at = time.monotonic() + timeout
        try:
            with self._pool.stream(
                "POST",
                _core_url(request.url),
                headers=list(request.headers),
                content=request.body,
                extensions={
                    "timeout": {
                        "connect": timeout,
                        "read": timeout,
                        "write": timeout,
                        "pool": timeout,
                    }
                },
            ) as response:
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_stream():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= self.body_limit:
                        break
                return HttpResponse(
                    response.status,
                    tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers),
                    b"".join(chunks)[: self.body_limit],
                )
        except tuple(_HTTPCORE_ERRORS) as exc:
            translated = _HTTPCORE_ERRORS[type(exc)](str(exc))
            translated.__cause__ = exc
            raise classify(translated) from exc
        except (httpx.InvalidURL, OSError) as exc:
            raise classify(exc) from exc
        finally:
            self._deadline.at = None

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.close()
