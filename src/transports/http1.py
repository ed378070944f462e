"""Lean HTTP/1.1 transports: async (asyncio protocols, trio streams) and blocking sockets.

Theory of operation
-------------------
A webhook POST is one small request and one small answer, so these transports
do only that: parse the URL once (cached), take an idle keep-alive connection
to the origin (scheme, host, port) from the pool or open a new one, write the
request in one send, and feed what comes back to the connection's ``Wire``
(``transports.wire``: llhttp by default, or h11) until the response ends or
``body_limit`` bytes of body have been read. A connection goes back to the
pool only after a whole response with keep-alive; any error, a cut-off body,
a cancelled exchange or ``Connection: close`` closes it.

Opening a connection resolves the host once, through the outbound guard
(``resolve_vetted``: it returns only the addresses it vetted) or a
``resolver(host, port)`` of your own, and connects to those addresses in
order, never looking the name up again; TLS then runs with SNI and
certificate checks for the URL's host. A resolver that raises (any
exception) or returns no address fails the attempt with a connect error.
Redirects are never followed (a 3xx is just a status); proxies are not
supported (use ``HttpxTransport`` for proxies and HTTP/2).

Failures are sorted into the same ``Outcome`` kinds as the httpx transports:
refused or unresolvable → connect error, certificate or handshake failure →
TLS error, a reset or a hang-up → network error, bytes that are not HTTP or
a response head larger than ``header_limit`` → protocol error. Both keep the
request's total deadline themselves, past which ``send`` fails with a timeout:
the async one with one loop timer on a pooled asyncio connection and a cancel
scope otherwise; the sync one by bounding every wait by the time left, the
guard's name lookup included (a blocking resolver of your own must keep to
the deadline itself).

Under asyncio a connection is an ``asyncio.Protocol`` that feeds the wire as the
event loop reads and wakes the exchange once; under trio it is an anyio
stream. Idle connections are dropped after ``keepalive_expiry`` seconds
(below the 5 s idle timeout of Node.js servers) and checked for a hang-up
(anything received while idle) before reuse. A server that closes an idle connection at the very
moment a request is written on it still fails that attempt, which is then
retried like any other network error: the request is never re-sent silently.
"""

from __future__ import annotations

import asyncio
import functools
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio
import anyio.abc
import httpcore
import sniffio
from anyio.streams.tls import TLSStream

from transports.guard import BlockedAddress, OutboundPolicy, resolve_vetted, resolve_vetted_sync
from transports.http import BODY_LIMIT, HttpResponse, TransportError, classify, timeout_error
from transports.wire import Target, Wire, check_parser, closed_error, make_wire, parse_target
from webhook_core import HttpRequest, Outcome

HEADER_LIMIT = 64 * 1024
KEEPALIVE_EXPIRY = 4.0
MAX_IDLE = 512
_READ_SIZE = 65536

C = TypeVar("C")
R = TypeVar("R")
AsyncResolver = Callable[[str, int], Awaitable[list[str]]]
SyncResolver = Callable[[str, int], list[str]]


def ssl_context(verify: ssl.SSLContext | str | bool = True) -> ssl.SSLContext:
    """The TLS settings for ``verify``: a context as given, a CA bundle path, or on/off."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


def _classify(exc: BaseException, connecting: bool) -> TransportError:
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, anyio.EndOfStream | anyio.BrokenResourceError) and not connecting:
        return closed_error()
    error = classify(exc)
    if connecting and error.kind is Outcome.NETWORK_ERROR:
        return TransportError(Outcome.CONNECT_ERROR, error.detail)
    return error


def _refused(target: Target, exc: Exception | None) -> TransportError:
    """A connect error for a host the resolver gave no address for, or refused with ``exc``."""
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, BlockedAddress):
        return TransportError(Outcome.BLOCKED, str(exc))
    reason = "no address" if exc is None else f"{type(exc).__name__}: {exc}"
    return TransportError(Outcome.CONNECT_ERROR, f"resolving {target.host!r}: {reason}")


def _hung_up(sock: socket.socket | None) -> bool:
    """True if an idle connection's socket has something to read: a close, or stray bytes."""
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class _Idle(Generic[C]):
    """Idle connections by origin, newest last, at most ``limit`` in all (thread-safe)."""

    def __init__(self, limit: int, expiry: float) -> None:
        self.limit = limit
        self.expiry = expiry
        self.count = 0
        self.by_origin: dict[tuple[str, str, int], deque[tuple[float, C]]] = {}
        self.lock = threading.Lock()

    def take(self, origin: tuple[str, str, int]) -> tuple[C | None, list[C]]:
        """The newest idle connection still fresh, and the expired ones to close."""
        with self.lock:
            idle = self.by_origin.get(origin)
            if not idle:
                return None, []
            since, conn = idle.pop()
            self.count -= 1
            if time.monotonic() - since <= self.expiry:
                return conn, []
            stale = [conn, *(c for _, c in idle)]
            self.count -= len(idle)
            idle.clear()
            return None, stale

    def put(self, origin: tuple[str, str, int], conn: C) -> bool:
        """Keep ``conn`` for reuse; False if the pool is full."""
        with self.lock:
            if self.count >= self.limit:
                return False
            self.by_origin.setdefault(origin, deque()).append((time.monotonic(), conn))
            self.count += 1
            return True

    def drain(self) -> list[C]:
        """Every idle connection, removed from the pool."""
        with self.lock:
            conns = [c for idle in self.by_origin.values() for _, c in idle]
            self.by_origin.clear()
            self.count = 0
            return conns


