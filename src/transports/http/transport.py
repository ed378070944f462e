"""What every HTTP transport shares: the response, the failure and the two transport protocols.

The core decides what an outcome means; a transport only performs the POST
and sorts failures into ``Outcome`` kinds (timeout, connect, TLS, network,
protocol) with ``classify``. The async drivers bound ``send`` by the request's
total deadline with a cancel scope (unless the transport ``keeps_deadline``
itself); a blocking ``send`` cannot be abandoned, so the blocking transports
keep the deadline themselves, every wait (name resolution included) bounded
by the time left; ``attempt_result``
and ``timeout_result`` turn what came back into the core's ``AttemptResult``.
The transports themselves: ``transports.http.httpx_transport`` (httpcore,
httpx's engine) and ``transports.http.lean`` / ``lean_async`` (HTTP/1.1 on
llhttp).
"""

from __future__ import annotations

import ssl
from typing import Protocol

import attrs
import h11
import httpx

from webhook_core import AttemptResult, HttpRequest, Outcome
from webhook_core.retry import RETRY_AFTER_STATUSES

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
    status = outcome.status
    result = AttemptResult(
        started,
        ended,
        status=status,
        response_excerpt=excerpt,
        retry_after=outcome.header("retry-after") if status in RETRY_AFTER_STATUSES else None,
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
