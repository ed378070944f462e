"""A real HTTP/1.1 server on 127.0.0.1 for testing webhook senders.

`LoopbackReceiver` listens on an ephemeral port of the loopback interface and
serves every connection from its own background thread, so a test can drive it
from any runtime: trio, asyncio or plain threads. It is built on raw sockets and
`h11` rather than on `http.server` so that it can misbehave on purpose, the way
real webhook receivers do: answer slowly, drip the body one byte at a time,
reset the connection, hang up without answering, hang, or answer garbage.

Every request that arrives in full is recorded as a `ReceivedRequest` (method,
target, headers in wire order and case, raw body bytes, arrival time and the id
of the TCP connection it came on), so a test can assert on exactly what the
sender put on the wire, including keep-alive reuse.

What the receiver does with a request is scripted per path with behaviours::

    with LoopbackReceiver() as rx:
        rx.route("/hook", Respond(500), Reset(), Respond(200))
        sender.deliver(rx.url("/hook"))  # 1st attempt sees 500, 2nd a reset,
        ...                              # 3rd and every later one sees 200
        [req] = rx.wait_for_path("/hook", 1, timeout=5)
        assert req.header("content-type") == "application/json"

Behaviours of one route are consumed one per request, in order, and the last
one repeats. Paths without a route get `LoopbackReceiver.default` (200 "OK"
unless changed).

Blocking waits (`wait_for`, `wait_for_path`) use a condition variable and
always take a timeout. Under trio or asyncio, either await `await_requests`
(which polls without blocking the event loop) or call the blocking waits via
``anyio.to_thread.run_sync(lambda: rx.wait_for(3, 5.0))``.

Every wait inside the server is bounded: sleeps are clamped to `MAX_WAIT`
seconds and are cut short when the receiver shuts down, idle keep-alive
connections are dropped after ``idle_timeout``, and leaving the ``with`` block
closes every socket and joins every thread with a timeout.
"""

from __future__ import annotations

import contextlib
import http
import itertools
import json
import socket
import ssl
import struct
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeAlias

import h11

__all__ = [
    "LOOPBACK_NETWORKS",
    "MAX_WAIT",
    "Behaviour",
    "CloseWithoutResponse",
    "Delay",
    "Drip",
    "Garbage",
    "Handler",
    "Hang",
    "LoopbackReceiver",
    "ReceivedRequest",
    "Reset",
    "Respond",
]

LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
"""The networks to let through the outbound guard (``allowed_networks``) in tests
that deliver to a `LoopbackReceiver`."""

MAX_WAIT = 120.0
"""Upper bound, in seconds, for any single sleep a behaviour asks for."""

_POLL = 0.1  # how often blocked socket calls wake up to check for shutdown
_RECV_SIZE = 65536


def _clamp(seconds: float) -> float:
    return max(0.0, min(float(seconds), MAX_WAIT))


