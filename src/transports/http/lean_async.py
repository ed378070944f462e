"""The async lean HTTP/1.1 transport, ``Http1Transport`` (trio and asyncio).

How it works is told in ``transports.http.lean``, which holds the settings
and idle pool it shares with ``Http1SyncTransport``.
"""

from __future__ import annotations

import asyncio
import math
import socket
import ssl

import anyio
import anyio.abc
import sniffio
import trio
import trio.lowlevel
from anyio.streams.tls import TLSStream

from transports.http import lean
from transports.http.guard import resolve_vetted
from transports.http.lean import _READ_SIZE, AsyncResolver, _Http1Client, _hung_up, _refused
from transports.http.transport import HttpResponse, TransportError, timeout_error
from transports.http.wire import Target, Wire, closed_error
from webhook_core import HttpRequest


def _classify(exc: BaseException, connecting: bool) -> TransportError:
    """``lean._classify``, and an anyio stream that ended or broke mid-exchange as a hang-up."""
    if isinstance(exc, anyio.EndOfStream | anyio.BrokenResourceError) and not connecting:
        return closed_error()
    return lean._classify(exc, connecting)


class _StreamConnection:
    """A connection on an anyio byte stream (TLS under trio)."""

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


class _TrioConnection(_StreamConnection):
    """A plain TCP connection under trio, on its socket's own non-blocking calls.

    A send that goes through at once (the usual case for a request of webhook
    size) and a read of what has arrived cost no more than the system calls;
    ``trio.lowlevel`` waits only when the socket would block. The anyio stream
    it came from only closes it: its checkpoints and guards cost trio several
    scheduler passes an exchange.
    """

    async def exchange(self, payload: bytes) -> HttpResponse:
        sock = self._sock
        assert sock is not None  # a TCP stream always has its socket
        try:
            view = memoryview(payload)
            while view:
                try:
                    view = view[sock.send(view) :]
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock)
            await trio.lowlevel.cancel_shielded_checkpoint()
            while True:
                try:
                    data = sock.recv(_READ_SIZE)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(sock)
                    continue
                response = self.wire.feed(data)
                if response is not None:
                    return response
        except OSError as exc:
            raise _classify(exc, connecting=False) from exc


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

    async def exchange(
        self, payload: bytes, deadline: float, timeout: float, deadlines: _Deadlines
    ) -> HttpResponse:
        """Write ``payload``; the response, or a timeout error at ``deadline`` (loop time)."""
        assert self._transport is not None
        waiter: asyncio.Future[HttpResponse] = deadlines.loop.create_future()
        self._waiter = waiter
        try:
            self._transport.write(payload)
        except (OSError, RuntimeError) as exc:
            raise _classify(exc, connecting=False) from exc
        due = deadlines.add(waiter, deadline, timeout)
        try:
            return await waiter
        finally:
            del due[id(waiter)]

    def hung_up(self) -> bool:
        return self._unusable or self._transport is None or self._transport.is_closing()

    async def aclose(self) -> None:
        self._unusable = True
        if self._transport is not None:
            self._transport.close()


_TICK = 0.01
"""Seconds: an asyncio exchange fails with a timeout within this much after its deadline."""

_Waiting = dict[int, tuple[asyncio.Future[HttpResponse], float]]


class _Deadlines:
    """The deadlines of one event loop's exchanges, kept by one loop timer per tick.

    A timer per exchange costs the loop a handle, its place in the timer heap
    (compared in Python) and a cancellation; exchanges whose deadlines fall in
    the same ``_TICK`` share one timer instead. An exchange leaves its tick's
    table when it ends, so nothing it answered is kept until the tick.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._ticks: dict[int, _Waiting] = {}

    def add(
        self, waiter: asyncio.Future[HttpResponse], deadline: float, timeout: float
    ) -> _Waiting:
        """Fail ``waiter`` with a timeout once ``deadline`` (loop time) has passed; the table
        to remove it from (by ``id``) when it ends first."""
        tick = math.ceil(deadline / _TICK)
        due = self._ticks.get(tick)
        if due is None:
            due = self._ticks[tick] = {}
            self.loop.call_at(tick * _TICK, self._expire, tick)
        due[id(waiter)] = (waiter, timeout)
        return due

    def _expire(self, tick: int) -> None:
        for waiter, timeout in self._ticks.pop(tick).values():
            if not waiter.done():
                waiter.set_exception(timeout_error(timeout))


_AsyncConnection = _StreamConnection | _ProtocolConnection


class Http1Transport(_Http1Client[_AsyncConnection, AsyncResolver]):
    """Async lean HTTP/1.1 transport (trio and asyncio).

    Under asyncio a connection is an asyncio protocol; under trio, its
    socket (TLS: an anyio stream). Settings (all keyword): ``verify``, ``resolver`` (an async
    callable), ``max_idle``, ``keepalive_expiry``, ``body_limit``,
    ``header_limit``, ``parser``; see the module docstring. ``send`` keeps
    the request's total deadline itself (``keeps_deadline``); a cancelled
    exchange closes its connection.
    """

    keeps_deadline = True
    _deadlines: _Deadlines | None = None

    async def send(self, request: HttpRequest) -> HttpResponse:
        """POST ``request``; the status, headers and up to ``body_limit`` bytes of body.

        The whole exchange ends within ``request.timeout``: past it, ``send``
        raises a ``TransportError`` of kind ``timeout``. On a pooled asyncio
        connection a loop timer shared per 10 ms of deadlines keeps it (within
        those 10 ms); otherwise a cancel scope (trio's own on a pooled trio
        connection).
        """
        target = self._target(request.url)
        conn = await self._idle_connection(target)
        if isinstance(conn, _ProtocolConnection):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + request.timeout
            return await self._exchange(conn, target, request, deadline)
        if conn is not None:  # pooled under trio: trio's own scope, without anyio's wrapper
            deadline = trio.current_time() + request.timeout
            with trio.move_on_at(deadline):
                return await self._exchange(conn, target, request, deadline)
            raise timeout_error(request.timeout)
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
                response = await conn.exchange(
                    payload, deadline, request.timeout, self._loop_deadlines()
                )
            else:
                response = await conn.exchange(payload)
            done = True
            return response
        finally:
            if not (done and conn.wire.reuse() and self._idle.put(target.origin, conn)):
                await conn.aclose()

    def _loop_deadlines(self) -> _Deadlines:
        loop = asyncio.get_running_loop()
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:
            deadlines = self._deadlines = _Deadlines(loop)
        return deadlines

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
            plain = await self._open(addresses, target.port)
            if tls is None:
                return _TrioConnection(plain, self._wire())
            try:
                stream = await TLSStream.wrap(
                    plain, hostname=target.host, ssl_context=tls, standard_compatible=False
                )
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await plain.aclose()
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
