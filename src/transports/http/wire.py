"""One HTTP/1.1 exchange as bytes: the request head written, the response parsed. No I/O.

Theory of operation
-------------------
A ``Wire`` belongs to one connection. ``request`` returns the bytes of a POST
(the head written here, in one string; the headers were validated when the
endpoint was registered, and a CR or LF that got through anyway is refused).
``feed`` takes what the socket read (``b""`` at the end of the stream) and
returns the response once it is complete, or once ``body_limit`` bytes of
body have arrived. ``reuse`` says whether the connection can carry another
exchange: only after a whole response, with keep-alive, and nothing stray
after it.

Two parsers read responses, with the same results and the same errors
(``TransportError``: a closed connection is a network error; bytes that are
not HTTP, or a head over ``header_limit`` bytes, a protocol error):

* ``LlhttpWire`` (the default): llhttp, Node.js's C parser, through httptools;
  parsing a response costs a few microseconds;
* ``H11Wire``: h11, pure Python (about ten times the cost).

Interim responses (1xx) are skipped; a body without a length ends when the
server closes the connection; header names come back lowercased.
"""

from __future__ import annotations

import functools
from typing import Protocol
from urllib.parse import urlsplit

import attrs
import h11
import httptools

from transports.http.transport import HttpResponse, TransportError
from webhook_core import ConfigError, HttpRequest, Outcome

PARSERS = ("llhttp", "h11")


@attrs.frozen
class Target:
    """Where a URL's request goes: the origin, the Host header and the request target."""

    scheme: str
    host: str
    port: int
    host_header: str
    path: str

    @property
    def origin(self) -> tuple[str, str, int]:
        """The key connections are pooled by."""
        return (self.scheme, self.host, self.port)