class _Http1Client(Generic[C, R]):
    """The settings and the idle pool both lean transports share.

    ``policy``: the outbound guard's settings (default: public addresses over
    https only). ``verify``: certificate checks with the policy's CAs
    (default), off, a CA bundle path or an ``ssl.SSLContext``.
    ``resolver(host, port)`` returns the addresses to try; the default resolves
    once and vets every address through the guard (``resolve_vetted``). A
    resolver of your own replaces that vetting. It is called once per new
    connection; a blocking one is not bounded by the deadline.
    At most ``max_idle`` idle connections are kept, each for up to
    ``keepalive_expiry`` seconds; responses are read up to ``body_limit``
    bytes of body and ``header_limit`` bytes of head, by ``parser``:
    ``"llhttp"`` (C, through httptools; the default) or ``"h11"`` (pure Python).
    """

    def __init__(
        self,
        *,
        policy: OutboundPolicy | None = None,
        verify: ssl.SSLContext | str | bool = True,
        resolver: R | None = None,
        max_idle: int = MAX_IDLE,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
        body_limit: int = BODY_LIMIT,
        header_limit: int = HEADER_LIMIT,
        parser: str = "llhttp",
    ) -> None:
        check_parser(parser)
        self.parser = parser
        self.body_limit = body_limit
        self.header_limit = header_limit
        self.policy = policy or OutboundPolicy()
        self._verify = verify
        self._resolver = resolver
        self._idle: _Idle[C] = _Idle(max_idle, keepalive_expiry)

    @functools.cached_property
    def _ssl(self) -> ssl.SSLContext:
        """The TLS context, made at the first https connection (loading CAs takes a while)."""
        if self._verify is True:
            return self.policy.ssl_context()
        return ssl_context(self._verify)

    def _target(self, url: str) -> Target:
        """Where ``url`` points, or a ``blocked`` error for plain http the policy refuses."""
        target = parse_target(url)
        if target.scheme == "http" and not self.policy.allow_http:
            raise TransportError(
                Outcome.BLOCKED, "refused to send: plain http is not allowed (allow_http is off)"
            )
        return target

    def _wire(self) -> Wire:
        return make_wire(self.parser, self.header_limit, self.body_limit)


class _StreamConnection:
    """A connection on an anyio byte stream (used under trio)."""

    def __init__(self, stream: anyio.abc.ByteStream, wire: Wire) -> None:
        self.stream = stream
        self.wire = wire
        self._sock: socket.socket | None = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)

    async def exchange(self, payload: bytes) -> HttpResponse:
        try:
            await self.stream.send(payload)
            while True:
                try:
                    data = await self.stream.receive(_READ_SIZE)
                except anyio.EndOfStream:
                    data = b""
                response = self.wire.feed(data)
                if response is not None:
                    return response
        except (OSError, anyio.BrokenResourceError, ssl.SSLError) as exc:
            raise _classify(exc, connecting=False) from exc

    def hung_up(self) -> bool:
        return _hung_up(self._sock)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.stream.aclose()


