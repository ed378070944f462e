"""Lean HTTP/1.1 transports: the blocking one here, the async one in ``lean_async``.

Theory of operation
-------------------
A webhook POST is one small request and one small answer, so these transports
do only that: parse the URL once (cached), take an idle keep-alive connection
to the origin (scheme, host, port) from the pool or open a new one, write the
request in one send, and feed what comes back to the connection's ``Wire``
(``transports.http.wire``: llhttp by default, or h11) until the response ends or
``body_limit`` bytes of body have been read. A connection goes back to the
pool only after a whole response with keep-alive; any error, a cut-off body,
a cancelled exchange or ``Connection: close`` closes it.

Opening a connection resolves the host once, through the outbound guard
(``resolve_vetted``: it returns only the addresses it vetted) or a
``resolver(host, port)`` of your own, and connects to those addresses in
order, never looking the name up again; TLS then runs with SNI and
certificate checks for the URL's host. A resolver that raises (any exception)
or returns no address fails the attempt with a connect error. Redirects are
never followed (a 3xx is just a status); proxies are not supported (use
``HttpxTransport`` for proxies and HTTP/2).

Failures are sorted into the same ``Outcome`` kinds as the httpx transports:
refused or unresolvable → connect error, certificate or handshake failure →
TLS error, a reset or a hang-up → network error, bytes that are not HTTP or
a response head larger than ``header_limit`` → protocol error. Both keep the
request's total deadline themselves, past which ``send`` fails with a timeout:
the async one on a pooled connection by sharing one wake-up among the
exchanges whose deadlines fall in the same 10 ms (so within 10 ms of the
deadline: a loop timer under asyncio, a system task that wakes the socket
waits under trio), and with a cancel scope otherwise; the sync one by
bounding every socket wait by the time left.

Under asyncio a connection is an ``asyncio.Protocol`` that feeds the wire as the
event loop reads and wakes the exchange once; under trio it is an anyio
stream. Idle connections are dropped after ``keepalive_expiry`` seconds
(below the 5 s idle timeout of Node.js servers) and checked for a hang-up
(anything received while idle) before reuse. A server that closes an idle connection at the very
moment a request is written on it still fails that attempt, which is then
retried like any other network error: the request is never re-sent silently.

This module (the settings and idle pool both share, and ``Http1SyncTransport``)
imports no event loop library, so the threaded driver loads neither anyio nor
asyncio; ``Http1Transport`` is in ``transports.http.lean_async``.
"""

from __future__ import annotations

import functools
import select
import socket
import ssl
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from transports.http.guard import BlockedAddress, OutboundPolicy, resolve_vetted_sync
from transports.http.lookups import LookupTimeout
from transports.http.tls import ssl_context
from transports.http.transport import BODY_LIMIT, HttpResponse, TransportError, classify
from transports.http.wire import Target, Wire, check_parser, make_wire, parse_target
from webhook_core import ConfigError, HttpRequest, Outcome

HEADER_LIMIT = 64 * 1024
KEEPALIVE_EXPIRY = 4.0
MAX_IDLE = 512
_READ_SIZE = 65536

C = TypeVar("C")
R = TypeVar("R")
AsyncResolver = Callable[[str, int], Awaitable[list[str]]]
SyncResolver = Callable[[str, int], list[str]]


def _classify(exc: BaseException, connecting: bool) -> TransportError:
    if isinstance(exc, TransportError):
        return exc
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


# Linux's ``struct tcp_info``: ``tcpi_state`` first, and ``tcpi_bytes_received`` (since
# Linux 4.1; a FIN counts one) the 8 bytes at 128. Older kernels answer shorter, and
# where the count stays 0 (a sandbox that does not keep it) it is not asked again.
class _TcpInfo:
    option = getattr(socket, "TCP_INFO", None) if sys.platform == "linux" else None


_INFO_SIZE = 136
_BYTES_RECEIVED = struct.Struct("=128xQ")
_ESTABLISHED = 1


def _hung_up(sock: socket.socket | None, received: int | None = None) -> bool:
    """True if an idle connection cannot carry a request: the server closed or reset it,
    or sent something unasked.

    ``received``, the bytes read from a plain socket so far, lets Linux answer
    through ``TCP_INFO``: the connection must still be established, and every
    byte it received read. That call keeps the GIL, where ``select`` releases
    it, and a worker thread waiting for the GIL (the SQLite store's, or another
    threaded worker) would take it, leaving the caller to wait its turn again.
    A socket error pending on an established connection goes unnoticed here:
    the exchange then fails as a network error, retried like any other.
    """
    if sock is None:
        return False
    option = _TcpInfo.option
    if received is not None and option is not None:
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, option, _INFO_SIZE)
        except OSError:
            return True
        if len(info) == _INFO_SIZE:
            counted = _BYTES_RECEIVED.unpack_from(info)[0]
            if counted or not received:
                return info[0] != _ESTABLISHED or counted != received
            _TcpInfo.option = None
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
    https only; one with a ``proxy`` is refused). ``verify``: certificate
    checks with the policy's CAs (default), off, a CA bundle path or an
    ``ssl.SSLContext``.
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
        if policy is not None and policy.proxy is not None:
            raise ConfigError(
                f"the lean HTTP/1.1 transport does not speak through a proxy "
                f"({policy.proxy!r}); send through HttpxTransport or HttpxSyncTransport instead"
            )
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
        return ssl_context(self._verify, ca_file=self.policy.ca_file)

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