@functools.lru_cache(maxsize=65_536)
def parse_target(url: str) -> Target:
    """Split an endpoint URL into the parts a request needs; ``TransportError`` if it cannot be."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TransportError(Outcome.CONNECT_ERROR, f"invalid URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise TransportError(Outcome.CONNECT_ERROR, f"unsupported URL {url!r}")
    host = parts.hostname
    default = 443 if scheme == "https" else 80
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port in (None, default) else f"{shown}:{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, host, port or default, host_header, path)


def closed_error() -> TransportError:
    """The error for a connection that ended before a whole response."""
    return TransportError(
        Outcome.NETWORK_ERROR, "RemoteProtocolError: server disconnected without a complete answer"
    )


def _head_too_large(limit: int) -> TransportError:
    return TransportError(Outcome.PROTOCOL_ERROR, f"response head larger than {limit} bytes")


def request_bytes(target: Target, request: HttpRequest) -> bytes:
    """The bytes of ``request`` POSTed to ``target``: head and body."""
    lines = [
        f"POST {target.path} HTTP/1.1",
        f"Host: {target.host_header}",
        f"Content-Length: {len(request.body)}",
        *[f"{name}: {value}" for name, value in request.headers],
    ]
    flat = "".join(lines)  # "in" finds a character with memchr; "count" reads every one
    if "\n" in flat or "\r" in flat:
        raise TransportError(Outcome.PROTOCOL_ERROR, "a request header holds CR or LF")
    try:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body
    except UnicodeEncodeError as exc:
        raise TransportError(
            Outcome.PROTOCOL_ERROR, f"a request header is not latin-1: {exc}"
        ) from None


class Wire(Protocol):
    """The parsing side of one connection (see the module docstring)."""

    def request(self, target: Target, request: HttpRequest) -> bytes:
        """The bytes to send for ``request``; the wire then expects its answer."""
        ...

    def feed(self, data: bytes) -> HttpResponse | None:
        """Take bytes received (``b""`` at end of stream); the response once it is complete."""
        ...

    def reuse(self) -> bool:
        """Get ready for the next exchange; False if the connection cannot carry one."""
        ...


def check_parser(parser: str) -> None:
    """Raise ``ConfigError`` unless ``parser`` is one of ``PARSERS``."""
    if parser not in PARSERS:
        raise ConfigError(f"parser must be one of {', '.join(PARSERS)}, not {parser!r}")


def make_wire(parser: str, header_limit: int, body_limit: int) -> Wire:
    """A fresh wire reading responses with ``parser`` (one of ``PARSERS``)."""
    check_parser(parser)
    if parser == "h11":
        return H11Wire(header_limit, body_limit)
    return LlhttpWire(header_limit, body_limit)


class LlhttpWire:
    """Responses parsed by llhttp (httptools), fed through its callbacks."""

    def __init__(self, header_limit: int, body_limit: int) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._header_limit = header_limit
        self._body_limit = body_limit
        self._begin()
        self._broken = False

    def _begin(self) -> None:
        self._final = False
        self._complete = False
        self._keep_alive = False
        self._stray = False
        self._head_done = False
        self._head_seen = 0
        self._head_size = 0
        self._framed = False
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._size = 0

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._final:
            self._stray = True
            return
        self._head_size = 0
        self._framed = False
        self._headers = []

    def on_status(self, reason: bytes) -> None:
        self._head_size += 13 + len(reason)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._final:
            return
        self._head_size += len(name) + len(value) + 4
        key = name.decode("latin-1").lower()
        if key in ("content-length", "transfer-encoding"):
            self._framed = True
        self._headers.append((key, value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self._final:
            return
        status = self._parser.get_status_code()
        if status >= 200:
            self._final = True
            self._head_done = True

    def on_body(self, body: bytes) -> None:
        if self._complete or self._size >= self._body_limit:
            return
        self._body.append(body)
        self._size += len(body)

    def on_message_complete(self) -> None:
        if self._final and not self._complete:
            self._complete = True
            self._keep_alive = self._parser.should_keep_alive()

    # the wire

    def request(self, target: Target, request: HttpRequest) -> bytes:
        """The bytes to send for ``request``; the wire then expects its answer."""
        return request_bytes(target, request)

    def feed(self, data: bytes) -> HttpResponse | None:
        """Take bytes received (``b""`` at end of stream); the response once it is complete."""
        if not data:
            self._broken = True
            if self._head_done and not self._complete and not self._framed:
                return self._response()
            raise closed_error()
        if not self._head_done:
            self._head_seen += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._broken = True
            raise TransportError(
                Outcome.PROTOCOL_ERROR, "the server switched protocols unasked"
            ) from None
        except httptools.HttpParserError as exc:
            self._broken = True
            if not self._complete:
                raise TransportError(
                    Outcome.PROTOCOL_ERROR, f"not an HTTP/1.1 response: {exc}"
                ) from None
        if self._head_size > self._header_limit or (
            not self._head_done and self._head_seen > self._header_limit
        ):
            self._broken = True
            raise _head_too_large(self._header_limit)
        if self._complete or self._size >= self._body_limit:
            return self._response()
        return None

    def _response(self) -> HttpResponse:
        body = b"".join(self._body)[: self._body_limit]
        return HttpResponse(self._parser.get_status_code(), tuple(self._headers), body)

    def reuse(self) -> bool:
        """Get ready for the next exchange; False if the connection cannot carry one."""
        reusable = self._complete and self._keep_alive and not (self._stray or self._broken)
        self._begin()
        return reusable


_STAND_IN_POST = h11.Request(
    method="POST", target="/", headers=[("Host", "-"), ("Content-Length", "0")]
)
_END = h11.EndOfMessage()


class H11Wire:
    """Responses parsed by h11 (pure Python).

    h11 is told a stand-in POST was sent (reading the answer depends only on
    the method and the framing); the bytes themselves come from
    ``request_bytes``, because h11's re-validation of every header costs more
    than the rest of the exchange.
    """

    def __init__(self, header_limit: int, body_limit: int) -> None:
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=header_limit)
        self._header_limit = header_limit
        self._body_limit = body_limit
        self._status = 0
        self._headers: tuple[tuple[str, str], ...] = ()
        self._body: list[bytes] = []
        self._size = 0
        self._ended = False

    def request(self, target: Target, request: HttpRequest) -> bytes:
        """The bytes to send for ``request``; h11 then expects its answer."""
        payload = request_bytes(target, request)
        self._h11.send(_STAND_IN_POST)
        self._h11.send(_END)
        return payload

    def feed(self, data: bytes) -> HttpResponse | None:
        """Take bytes received (``b""`` at end of stream); the response once it is complete."""
        if not data:
            self._ended = True
        try:
            return self._feed(data)
        except h11.ProtocolError as exc:
            if not data:
                raise closed_error() from None
            raise TransportError(Outcome.PROTOCOL_ERROR, f"{type(exc).__name__}: {exc}") from None

    def _feed(self, data: bytes) -> HttpResponse | None:
        conn = self._h11
        if not data and conn.their_state is h11.SEND_RESPONSE:
            raise closed_error()
        conn.receive_data(data)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.Response):
                if sum(len(n) + len(v) + 4 for n, v in event.headers) > self._header_limit:
                    raise _head_too_large(self._header_limit)
                self._status = event.status_code
                self._headers = tuple(
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in event.headers
                )
            elif isinstance(event, h11.Data):
                self._body.append(event.data)
                self._size += len(event.data)
                if self._size >= self._body_limit:
                    return self._response()
            elif isinstance(event, h11.EndOfMessage):
                return self._response()
            elif isinstance(event, h11.ConnectionClosed):
                raise closed_error()

    def _response(self) -> HttpResponse:
        body = b"".join(self._body)[: self._body_limit]
        self._body = []
        self._size = 0
        return HttpResponse(self._status, self._headers, body)

    def reuse(self) -> bool:
        """Get ready for the next exchange; False if the connection cannot carry one."""
        conn = self._h11
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            if self._ended or conn.trailing_data[0]:
                return False
            conn.start_next_cycle()
            return True
        return False