class _ProtocolConnection(asyncio.Protocol):
    """A connection as an asyncio protocol (used under asyncio).

    Bytes are fed to the wire as the event loop reads them and the waiting
    exchange is woken once, with the response or the error: no per-read
    wake-ups, and anything that arrives while the connection is idle (a
    close, stray bytes) marks it unusable at once.
    """

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[HttpResponse] | None = None
        self._unusable = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._feed(data)

    def eof_received(self) -> bool:
        self._feed(b"")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._unusable = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(
                _classify(exc, connecting=False) if exc is not None else closed_error()
            )

    def _feed(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            self._unusable = True
            return
        try:
            response = self.wire.feed(data)
        except TransportError as exc:
            waiter.set_exception(_classify(exc, connecting=False))
            return
        if response is not None:
            waiter.set_result(response)

    async def exchange(self, payload: bytes, deadline: float, timeout: float) -> HttpResponse:
        """Write ``payload``; the response, or a timeout error at ``deadline`` (loop time)."""
        assert self._transport is not None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[HttpResponse] = loop.create_future()
        self._waiter = waiter
        try:
            self._transport.write(payload)
        except (OSError, RuntimeError) as exc:
            raise _classify(exc, connecting=False) from exc
        timer = loop.call_at(deadline, _expire, waiter, timeout)
        try:
            return await waiter
        finally:
            timer.cancel()

    def hung_up(self) -> bool:
        return self._unusable or self._transport is None or self._transport.is_closing()

    async def aclose(self) -> None:
        self._unusable = True
        if self._transport is not None:
            self._transport.close()


def _expire(waiter: asyncio.Future[HttpResponse], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(timeout_error(timeout))


_AsyncConnection = _StreamConnection | _ProtocolConnection


class Http1Transport(_Http1Client[_AsyncConnection, AsyncResolver]):
    """Async lean HTTP/1.1 transport (trio and asyncio).

    Under asyncio a connection is an asyncio protocol; under trio, an anyio
    stream. Settings (all keyword): ``verify``, ``resolver`` (an async
    callable), ``max_idle``, ``keepalive_expiry``, ``body_limit``,
    ``header_limit``, ``parser``; see the module docstring. ``send`` keeps
    the request's total deadline itself (``keeps_deadline``); a cancelled
    exchange closes its connection.
    """

    keeps_deadline = True

    async def send(self, request: HttpRequest) -> HttpResponse:
        """POST ``request``; the status, headers and up to ``body_limit`` bytes of body.

        The whole exchange ends within ``request.timeout``: past it, ``send``
        raises a ``TransportError`` of kind ``timeout``. On a pooled asyncio
        connection one timer keeps that deadline; otherwise a cancel scope.
        """
        target = self._target(request.url)
        conn = await self._idle_connection(target)
        if isinstance(conn, _ProtocolConnection):
            deadline = asyncio.get_running_loop().time() + request.timeout
            return await self._exchange(conn, target, request, deadline)
        deadline = anyio.current_time() + request.timeout
        with anyio.CancelScope(deadline=deadline):
            if conn is None:
                conn = await self._connect(target)
            return await self._exchange(conn, target, request, deadline)
        raise timeout_error(request.timeout)

    async def _exchange(
        self, conn: _AsyncConnection, target: Target, request: HttpRequest, deadline: float
    ) -> HttpResponse:
        done = False
        try:
            payload = conn.wire.request(target, request)
            if isinstance(conn, _ProtocolConnection):
                response = await conn.exchange(payload, deadline, request.timeout)
            else:
                response = await conn.exchange(payload)
            done = True
            return response
        finally:
            if not (done and conn.wire.reuse() and self._idle.put(target.origin, conn)):
                await conn.aclose()

    async def _idle_connection(self, target: Target) -> _AsyncConnection | None:
        """A pooled connection to ``target``'s origin that is still open, if there is one."""
        conn, stale = self._idle.take(target.origin)
        for old in stale:
            await old.aclose()
        if conn is not None and conn.hung_up():
            await conn.aclose()
            return None
        return conn

    async def _connect(self, target: Target) -> _AsyncConnection:
        tls = self._ssl if target.scheme == "https" else None
        try:
            try:
                if self._resolver is None:
                    addresses = await resolve_vetted(target.host, target.port, self.policy)
                else:
                    addresses = await self._resolver(target.host, target.port)
            except Exception as exc:
                raise _refused(target, exc) from exc
            if not addresses:
                raise _refused(target, None)
            if sniffio.current_async_library() == "asyncio":
                return await self._open_protocol(addresses, target, tls)
            stream: anyio.abc.ByteStream = await self._open(addresses, target.port)
            if tls is not None:
                try:
                    stream = await TLSStream.wrap(
                        stream, hostname=target.host, ssl_context=tls, standard_compatible=False
                    )
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await stream.aclose()
                    raise
        except (OSError, anyio.BrokenResourceError, anyio.EndOfStream, ssl.SSLError) as exc:
            raise _classify(exc, connecting=True) from exc
        return _StreamConnection(stream, self._wire())

    async def _open_protocol(
        self, addresses: list[str], target: Target, tls: ssl.SSLContext | None
    ) -> _ProtocolConnection:
        loop = asyncio.get_running_loop()
        error: OSError | None = None
        for address in addresses:
            wire = self._wire()
            try:
                _, protocol = await loop.create_connection(
                    lambda wire=wire: _ProtocolConnection(wire),
                    address,
                    target.port,
                    ssl=tls,
                    server_hostname=target.host if tls is not None else None,
                )
            except ssl.SSLError:
                raise
            except OSError as exc:
                error = exc
                continue
            return protocol
        assert error is not None
        raise error

    @staticmethod
    async def _open(addresses: list[str], port: int) -> anyio.abc.SocketStream:
        error: OSError | None = None
        for address in addresses:
            try:
                return await anyio.connect_tcp(address, port)
            except OSError as exc:
                error = exc
        assert error is not None
        raise error

    async def aclose(self) -> None:
        """Close the idle connections."""
        for conn in self._idle.drain():
            await conn.aclose()


class _SyncConnection:
    def __init__(self, sock: socket.socket, wire: Wire) -> None:
        self.sock = sock
        self.wire = wire


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TransportError(Outcome.TIMEOUT, "the total deadline of the exchange has passed")
    return left


class Http1SyncTransport(_Http1Client[_SyncConnection, SyncResolver]):
    """Blocking lean HTTP/1.1 transport over sockets, for the threaded driver (thread-safe).

    Takes the same settings as ``Http1Transport``, with a blocking ``resolver``.
    The whole exchange (connect, TLS, send, response head and body) ends
    within the request's ``timeout``: every wait is bounded by the time left,
    the guard's name lookup included (``transports.guard``).
    """

    def send(self, request: HttpRequest) -> HttpResponse:
        """POST ``request``; the status, headers and up to ``body_limit`` bytes, in time."""
        deadline = time.monotonic() + request.timeout
        target = self._target(request.url)
        conn = self._checkout(target, deadline)
        done = False
        try:
            response = self._exchange(conn, target, request, deadline)
            done = True
            return response
        finally:
            if not (done and conn.wire.reuse() and self._idle.put(target.origin, conn)):
                conn.sock.close()

    @staticmethod
    def _exchange(
        conn: _SyncConnection, target: Target, request: HttpRequest, deadline: float
    ) -> HttpResponse:
        sock = conn.sock
        try:
            sock.settimeout(_left(deadline))
            sock.sendall(conn.wire.request(target, request))
            while True:
                sock.settimeout(_left(deadline))
                response = conn.wire.feed(sock.recv(_READ_SIZE))
                if response is not None:
                    return response
        except TimeoutError as exc:
            raise TransportError(Outcome.TIMEOUT, f"no complete response in time: {exc}") from exc
        except OSError as exc:
            raise _classify(exc, connecting=False) from exc

    def _checkout(self, target: Target, deadline: float) -> _SyncConnection:
        conn, stale = self._idle.take(target.origin)
        for old in stale:
            old.sock.close()
        if conn is not None:
            if not _hung_up(conn.sock):
                return conn
            conn.sock.close()
        return self._connect(target, deadline)

    def _connect(self, target: Target, deadline: float) -> _SyncConnection:
        try:
            try:
                addresses = self._resolve(target, deadline)
            except Exception as exc:
                raise _refused(target, exc) from exc
            if not addresses:
                raise _refused(target, None)
            sock = self._open(addresses, target.port, deadline)
            if target.scheme == "https":
                try:
                    sock.settimeout(_left(deadline))
                    sock = self._ssl.wrap_socket(sock, server_hostname=target.host)
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError as exc:
            raise TransportError(Outcome.TIMEOUT, f"connecting timed out: {exc}") from exc
        except OSError as exc:
            raise _classify(exc, connecting=True) from exc
        return _SyncConnection(sock, self._wire())

    def _resolve(self, target: Target, deadline: float) -> list[str]:
        if self._resolver is not None:
            return self._resolver(target.host, target.port)
        try:
            return resolve_vetted_sync(
                target.host, target.port, self.policy, timeout=_left(deadline)
            )
        except httpcore.ConnectTimeout as exc:
            raise TransportError(Outcome.TIMEOUT, str(exc)) from exc

    @staticmethod
    def _open(addresses: list[str], port: int, deadline: float) -> socket.socket:
        error: OSError | None = None
        for address in addresses:
            try:
                sock = socket.create_connection((address, port), timeout=_left(deadline))
            except TimeoutError:
                raise
            except OSError as exc:
                error = exc
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        assert error is not None
        raise error

    def close(self) -> None:
        """Close the idle connections."""
        for conn in self._idle.drain():
            conn.sock.close()
