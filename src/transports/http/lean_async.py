"""The async lean HTTP/1.1 transport, ``Http1Transport`` (trio and asyncio).

How it works is told in ``transports.http.lean``, which holds the settings
and idle pool it shares with ``Http1SyncTransport``.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import cast

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

_TICK = 0.01
"""Seconds: an exchange on a pooled connection fails with a timeout within this much after
its deadline (exchanges whose deadlines fall in one tick share one wake-up)."""


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
    scheduler passes an exchange. An exchange checkpoints before it writes, so
    the requests of the tasks that ran in one scheduler batch go out together
    in the next, and once more before it reads.
    """

    def __init__(self, stream: anyio.abc.ByteStream, wire: Wire) -> None:
        super().__init__(stream, wire)
        self.received = 0  # bytes read, for ``hung_up``

    def hung_up(self) -> bool:
        return _hung_up(self._sock, self.received)

    async def exchange(
        self, payload: bytes, kept: tuple[_TrioDeadlines, float, float] | None = None
    ) -> HttpResponse:
        """Write ``payload``; the response. With ``kept`` (the run's deadlines, the deadline
        and the timeout) a timeout error past that deadline; else the caller's scope bounds it.
        """
        sock = self._sock
        assert sock is not None  # a TCP stream always has its socket
        waiting = None if kept is None else kept[0].add(sock, kept[1])
        try:
            # Written one by one, requests would each wake the receiver (see ``_Outbox``).
            # A cancelled or expired exchange writes nothing.
            await trio.lowlevel.checkpoint()
            if waiting is not None and waiting.expired:
                raise _Expired
            view = memoryview(payload)
            while view:
                try:
                    view = view[sock.send(view) :]
                except BlockingIOError:
                    await _wait(trio.lowlevel.wait_writable, sock, waiting)
            await trio.lowlevel.cancel_shielded_checkpoint()
            while True:
                try:
                    data = sock.recv(_READ_SIZE)
                except BlockingIOError:
                    await _wait(trio.lowlevel.wait_readable, sock, waiting)
                    continue
                self.received += len(data)
                response = self.wire.feed(data)
                if response is not None:
                    return response
        except _Expired:
            assert kept is not None
            raise timeout_error(kept[2]) from None
        except OSError as exc:
            raise _classify(exc, connecting=False) from exc
        finally:
            if kept is not None and waiting is not None:
                kept[0].leave(waiting)


class _Expired(Exception):
    """An exchange's deadline passed while it waited on its socket."""


async def _wait(
    wait: Callable[[socket.socket], Awaitable[None]],
    sock: socket.socket,
    waiting: _TrioWaiting | None,
) -> None:
    if waiting is not None and waiting.expired:
        raise _Expired
    try:
        await wait(sock)
    except trio.ClosedResourceError:
        if waiting is not None and waiting.expired:
            raise _Expired from None
        raise


class _TrioWaiting:
    """A pooled trio exchange in a tick's table: its socket, and whether it expired."""

    __slots__ = ("expired", "sock", "tick")

    def __init__(self, sock: socket.socket, tick: int) -> None:
        self.sock = sock
        self.tick = tick
        self.expired = False


