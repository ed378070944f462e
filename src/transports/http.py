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

import ssl
from typing import Protocol

import attrs
import httpx

from webhook_core import HttpRequest, Outcome

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
    """Sort an httpx (or OS) exception into a ``TransportError`` of the right kind."""
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
    if isinstance(exc, httpx.RemoteProtocolError):
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


class HttpxSyncTransport:
    """Blocking transport on ``httpx.Client`` for the threaded driver (thread-safe)."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        proxy: str | None = None,
        max_connections: int = 256,
        body_limit: int = BODY_LIMIT,
    ) -> None:
        self.body_limit = body_limit
        self._client = httpx.Client(**_client_options(verify, proxy, max_connections))  # type: ignore[arg-type]

    def send(self, request: HttpRequest) -> HttpResponse:
        """POST ``request``; each network wait is bounded by the request's timeout."""
        try:
            with self._client.stream(
                "POST",
                request.url,
                content=request.body,
                headers=list(request.headers),
                timeout=request.timeout,
            ) as response:
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_raw():
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

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()