def _check_seconds(name: str, seconds: float) -> None:
    if not seconds >= 0:  # also rejects NaN
        raise ValueError(f"{name} must be a non-negative number of seconds, got {seconds!r}")


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One HTTP request that the receiver read in full.

    ``path`` is the request target as sent (path plus query string).
    ``headers`` keeps the wire order and the sender's spelling of names; use
    `header` for a case-insensitive lookup.
    """

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    received_at: float
    connection_id: int

    def header(self, name: str) -> str | None:
        """Return the first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        """Return every value of header ``name`` (case-insensitive), in wire order."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    @property
    def path_only(self) -> str:
        """The path without the query string."""
        return self.path.split("?", 1)[0]

    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Respond:
    """Answer with ``status``, ``body`` and extra ``headers``.

    Content-Length is added unless ``headers`` already frames the body. The
    connection stays open for the next request unless the client (or a
    ``Connection: close`` header here) says otherwise.
    """

    status: int = 200
    body: bytes = b"OK"
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not 200 <= self.status <= 999:
            raise ValueError(f"status must be a final status code (200-999), got {self.status}")
        object.__setattr__(self, "headers", tuple((str(k), str(v)) for k, v in self.headers))


@dataclass(frozen=True, slots=True)
class Delay:
    """Sleep ``seconds`` (clamped to `MAX_WAIT`) after reading the request, then act as ``then``."""

    seconds: float
    then: Behaviour = field(default_factory=Respond)

    def __post_init__(self) -> None:
        _check_seconds("Delay.seconds", self.seconds)


@dataclass(frozen=True, slots=True)
class Drip:
    """The slow-drip attack: send the status line and headers (with a correct
    Content-Length) at once, then the body one byte at a time with ``interval``
    seconds between bytes. The first byte goes out with the headers, so the whole
    body takes ``(len(body) - 1) * interval`` seconds.
    """

    status: int = 200
    body: bytes = b"...................."
    interval: float = 0.5
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _check_seconds("Drip.interval", self.interval)
        if not 200 <= self.status <= 999:
            raise ValueError(f"status must be a final status code (200-999), got {self.status}")
        object.__setattr__(self, "headers", tuple((str(k), str(v)) for k, v in self.headers))


@dataclass(frozen=True, slots=True)
class Reset:
    """Read the request, then abort the connection with a TCP RST (SO_LINGER 0)."""


@dataclass(frozen=True, slots=True)
class CloseWithoutResponse:
    """Read the request, then close the connection cleanly (FIN) without answering."""


@dataclass(frozen=True, slots=True)
class Hang:
    """Read the request, send nothing for ``seconds`` (clamped to `MAX_WAIT`), then close.

    The hang ends early when the receiver shuts down.
    """

    seconds: float = 60.0

    def __post_init__(self) -> None:
        _check_seconds("Hang.seconds", self.seconds)


@dataclass(frozen=True, slots=True)
class Garbage:
    """Read the request, write ``data`` verbatim instead of an HTTP response, then close."""

    data: bytes = b"not http\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Handler:
    """Compute the answer from the request: ``fn(request)`` returns a behaviour
    (usually a `Respond`). If ``fn`` raises, the client gets a 500 whose body is
    the exception, and the exception is kept in `LoopbackReceiver.errors`.
    """

    fn: Callable[[ReceivedRequest], Behaviour]


Behaviour: TypeAlias = (
    Respond | Delay | Drip | Reset | CloseWithoutResponse | Hang | Garbage | Handler
)
"""Anything `LoopbackReceiver.route` accepts."""

_BEHAVIOUR_TYPES = (Respond, Delay, Drip, Reset, CloseWithoutResponse, Hang, Garbage, Handler)
_MAX_HANDLER_DEPTH = 16


class _Script:
    """Behaviours of one route; the last one repeats."""

    def __init__(self, behaviours: tuple[Behaviour, ...]) -> None:
        self.behaviours = behaviours
        self.index = 0

    def next(self) -> Behaviour:
        behaviour = self.behaviours[min(self.index, len(self.behaviours) - 1)]
        self.index += 1
        return behaviour


def _matches(pattern: str, target: str) -> bool:
    """A pattern with a query string matches exactly; one without matches any query."""
    if "?" in pattern:
        return pattern == target
    return target.split("?", 1)[0] == pattern


class _ConnectionGoneError(Exception):
    """The connection is gone (peer closed, reset, idle timeout or shutdown)."""


class LoopbackReceiver:
    """A real HTTP/1.1 server on 127.0.0.1 with scriptable misbehaviour.

    Use it as a context manager (or call `start` and `close`). It binds an
    ephemeral port, accepts connections on a background thread and serves each
    connection, with keep-alive, on a thread of its own.

    ``idle_timeout`` drops a connection that sends nothing for that long;
    ``max_body_size`` answers 413 to larger bodies; ``shutdown_timeout`` bounds
    how long `close` waits for each thread. With ``tls`` (a server-side
    ``ssl.SSLContext`` holding a certificate) every connection is TLS and
    `url` gives ``https://`` URLs naming ``url_host``; a client that refuses
    the certificate leaves no request behind.
    """

    def __init__(
        self,
        *,
        default: Behaviour | None = None,
        idle_timeout: float = 30.0,
        max_body_size: int = 16 * 1024 * 1024,
        shutdown_timeout: float = 5.0,
        tls: ssl.SSLContext | None = None,
        url_host: str = "127.0.0.1",
    ) -> None:
        self._tls = tls
        self._url_host = url_host
        self._default: Behaviour = Respond() if default is None else default
        _check_behaviour(self._default)
        self._idle_timeout = _clamp(idle_timeout)
        self._max_body_size = max_body_size
        self._shutdown_timeout = shutdown_timeout

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._requests: list[ReceivedRequest] = []
        self._errors: list[BaseException] = []
        self._routes: dict[str, _Script] = {}
        self._conns: dict[int, socket.socket] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._conn_ids = itertools.count(1)
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._port: int | None = None
        self._closed = False

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> Self:
        """Bind 127.0.0.1 on an ephemeral port and start serving."""
        if self._listener is not None or self._closed:
            raise RuntimeError("a LoopbackReceiver can be started only once")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(128)
            listener.settimeout(_POLL)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self._port = int(listener.getsockname()[1])
        self._accept_thread = threading.Thread(
            target=self._accept_loop,
            args=(listener,),
            name=f"loopback-{self._port}-accept",
            daemon=True,
        )
        self._accept_thread.start()
        return self

    def close(self) -> None:
        """Stop serving: close the listener and every connection, join all threads.

        Idempotent. Each join is bounded by ``shutdown_timeout``; a thread that
        is still alive afterwards is reported with a `RuntimeWarning`.
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        stuck: list[str] = []
        if self._accept_thread is not None:
            self._accept_thread.join(self._shutdown_timeout)
            if self._accept_thread.is_alive():
                stuck.append(self._accept_thread.name)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for sock in self._conns.values():
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads.values())
        deadline = time.monotonic() + self._shutdown_timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                stuck.append(thread.name)
        with self._lock:
            for sock in self._conns.values():
                sock.close()
            self._conns.clear()
            self._changed.notify_all()
        if stuck:
            warnings.warn(
                f"LoopbackReceiver threads still running after close: {stuck}",
                RuntimeWarning,
                stacklevel=2,
            )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- addressing ----------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the receiver listens on."""
        if self._port is None:
            raise RuntimeError("LoopbackReceiver is not started")
        return self._port

    def url(self, path: str = "/") -> str:
        """Return ``http://127.0.0.1:PORT`` (``https://URL_HOST:PORT`` with TLS) and ``path``."""
        if not path.startswith("/"):
            path = "/" + path
        scheme = "http" if self._tls is None else "https"
        return f"{scheme}://{self._url_host}:{self.port}{path}"

    # -- scripting -----------------------------------------------------------

    def route(self, path: str, *behaviours: Behaviour) -> None:
        """Script the answers for ``path``: one behaviour per request, the last repeating.

        A ``path`` without a query string matches every query on that path.
        Calling `route` again for the same path replaces its script and starts
        it from the beginning.
        """
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        if not behaviours:
            raise ValueError("route() needs at least one behaviour")
        for behaviour in behaviours:
            _check_behaviour(behaviour)
        with self._lock:
            self._routes[path] = _Script(tuple(behaviours))

    @property
    def default(self) -> Behaviour:
        """The behaviour for paths without a route (initially ``Respond(200, b"OK")``)."""
        with self._lock:
            return self._default

    @default.setter
    def default(self, behaviour: Behaviour) -> None:
        _check_behaviour(behaviour)
        with self._lock:
            self._default = behaviour

    def _next_behaviour(self, target: str) -> Behaviour:
        with self._lock:
            script = self._routes.get(target)
            if script is None:
                script = self._routes.get(target.split("?", 1)[0])
            if script is None:
                return self._default
            return script.next()

    # -- recorded traffic ----------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A copy of every fully received request, in arrival order."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, path: str) -> list[ReceivedRequest]:
        """The received requests for ``path`` (any query unless ``path`` has one)."""
        with self._lock:
            return [r for r in self._requests if _matches(path, r.path)]

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised by `Handler` callables and protocol errors from clients."""
        with self._lock:
            return list(self._errors)

    def clear(self) -> None:
        """Forget the recorded requests and errors (routes are kept)."""
        with self._lock:
            self._requests.clear()
            self._errors.clear()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """Block until at least ``count`` requests arrived; return all of them.

        Raises TimeoutError after ``timeout`` seconds.
        """
        return self._wait(None, count, timeout)

    def wait_for_path(self, path: str, count: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """Block until at least ``count`` requests for ``path`` arrived; return those.

        Raises TimeoutError after ``timeout`` seconds.
        """
        return self._wait(path, count, timeout)

    async def await_requests(
        self, count: int, timeout: float = 5.0, path: str | None = None
    ) -> list[ReceivedRequest]:
        """Async form of `wait_for` / `wait_for_path` for trio or asyncio (via anyio).

        Polls every 10 ms without blocking the event loop, so it can be
        cancelled. The timeout is measured in wall-clock time, so it also works
        under a virtual clock.
        """
        import anyio  # noqa: PLC0415 - only async callers need anyio

        deadline = time.monotonic() + timeout
        while True:
            found = self._matching(path)
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError(self._timeout_message(path, count, timeout, found))
            await anyio.sleep(0.01)

    def _matching(self, path: str | None) -> list[ReceivedRequest]:
        with self._lock:
            return self._matching_locked(path)

    def _matching_locked(self, path: str | None) -> list[ReceivedRequest]:
        if path is None:
            return list(self._requests)
        return [r for r in self._requests if _matches(path, r.path)]

    def _wait(self, path: str | None, count: int, timeout: float) -> list[ReceivedRequest]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = self._matching_locked(path)
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    everything = list(self._requests)
                    break
                self._changed.wait(remaining)
        raise TimeoutError(self._timeout_message(path, count, timeout, found, everything))

    @staticmethod
    def _timeout_message(
        path: str | None,
        count: int,
        timeout: float,
        found: list[ReceivedRequest],
        everything: list[ReceivedRequest] | None = None,
    ) -> str:
        what = "requests" if path is None else f"requests for {path!r}"
        message = f"waited {timeout:g}s for {count} {what}, got {len(found)}"
        seen = found if everything is None else everything
        if seen:
            shown = ", ".join(f"{r.method} {r.path}" for r in seen[-10:])
            message += f"; received so far ({len(seen)}): {shown}"
        else:
            message += "; no requests received at all"
        return message

    def _record(self, request: ReceivedRequest) -> None:
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()

    def _record_error(self, error: BaseException) -> None:
        with self._lock:
            self._errors.append(error)

    # -- serving -------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(_POLL)  # e.g. EMFILE; retry, bounded by shutdown
                continue
            sock.settimeout(_POLL)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn_id = next(self._conn_ids)
            thread = threading.Thread(
                target=self._serve_connection,
                args=(conn_id, sock),
                name=f"loopback-{self._port}-conn-{conn_id}",
                daemon=True,
            )
            with self._lock:
                if self._stop.is_set():
                    sock.close()
                    return
                self._conns[conn_id] = sock
                self._threads[conn_id] = thread
            thread.start()

    def _serve_connection(self, conn_id: int, sock: socket.socket) -> None:
        reset = False
        try:
            if self._tls is not None:
                sock = self._start_tls(conn_id, sock, self._tls)
            reset = self._serve(conn_id, sock)
        except _ConnectionGoneError:
            pass
        except Exception as exc:  # a bug here must not kill silently
            self._record_error(exc)
        finally:
            with self._lock:
                self._conns.pop(conn_id, None)
                self._threads.pop(conn_id, None)
                if reset:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                else:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
                sock.close()

    def _start_tls(
        self, conn_id: int, sock: socket.socket, context: ssl.SSLContext
    ) -> socket.socket:
        """Wrap ``sock`` and complete the server side of the TLS handshake."""
        wrapped = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._lock:
            self._conns[conn_id] = wrapped
        deadline = time.monotonic() + self._idle_timeout
        try:
            while not self._stop.is_set():
                try:
                    wrapped.do_handshake()
                    return wrapped
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        break
        except OSError:  # the client refused the certificate, or hung up
            pass
        wrapped.close()
        raise _ConnectionGoneError

    def _serve(self, conn_id: int, sock: socket.socket) -> bool:
        """Serve requests until the connection ends; return True to close with RST."""
        conn = h11.Connection(h11.SERVER)
        while True:
            try:
                request = self._read_request(conn, sock, conn_id)
            except h11.RemoteProtocolError as exc:
                self._record_error(exc)
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    body = f"bad request: {exc}\n".encode()
                    with contextlib.suppress(h11.LocalProtocolError):
                        self._send_response(
                            conn, sock, Respond(exc.error_status_hint, body), head=False
                        )
                return False
            if request is None:
                return False
            behaviour = self._next_behaviour(request.path)
            outcome = self._perform(conn, sock, request, behaviour, depth=0)
            if outcome != "keep":
                return outcome == "reset"
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return False
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return False

    def _read_request(
        self, conn: h11.Connection, sock: socket.socket, conn_id: int
    ) -> ReceivedRequest | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = self._next_event(conn, sock)
            if isinstance(event, h11.Request):
                head = event
                if conn.they_are_waiting_for_100_continue:
                    self._send_all(
                        sock, conn.send(h11.InformationalResponse(status_code=100, headers=[]))
                    )
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self._max_body_size:
                    self._send_response(
                        conn,
                        sock,
                        Respond(413, b"body too large\n", (("Connection", "close"),)),
                        head=False,
                    )
                    raise _ConnectionGoneError
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                request = ReceivedRequest(
                    method=head.method.decode("ascii", "replace"),
                    path=head.target.decode("latin-1"),
                    headers=tuple(
                        (name.decode("latin-1"), value.decode("latin-1"))
                        for name, value in head.headers.raw_items()
                    ),
                    body=bytes(body),
                    received_at=time.time(),
                    connection_id=conn_id,
                )
                self._record(request)
                return request
            elif isinstance(event, h11.ConnectionClosed):
                return None

    def _next_event(self, conn: h11.Connection, sock: socket.socket) -> h11.Event:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                assert not isinstance(event, type)  # PAUSED only happens after a request
                return event
            conn.receive_data(self._recv(sock))

    def _recv(self, sock: socket.socket) -> bytes:
        deadline = time.monotonic() + self._idle_timeout
        while True:
            if self._stop.is_set():
                raise _ConnectionGoneError
            try:
                return sock.recv(_RECV_SIZE)
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise _ConnectionGoneError from None
            except OSError:
                raise _ConnectionGoneError from None

    def _send_all(self, sock: socket.socket, data: bytes | None) -> None:
        if not data:
            return
        view = memoryview(data)
        deadline = time.monotonic() + MAX_WAIT
        while view:
            if self._stop.is_set():
                raise _ConnectionGoneError
            try:
                sent = sock.send(view)
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise _ConnectionGoneError from None
                continue
            except OSError:
                raise _ConnectionGoneError from None
            view = view[sent:]

    def _sleep(self, seconds: float) -> None:
        if self._stop.wait(_clamp(seconds)):
            raise _ConnectionGoneError

    def _perform(
        self,
        conn: h11.Connection,
        sock: socket.socket,
        request: ReceivedRequest,
        behaviour: Behaviour,
        depth: int,
    ) -> str:
        """Act out ``behaviour``; return "keep", "close" or "reset"."""
        head = request.method == "HEAD"
        if isinstance(behaviour, Respond):
            self._send_response(conn, sock, behaviour, head=head)
            return "keep"
        if isinstance(behaviour, Delay):
            self._sleep(behaviour.seconds)
            return self._perform(conn, sock, request, behaviour.then, depth)
        if isinstance(behaviour, Drip):
            self._drip(conn, sock, behaviour, head=head)
            return "keep"
        if isinstance(behaviour, Reset):
            return "reset"
        if isinstance(behaviour, CloseWithoutResponse):
            return "close"
        if isinstance(behaviour, Hang):
            self._sleep(behaviour.seconds)
            return "close"
        if isinstance(behaviour, Garbage):
            self._send_all(sock, behaviour.data)
            return "close"
        if isinstance(behaviour, Handler):
            try:
                if depth >= _MAX_HANDLER_DEPTH:
                    raise RecursionError("Handler returned Handlers too many times")
                result = behaviour.fn(request)
                _check_behaviour(result)
            except Exception as exc:
                self._record_error(exc)
                text = "".join(traceback.format_exception_only(exc))
                return self._perform(
                    conn, sock, request, Respond(500, text.encode("utf-8", "replace")), depth
                )
            return self._perform(conn, sock, request, result, depth + 1)
        raise TypeError(f"not a behaviour: {behaviour!r}")  # pragma: no cover

    def _send_response(
        self, conn: h11.Connection, sock: socket.socket, respond: Respond, *, head: bool
    ) -> None:
        self._send_head(conn, sock, respond.status, respond.headers, len(respond.body))
        if not head and respond.status not in (204, 304):
            self._send_all(sock, conn.send(h11.Data(data=respond.body)))
        self._send_all(sock, conn.send(h11.EndOfMessage()))

    def _drip(self, conn: h11.Connection, sock: socket.socket, drip: Drip, *, head: bool) -> None:
        self._send_head(conn, sock, drip.status, drip.headers, len(drip.body))
        if not head and drip.status not in (204, 304):
            for index in range(len(drip.body)):
                if index:
                    self._sleep(drip.interval)
                self._send_all(sock, conn.send(h11.Data(data=drip.body[index : index + 1])))
        self._send_all(sock, conn.send(h11.EndOfMessage()))

    def _send_head(
        self,
        conn: h11.Connection,
        sock: socket.socket,
        status: int,
        headers: Iterable[tuple[str, str]],
        body_length: int,
    ) -> None:
        header_list = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        framed = {k.lower() for k, _ in header_list} & {b"content-length", b"transfer-encoding"}
        if not framed and status not in (204, 304):
            header_list.append((b"Content-Length", str(body_length).encode("ascii")))
        try:
            reason = http.HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            reason = b""
        response = h11.Response(status_code=status, headers=header_list, reason=reason)
        self._send_all(sock, conn.send(response))


def _check_behaviour(behaviour: object) -> None:
    if not isinstance(behaviour, _BEHAVIOUR_TYPES):
        raise TypeError(
            f"expected a behaviour ({', '.join(t.__name__ for t in _BEHAVIOUR_TYPES)})"
            f", got {behaviour!r}"
        )