class _TrioDeadlines:
    """The deadlines of one trio run's pooled exchanges, kept by one system task.

    Trio keeps a deadline with a cancel scope, whose entry and exit cost
    several Python calls an exchange. Here exchanges whose deadlines fall in
    the same ``_TICK`` share a table, and a system task sleeps until the
    earliest table's tick, marks what is still in it expired and wakes each
    from its socket wait (``trio.lowlevel.notify_closing``); the exchange
    then fails with a timeout and its connection is closed. An exchange
    leaves its table when it ends; a table left empty is dropped, so the
    task never sleeps towards a deadline nothing waits for (under trio's
    ``MockClock`` with autojump it would move the clock there).
    """

    def __init__(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self._tables: dict[int, dict[int, _TrioWaiting]] = {}
        self._ticks: list[int] = []  # a heap of the tables' ticks; a dropped one may linger
        self._sleep: trio.CancelScope | None = None
        trio.lowlevel.spawn_system_task(self._keep)

    def add(self, sock: socket.socket, deadline: float) -> _TrioWaiting:
        """Keep ``deadline`` (trio time) for an exchange on ``sock``."""
        tick = math.ceil(deadline / _TICK)
        waiting = _TrioWaiting(sock, tick)
        table = self._tables.get(tick)
        if table is None:
            table = self._tables[tick] = {}
            heapq.heappush(self._ticks, tick)
            if self._ticks[0] == tick:
                self._wake_at(tick)
        table[id(waiting)] = waiting
        return waiting

    def leave(self, waiting: _TrioWaiting) -> None:
        """The exchange ended (or expired)."""
        table = self._tables.get(waiting.tick)
        if table is None:
            return
        table.pop(id(waiting), None)
        if not table:
            del self._tables[waiting.tick]
            ticks = self._ticks
            if ticks and ticks[0] == waiting.tick:
                while ticks and ticks[0] not in self._tables:
                    heapq.heappop(ticks)
                self._wake_at(ticks[0] if ticks else None)

    def _wake_at(self, tick: int | None) -> None:
        if self._sleep is not None:
            self._sleep.deadline = math.inf if tick is None else tick * _TICK

    async def _keep(self) -> None:
        while True:
            ticks = self._ticks
            with trio.CancelScope(deadline=ticks[0] * _TICK if ticks else math.inf) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None
            now = trio.current_time()
            while ticks and ticks[0] * _TICK <= now:
                for waiting in self._tables.pop(heapq.heappop(ticks), {}).values():
                    waiting.expired = True
                    if waiting.sock.fileno() != -1:
                        trio.lowlevel.notify_closing(waiting.sock)


class _ProtocolConnection(asyncio.Protocol):
    """A connection as an asyncio protocol (used under asyncio).

    Bytes are fed to the wire as the event loop reads them and the waiting
    exchange is woken once, with the response or the error: no per-read
    wake-ups, and anything that arrives while the connection is idle (a
    close, stray bytes) marks it unusable at once.
    """

    def __init__(self, wire: Wire, deadlines: _Deadlines, outbox: _Outbox) -> None:
        self.wire = wire
        self.loop = deadlines.loop
        self._deadlines = deadlines
        self._outbox = outbox
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[HttpResponse] | None = None
        self._unusable = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, but have the same methods.
        self._transport = cast(asyncio.Transport, transport)

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
        """Write ``payload`` (at the loop's next turn, with the other exchanges' requests:
        see ``_Outbox``, whose ``write`` fails a connection closed meanwhile); the response,
        or a timeout error at ``deadline`` (the loop's time)."""
        deadlines = self._deadlines
        waiter: asyncio.Future[HttpResponse] = self.loop.create_future()
        self._waiter = waiter
        self._outbox.add(self, payload)
        tick = deadlines.add(waiter, deadline, timeout)
        try:
            return await waiter
        finally:
            deadlines.leave(waiter, tick)

    def write(self, payload: bytes) -> None:
        """Write ``payload`` now; if the connection closed meanwhile or refuses it, fail the
        waiting exchange instead."""
        transport = self._transport
        try:
            if transport is None or transport.is_closing():
                raise closed_error()
            transport.write(payload)
        except Exception as exc:
            self._unusable = True
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(_classify(exc, connecting=False))

    def hung_up(self) -> bool:
        # A loop that is not running is not the caller's: its connections are spent.
        return (
            self._unusable
            or self._transport is None
            or self._transport.is_closing()
            or not self.loop.is_running()
        )

    async def aclose(self) -> None:
        self._unusable = True
        # A closed loop cannot close its transport (that schedules a callback); the
        # transport's finalizer closes the socket.
        if self._transport is not None and not self.loop.is_closed():
            self._transport.close()


class _Outbox:
    """The requests one event loop's exchanges make in a turn, written together at the next.

    A request written while the receiving process sleeps wakes it, and on a
    virtual machine that wake-up (an interprocessor interrupt) costs the
    writer several microseconds of kernel time; written one after another,
    only the first of a burst finds it asleep. So requests are queued as the
    workers make them, and one callback (``call_soon``) writes them all in the
    loop's next iteration, whose poll does not wait because that callback is
    ready.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._queued: list[tuple[_ProtocolConnection, bytes]] = []

    def add(self, conn: _ProtocolConnection, payload: bytes) -> None:
        """Write ``payload`` on ``conn`` at the loop's next turn."""
        if not self._queued:
            self.loop.call_soon(self._flush)
        self._queued.append((conn, payload))

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        for conn, payload in queued:
            conn.write(payload)


_Waiting = dict[int, tuple[asyncio.Future[HttpResponse], float]]


class _Deadlines:
    """The deadlines of one event loop's exchanges, kept by one loop timer per tick.

    A timer per exchange costs the loop a handle, its place in the timer heap
    (compared in Python) and a cancellation; exchanges whose deadlines fall in
    the same ``_TICK`` share one timer instead. An exchange leaves its tick's
    table when it ends, so nothing it answered is kept until the tick, and a
    table left empty cancels its timer (as trio's ``_TrioDeadlines`` drops its
    tick): the loop keeps no timer for a deadline nothing waits for.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._ticks: dict[int, tuple[_Waiting, asyncio.TimerHandle]] = {}

    def add(self, waiter: asyncio.Future[HttpResponse], deadline: float, timeout: float) -> int:
        """Fail ``waiter`` with a timeout once ``deadline`` (loop time) has passed; its tick,
        for ``leave``."""
        tick = math.ceil(deadline / _TICK)
        entry = self._ticks.get(tick)
        if entry is None:
            entry = self._ticks[tick] = ({}, self.loop.call_at(tick * _TICK, self._expire, tick))
        entry[0][id(waiter)] = (waiter, timeout)
        return tick

    def leave(self, waiter: asyncio.Future[HttpResponse], tick: int) -> None:
        """``waiter``'s exchange ended (or expired)."""
        entry = self._ticks.get(tick)
        if entry is None:
            return
        table, timer = entry
        del table[id(waiter)]
        if not table:
            timer.cancel()
            del self._ticks[tick]

    def _expire(self, tick: int) -> None:
        table, _ = self._ticks.pop(tick)
        for waiter, timeout in table.values():
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
    _on_loop: tuple[_Deadlines, _Outbox] | None = None
    _trio_deadlines: _TrioDeadlines | None = None

    async def send(self, request: HttpRequest) -> HttpResponse:
        """POST ``request``; the status, headers and up to ``body_limit`` bytes of body.

        The whole exchange ends within ``request.timeout``: past it, ``send``
        raises a ``TransportError`` of kind ``timeout``. On a pooled connection
        one wake-up per 10 ms of deadlines keeps it (within those 10 ms: a loop
        timer under asyncio, a system task under trio); otherwise a cancel scope
        (trio's own on a pooled TLS connection under trio).
        """
        target = self._target(request.url)
        conn, stale = self._idle_connection(target)
        if stale:
            await self._close(stale)
        if isinstance(conn, _ProtocolConnection):
            deadline = conn.loop.time() + request.timeout
            return await self._exchange(conn, target, request, deadline)
        if isinstance(conn, _TrioConnection):  # pooled under trio: the run's deadlines
            deadline = trio.current_time() + request.timeout
            return await self._exchange(conn, target, request, deadline, kept=True)
        if conn is not None:  # pooled TLS under trio: trio's own scope, without anyio's wrapper
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
        self,
        conn: _AsyncConnection,
        target: Target,
        request: HttpRequest,
        deadline: float,
        kept: bool = False,
    ) -> HttpResponse:
        done = False
        try:
            payload = conn.wire.request(target, request)
            if isinstance(conn, _ProtocolConnection):
                response = await conn.exchange(payload, deadline, request.timeout)
            elif kept and isinstance(conn, _TrioConnection):
                response = await conn.exchange(
                    payload, (self._run_deadlines(), deadline, request.timeout)
                )
            else:
                response = await conn.exchange(payload)
            done = True
            return response
        finally:
            if not (done and conn.wire.reuse() and self._idle.put(target.origin, conn)):
                await conn.aclose()

    def _loop_helpers(self) -> tuple[_Deadlines, _Outbox]:
        """The running event loop's deadline table and outbox."""
        loop = asyncio.get_running_loop()
        helpers = self._on_loop
        if helpers is None or helpers[0].loop is not loop:
            helpers = self._on_loop = (_Deadlines(loop), _Outbox(loop))
        return helpers

    def _run_deadlines(self) -> _TrioDeadlines:
        deadlines = self._trio_deadlines
        if deadlines is None or deadlines.token is not trio.lowlevel.current_trio_token():
            deadlines = self._trio_deadlines = _TrioDeadlines()
        return deadlines

    def _idle_connection(
        self, target: Target
    ) -> tuple[_AsyncConnection | None, list[_AsyncConnection]]:
        """A pooled connection to ``target``'s origin that is still open, if there is one, and
        the connections to close (expired, or hung up): no coroutine when there are none."""
        conn, stale = self._idle.take(target.origin)
        if conn is not None and conn.hung_up():
            stale.append(conn)
            conn = None
        return conn, stale

    @staticmethod
    async def _close(conns: list[_AsyncConnection]) -> None:
        for conn in conns:
            await conn.aclose()

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
        deadlines, outbox = self._loop_helpers()
        error: OSError | None = None
        for address in addresses:
            wire = self._wire()
            try:
                _, protocol = await deadlines.loop.create_connection(
                    lambda wire=wire: _ProtocolConnection(wire, deadlines, outbox),
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
