"""The httpx transports: ``HttpxTransport`` (async) and ``HttpxSyncTransport`` (threads).

The general-purpose transports, both on httpcore, httpx's engine: they connect
only to addresses the outbound guard vetted (``transports.http.guard``), never
follow redirects, never read the environment (proxy variables, ``.netrc``,
``SSL_CERT_FILE``), refuse response heads over h11's 100 KiB and read only the
first ``body_limit`` bytes of a body. What they share with every transport
(``HttpResponse``, ``TransportError``, ``classify``) is in
``transports.http.transport``.

httpcore is imported when a transport is made, not with this module: importing
httpcore imports trio and anyio (its ``_synchronization`` module does, to pick
its locks), and the threaded driver imports this module without wanting either.
"""

from __future__ import annotations

import functools
import ssl
import time
from typing import TYPE_CHECKING

import httpx

from transports.http.guard import (
    BlockedAddress,
    OutboundPolicy,
    resolve_vetted,
    resolve_vetted_sync,
)
from transports.http.lookups import LookupTimeout
from transports.http.tls import ssl_context
from transports.http.transport import BODY_LIMIT, HttpResponse, TransportError, classify
from webhook_core import HttpRequest, Outcome

if TYPE_CHECKING:
    from collections.abc import Iterable

    import httpcore


@functools.lru_cache(maxsize=1024)
def _core_url(url: str) -> httpcore.URL:
    """httpx's parsing of ``url`` (IDNA, percent-encoding) in httpcore's form."""
    import httpcore  # noqa: PLC0415 (see the module docstring)

    parsed = httpx.URL(url)
    return httpcore.URL(
        scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path
    )


@functools.cache
def _httpcore_errors() -> dict[type[Exception], type[httpx.TransportError]]:
    """httpcore's exceptions as the httpx ones ``classify`` sorts."""
    import httpcore  # noqa: PLC0415 (see the module docstring)

    return {
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


@functools.cache
def _send_errors() -> tuple[type[Exception], ...]:
    """Everything a send can end with besides a response."""
    return (BlockedAddress, *_httpcore_errors(), httpx.InvalidURL, OSError)


def _core_proxy(proxy: str | None) -> httpcore.Proxy | None:
    import httpcore  # noqa: PLC0415 (see the module docstring)

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
    error_type = _httpcore_errors().get(type(exc))
    if error_type is not None:
        translated = error_type(str(exc))
        translated.__cause__ = exc
        return classify(translated)
    return classify(exc)


class HttpxTransport:
    """Async transport on httpcore, httpx's engine (works under trio and asyncio).

    Connections go only to addresses the ``policy``'s guard vetted (see
    ``transports.http.guard``); TLS is verified with ``verify`` if given, else with
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
        import httpcore  # noqa: PLC0415 (see the module docstring)

        from transports.http.httpcore_backends import GuardedAsyncBackend  # noqa: PLC0415

        self._proxy = proxy if proxy is not None else self.policy.proxy
        backend = GuardedAsyncBackend(self.policy) if self._proxy is None else None
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context(verify, ca_file=self.policy.ca_file),
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
        except _send_errors() as exc:
            raise _failure(exc) from exc

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._pool.aclose()


class HttpxSyncTransport:
    """Blocking transport for the threaded driver on httpcore, httpx's engine (thread-safe).

    The whole exchange (connect, TLS, send, response headers and body) ends
    within the request's ``timeout``: each socket wait is bounded by the time
    left before the deadline, so a receiver that drips its answer a byte at a
    time is cut off at the deadline (``Outcome.TIMEOUT``), without a watchdog
    thread; name resolution included, waited for on the guard's lookup threads
    (``transports.http.lookups``). Connections go only to addresses the
    ``policy``'s guard vetted.
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
        import httpcore  # noqa: PLC0415 (see the module docstring)

        from transports.http.httpcore_backends import (  # noqa: PLC0415
            Deadline,
            DeadlineBackend,
            GuardedSyncBackend,
        )

        self._deadline = Deadline()
        self._proxy = proxy if proxy is not None else self.policy.proxy
        backend: httpcore.NetworkBackend = (
            GuardedSyncBackend(self.policy) if self._proxy is None else httpcore.SyncBackend()
        )
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context(verify, ca_file=self.policy.ca_file),
            proxy=_core_proxy(self._proxy),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            network_backend=DeadlineBackend(self._deadline, backend),
        )

    def send(self, request: HttpRequest) -> HttpResponse:
        """POST ``request`` and read at most ``body_limit`` bytes, all within its timeout."""
        self._deadline.at = time.monotonic() + request.timeout
        try:
            url = _allowed_scheme(_core_url(request.url), self.policy)
            if self._proxy is not None:
                import httpcore  # noqa: PLC0415 (see the module docstring)

                left = self._deadline.bound(None, httpcore.ConnectTimeout)
                try:
                    resolve_vetted_sync(*_target(url), self.policy, timeout=left)
                except LookupTimeout as exc:
                    raise httpcore.ConnectTimeout(str(exc)) from exc
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
        except _send_errors() as exc:
            raise _failure(exc) from exc
        finally:
            self._deadline.at = None

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.close()