class _SyncConnection:
    """A blocking connection (see ``uses_kernel_timeouts`` for how its waits are bounded)."""

    def __init__(self, sock: socket.socket, wire: Wire) -> None:
        self.sock = sock
        self.wire = wire
        self.plain = not isinstance(sock, ssl.SSLSocket)
        self.received = 0  # bytes read, for ``_hung_up``

    def uses_kernel_timeouts(self) -> bool:
        """Whether this exchange bounds its waits with the kernel's timeouts (``bound``).

        A plain connection used off the main thread on 64-bit Linux is put in
        blocking mode and given ``SO_SNDTIMEO``/``SO_RCVTIMEO``: every send and
        receive is then one system call, where Python's own timeouts add a
        ``poll`` before each, and each system call lets the other workers take
        the interpreter lock (32 workers waited on each other twice as often).
        Not on the main thread: Linux hands a process's signals to it first,
        and a receive interrupted by one is restarted by Python with the whole
        timeout again, where Python's own timeouts recompute what is left.
        """
        if not (_KERNEL_TIMEOUTS and self.plain and threading.get_ident() != _MAIN_THREAD):
            return False
        if self.sock.gettimeout() is not None:
            self.sock.settimeout(None)
        return True

    def bound(self, option: int, deadline: float, kernel: bool) -> None:
        """Let the next send or receive wait no longer than until ``deadline``: through the
        kernel's ``option`` (``SO_SNDTIMEO``, ``SO_RCVTIMEO``) when ``kernel``, else
        through Python's socket timeout."""
        left = _left(deadline)
        if not kernel:
            self.sock.settimeout(left)
            return
        whole = int(left)
        micros = max(int((left - whole) * 1_000_000), 0 if whole else 1)  # 0 would wait forever
        self.sock.setsockopt(socket.SOL_SOCKET, option, struct.pack("ll", whole, micros))


# ``SO_RCVTIMEO`` and ``SO_SNDTIMEO`` take a ``struct timeval`` of two longs on 64-bit
# Linux (32-bit builds with a 64-bit ``time_t`` expect another layout).
_KERNEL_TIMEOUTS = sys.platform == "linux" and sys.maxsize > 2**32
_MAIN_THREAD = threading.main_thread().ident


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TransportError(Outcome.TIMEOUT, "the total deadline of the exchange has passed")
    return left


class Http1SyncTransport(_Http1Client[_SyncConnection, SyncResolver]):
    """Blocking lean HTTP/1.1 transport over sockets, for the threaded driver (thread-safe).

    Takes the same settings as ``Http1Transport``, with a blocking ``resolver``.
    The whole exchange (connect, TLS, send, response head and body) ends
    within the request's ``timeout``: every socket wait is bounded by the time
    left, the guard's name lookup included (``transports.http.lookups``).
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
        kernel = conn.uses_kernel_timeouts()
        try:
            unsent = memoryview(conn.wire.request(target, request))
            while unsent:
                conn.bound(socket.SO_SNDTIMEO, deadline, kernel)
                unsent = unsent[sock.send(unsent) :]
            while True:
                conn.bound(socket.SO_RCVTIMEO, deadline, kernel)
                data = sock.recv(_READ_SIZE)
                conn.received += len(data)
                response = conn.wire.feed(data)
                if response is not None:
                    return response
        except BlockingIOError as exc:  # the kernel's timeout ran out
            raise TransportError(
                Outcome.TIMEOUT, "no complete response in time: timed out"
            ) from exc
        except TimeoutError as exc:
            raise TransportError(Outcome.TIMEOUT, f"no complete response in time: {exc}") from exc
        except OSError as exc:
            raise _classify(exc, connecting=False) from exc

    def _checkout(self, target: Target, deadline: float) -> _SyncConnection:
        conn, stale = self._idle.take(target.origin)
        for old in stale:
            old.sock.close()
        if conn is not None:
            if not _hung_up(conn.sock, conn.received if conn.plain else None):
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
        except LookupTimeout as exc:
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
