"""The lean transports, with either parser, against real servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme

from transports.http.guard import OutboundPolicy
from transports.http.lean import Http1SyncTransport
from transports.http.lean_async import Http1Transport, _ProtocolConnection
from transports.http.transport import HttpResponse, TransportError
from transports.http.wire import PARSERS
from transports.testing import (
    LOOPBACK_NETWORKS,
    CloseWithoutResponse,
    Garbage,
    Hang,
    LoopbackReceiver,
    Reset,
    Respond,
)
from webhook_core import ConfigError, HttpRequest, Outcome

LOOPBACK = OutboundPolicy(LOOPBACK_NETWORKS, allow_http=True)

BODY = b'{"event":"message.sent"}'
HEADERS = (("Content-Type", "application/json"), ("webhook-id", "evt_1"), ("X-Custom", "a b"))

# Each flavour sends through a fresh transport: the async one under trio and
# under asyncio, and the blocking one for threads; each with either parser.
FLAVOURS = tuple(
    f"{runtime}-{parser}" for runtime in ("trio", "asyncio", "sync") for parser in PARSERS
)


def runtime(flavour: str) -> str:
    return flavour.split("-", maxsplit=1)[0]


def request(url: str, timeout: float = 5.0) -> HttpRequest:
    return HttpRequest(url, HEADERS, BODY, timeout)


class Client:
    """Sends requests through one transport of a flavour, from plain test code."""

    def __init__(self, flavour: str, **options: Any) -> None:
        self.flavour = runtime(flavour)
        self.options = {"parser": flavour.split("-")[1], **options}

    def run(self, *requests: HttpRequest) -> list[HttpResponse | TransportError]:
        """Send ``requests`` in order over one transport; each response or error."""
        if self.flavour == "sync":
            sync = Http1SyncTransport(**{"policy": LOOPBACK, **self.options})
            try:
                return [_catch(functools.partial(sync.send, r)) for r in requests]
            finally:
                sync.close()

        async def main() -> list[HttpResponse | TransportError]:
            transport = Http1Transport(**{"policy": LOOPBACK, **self.options})
            out: list[HttpResponse | TransportError] = []
            try:
                for r in requests:
                    try:
                        with anyio.fail_after(r.timeout):
                            out.append(await transport.send(r))
                    except TransportError as exc:
                        out.append(exc)
            finally:
                await transport.aclose()
            return out

        return anyio.run(main, backend=self.flavour)


def _catch(fn: Callable[[], HttpResponse]) -> HttpResponse | TransportError:
    try:
        return fn()
    except TransportError as exc:
        return exc


def ok(result: HttpResponse | TransportError) -> HttpResponse:
    assert isinstance(result, HttpResponse), result
    return result


def failed(result: HttpResponse | TransportError) -> Outcome:
    assert isinstance(result, TransportError), result
    return result.kind


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_request_on_the_wire(flavour: str) -> None:
    with LoopbackReceiver() as rx:
        (answer,) = Client(flavour).run(request(rx.url("/hook/a?x=1")))
        assert ok(answer).status == 200
        assert ok(answer).body == b"OK"
        (seen,) = rx.requests
        assert seen.method == "POST"
        assert seen.path == "/hook/a?x=1"
        assert seen.body == BODY
        assert seen.headers[:2] == (("Host", f"127.0.0.1:{rx.port}"), ("Content-Length", "24"))
        assert seen.headers[2:] == HEADERS


def test_a_body_larger_than_the_socket_buffers_is_sent_whole(flavour: str) -> None:
    body = bytes(range(256)) * 32_768  # 8 MiB: the first send cannot take it all
    with LoopbackReceiver() as rx:
        (answer,) = Client(flavour).run(HttpRequest(rx.url("/big"), HEADERS, body, 30.0))
        assert ok(answer).status == 200
        (seen,) = rx.requests
        assert seen.body == body


def test_keep_alive_reuses_one_connection(flavour: str) -> None:
    with LoopbackReceiver() as rx:
        answers = Client(flavour).run(*(request(rx.url(f"/p{i}")) for i in range(4)))
        assert [ok(a).status for a in answers] == [200] * 4
        assert len({r.connection_id for r in rx.requests}) == 1


def test_a_connection_the_server_closed_while_idle_is_not_reused(flavour: str) -> None:
    with LoopbackReceiver(idle_timeout=0.1) as rx:
        answers = _with_pause(flavour, rx.url("/x"), 0.5)
        assert [ok(a).status for a in answers] == [200, 200]
        assert len({r.connection_id for r in rx.requests}) == 2


@contextlib.contextmanager
def _stray_bytes_server() -> Iterator[tuple[str, list[int]]]:
    """A server that answers each request 200 and, on its first connection, then writes an
    unasked ``408`` while keeping the connection open; its URL and the connections it took."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    accepted: list[int] = []
    stop = threading.Event()

    def serve(conn: socket.socket, number: int) -> None:
        with conn, contextlib.suppress(OSError):  # the client may close it with a reset
            conn.settimeout(5)
            while not stop.is_set():
                data = b""
                while not data.endswith(BODY):
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                if number == 0:
                    time.sleep(0.05)
                    conn.sendall(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(len(accepted))
            threading.Thread(target=serve, args=(conn, accepted[-1]), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/x", accepted
    finally:
        stop.set()
        acceptor.join()
        listener.close()


def test_a_connection_that_received_bytes_while_idle_is_not_reused(flavour: str) -> None:
    with _stray_bytes_server() as (url, accepted):
        answers = _with_pause(flavour, url, 0.3)
        assert [ok(a).status for a in answers] == [200, 200]
        assert len(accepted) == 2


def _with_pause(flavour: str, url: str, seconds: float) -> list[HttpResponse | TransportError]:
    parser = flavour.split("-")[1]
    if runtime(flavour) == "sync":
        import time

        sync = Http1SyncTransport(policy=LOOPBACK, parser=parser)
        try:
            first = _catch(lambda: sync.send(request(url)))
            time.sleep(seconds)
            return [first, _catch(lambda: sync.send(request(url)))]
        finally:
            sync.close()

    async def main() -> list[HttpResponse | TransportError]:
        transport = Http1Transport(policy=LOOPBACK, parser=parser)
        try:
            first = await transport.send(request(url))
            await anyio.sleep(seconds)
            return [first, await transport.send(request(url))]
        finally:
            await transport.aclose()

    return anyio.run(main, backend=runtime(flavour))


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [
        (Reset(), Outcome.NETWORK_ERROR),
        (CloseWithoutResponse(), Outcome.NETWORK_ERROR),
        (Garbage(), Outcome.PROTOCOL_ERROR),
        (Garbage(b"HTTP/1.1 200 OK\r\nContent-Length: nine\r\n\r\n"), Outcome.PROTOCOL_ERROR),
    ],
    ids=["reset", "closed", "garbage", "bad-length"],
)
def test_broken_answers_are_classified_and_the_next_request_works(
    flavour: str, behaviour: Any, kind: Outcome
) -> None:
    with LoopbackReceiver() as rx:
        rx.route("/hook", behaviour, Respond(200))
        first, second = Client(flavour).run(request(rx.url("/hook")), request(rx.url("/hook")))
        assert failed(first) is kind
        assert ok(second).status == 200


def test_a_refused_connection_is_a_connect_error(flavour: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (answer,) = Client(flavour).run(request(f"http://127.0.0.1:{port}/hook"))
    assert failed(answer) is Outcome.CONNECT_ERROR


def test_the_body_is_capped_and_the_connection_dropped(flavour: str) -> None:
    with LoopbackReceiver() as rx:
        rx.route("/big", Respond(200, b"x" * 200_000))
        big, after = Client(flavour, body_limit=1000).run(
            request(rx.url("/big")), request(rx.url("/small"))
        )
        assert ok(big).body == b"x" * 1000
        assert ok(after).status == 200
        assert len({r.connection_id for r in rx.requests}) == 2


def test_an_oversized_response_head_is_a_protocol_error(flavour: str) -> None:
    with LoopbackReceiver() as rx:
        rx.route("/hook", Respond(200, headers=(("X-Big", "y" * 5000),)))
        (answer,) = Client(flavour, header_limit=1024).run(request(rx.url("/hook")))
        assert failed(answer) is Outcome.PROTOCOL_ERROR


def test_redirects_are_not_followed(flavour: str) -> None:
    with LoopbackReceiver() as rx:
        rx.route("/hook", Respond(302, headers=(("Location", rx.url("/elsewhere")),)))
        (answer,) = Client(flavour).run(request(rx.url("/hook")))
        assert ok(answer).status == 302
        assert ok(answer).header("location") == rx.url("/elsewhere")
        assert [r.path for r in rx.requests] == ["/hook"]


@pytest.mark.parametrize("thread", ["worker", "main"])
@pytest.mark.parametrize("pooled", [True, False], ids=["pooled", "new-connection"])
def test_the_sync_transport_ends_a_hanging_exchange_at_its_deadline(
    pooled: bool, thread: str
) -> None:
    """On a worker thread the socket's receive timeout, set to the time left, ends the
    wait at the deadline; on the main thread Python's socket timeout does."""
    with LoopbackReceiver() as rx:
        rx.route("/hook", *([Respond(200)] if pooled else []), Hang(5.0))
        requests = [request(rx.url("/hook"))] if pooled else []
        out: list[tuple[list[HttpResponse | TransportError], float]] = []

        def run() -> None:
            began = time.monotonic()
            answers = Client("sync-llhttp").run(*requests, request(rx.url("/hook"), timeout=0.3))
            out.append((answers, time.monotonic() - began))

        if thread == "main":
            run()
        else:
            worker = threading.Thread(target=run)
            worker.start()
            worker.join(10)
        ((answers, took),) = out
        *before, answer = answers
        assert [r.status for r in before if isinstance(r, HttpResponse)] == [200] * len(before)
        assert failed(answer) is Outcome.TIMEOUT
        assert 0.3 <= took < 0.3 + 0.4


def test_the_sync_transport_keeps_the_deadline_across_a_slow_send() -> None:
    """A send that took most of the time leaves the response only what is left: a server
    that reads the request late and never answers ends the exchange at its deadline.
    Run on a worker thread, as the threaded driver's exchanges are."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError), listener.accept()[0] as conn:
            time.sleep(0.6)  # the client's send blocks on the full buffers meanwhile
            conn.settimeout(0.1)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    if not conn.recv(1 << 20):
                        return

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    big = HttpRequest(url, (), b"x" * (32 << 20), 1.0)
    out: list[tuple[HttpResponse | TransportError, float]] = []

    def send() -> None:
        transport = Http1SyncTransport(policy=LOOPBACK)
        began = time.monotonic()
        try:
            out.append((_catch(functools.partial(transport.send, big)), time.monotonic() - began))
        finally:
            transport.close()

    try:
        worker = threading.Thread(target=send)
        worker.start()
        worker.join(10)
    finally:
        stop.set()
        server.join(5)
        listener.close()
    ((answer, took),) = out
    assert failed(answer) is Outcome.TIMEOUT
    assert 1.0 <= took < 1.0 + 0.4


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
@pytest.mark.parametrize("pooled", [True, False], ids=["pooled", "new-connection"])
def test_the_async_transport_ends_a_hanging_exchange_at_its_deadline(
    backend: str, pooled: bool
) -> None:
    with LoopbackReceiver() as rx:
        rx.route("/slow", Hang(5.0))

        async def main() -> tuple[TransportError, HttpResponse]:
            transport = Http1Transport(policy=LOOPBACK)
            try:
                if pooled:
                    await transport.send(request(rx.url("/fast")))
                with pytest.raises(TransportError) as caught:
                    await transport.send(request(rx.url("/slow"), timeout=0.3))
                return caught.value, await transport.send(request(rx.url("/fast")))
            finally:
                await transport.aclose()

        error, after = anyio.run(main, backend=backend)
        assert error.kind is Outcome.TIMEOUT
        assert error.detail == "no complete response within 0.3 s"
        assert after.status == 200
        *_, timed_out, next_one = [r.connection_id for r in rx.requests]
        assert timed_out != next_one


def test_asyncio_requests_made_in_one_turn_are_written_together_at_the_next() -> None:
    """Exchanges started in one loop turn queue their requests; one callback at the next
    turn writes them all, and every exchange gets its own answer."""
    with LoopbackReceiver() as rx:

        async def main() -> tuple[list[int], list[int]]:
            transport = Http1Transport(policy=LOOPBACK)
            statuses: list[int] = []
            flushed: list[int] = []

            async def send(path: str) -> None:
                statuses.append((await transport.send(request(rx.url(path)))).status)

            try:
                async with anyio.create_task_group() as tg:  # three pooled connections
                    for i in range(3):
                        tg.start_soon(send, f"/warm/{i}")
                assert transport._on_loop is not None
                _, outbox = transport._on_loop
                flush = outbox._flush

                def counted() -> None:
                    flushed.append(len(outbox._queued))
                    flush()

                outbox._flush = counted  # type: ignore[method-assign]
                async with anyio.create_task_group() as tg:
                    for i in range(3):
                        tg.start_soon(send, f"/burst/{i}")
                return statuses, flushed
            finally:
                await transport.aclose()

        statuses, flushed = anyio.run(main, backend="asyncio")
        assert statuses == [200] * 6
        assert flushed == [3]
        assert len(rx.requests_for("/burst/0")) == 1


@contextlib.contextmanager
def answers_once_then_holds() -> Iterator[int]:
    """A one-connection server on 127.0.0.1: it answers the first request with 200 and then
    keeps the connection open, whatever arrives (a half-close included), until the test
    ends; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    stop = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError), listener.accept()[0] as conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            stop.wait(10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_an_asyncio_request_the_transport_refuses_fails_its_exchange_at_once() -> None:
    """A write the connection refuses when the outbox is flushed (here: after its write
    side was shut, with a server that keeps the connection open) fails that exchange with
    a network error at once, not at its deadline."""
    with answers_once_then_holds() as port:
        url = f"http://127.0.0.1:{port}/hook"

        async def main() -> tuple[HttpResponse | TransportError, float]:
            transport = Http1Transport(policy=LOOPBACK)
            try:
                await transport.send(request(url))
                ((_, conn),) = next(iter(transport._idle.by_origin.values()))
                assert isinstance(conn, _ProtocolConnection) and conn._transport is not None
                conn._transport.write_eof()  # the next write raises RuntimeError
                began = anyio.current_time()
                try:
                    result: HttpResponse | TransportError = await transport.send(
                        request(url, timeout=3.0)
                    )
                except TransportError as exc:
                    result = exc
                return result, anyio.current_time() - began
            finally:
                await transport.aclose()

        result, took = anyio.run(main, backend="asyncio")
        assert failed(result) is Outcome.NETWORK_ERROR
        assert took < 1.0


@pytest.mark.parametrize("first_loop", ["closed", "stopped"])
def test_an_asyncio_connection_pooled_under_another_loop_is_not_reused(first_loop: str) -> None:
    """A transport used by one event loop and then another (two ``asyncio.run`` calls,
    say) opens a connection of the new loop's, and still closes."""
    import asyncio

    with LoopbackReceiver(default=Respond(200)) as rx:
        url = rx.url("/hook")
        transport = Http1Transport(policy=LOOPBACK)
        first = asyncio.new_event_loop()
        assert first.run_until_complete(transport.send(request(url))).status == 200
        if first_loop == "closed":
            first.close()
        ((_, stale),) = next(iter(transport._idle.by_origin.values()))

        async def again() -> list[int]:
            try:
                return [(await transport.send(request(url))).status for _ in range(2)]
            finally:
                await transport.aclose()

        try:
            assert asyncio.run(again()) == [200, 200]
        finally:
            first.close()
        assert len(rx.requests) == 3
        assert stale.hung_up()


def test_asyncio_exchanges_answered_before_their_deadline_are_not_kept_for_it() -> None:
    """Deadlines in one tick share a timer: a hanging exchange among answered ones still
    fails on time, and none of the answered ones (nor their responses) waits for the tick."""
    with LoopbackReceiver() as rx:
        rx.route("/slow", Hang(5.0))

        async def main() -> tuple[list[HttpResponse | TransportError], float, int]:
            transport = Http1Transport(policy=LOOPBACK)
            out: list[HttpResponse | TransportError] = []

            async def send(path: str) -> None:
                try:
                    out.append(await transport.send(request(rx.url(path), timeout=0.3)))
                except TransportError as exc:
                    out.append(exc)

            try:
                async with anyio.create_task_group() as tg:
                    for path in ("/fast", "/fast", "/fast"):
                        tg.start_soon(send, path)
                assert transport._on_loop is not None
                deadlines, _ = transport._on_loop
                waiting = sum(len(table) for table, _ in deadlines._ticks.values())
                began = anyio.current_time()
                async with anyio.create_task_group() as tg:
                    for path in ("/fast", "/slow", "/fast"):
                        tg.start_soon(send, path)
                return out, anyio.current_time() - began, waiting
            finally:
                await transport.aclose()

        out, took, waiting = anyio.run(main, backend="asyncio")
        assert [failed(r) if isinstance(r, TransportError) else r.status for r in out] == [
            200,
            200,
            200,
            200,
            200,
            Outcome.TIMEOUT,
        ]
        assert 0.3 <= took < 0.3 + 0.2
        assert waiting == 0


def test_trio_pooled_exchanges_keep_their_deadlines_without_a_scope_each() -> None:
    """Under trio one system task keeps pooled exchanges' deadlines: a hanging exchange
    among answered ones fails on time and its connection is not reused, and no table is
    left for a deadline nothing waits for."""
    with LoopbackReceiver() as rx:
        rx.route("/slow", Hang(5.0))

        async def main() -> tuple[list[int | Outcome], float, int, HttpResponse]:
            transport = Http1Transport(policy=LOOPBACK)
            out: list[int | Outcome] = []

            async def send(path: str) -> None:
                try:
                    out.append((await transport.send(request(rx.url(path), timeout=0.3))).status)
                except TransportError as exc:
                    out.append(exc.kind)

            try:
                async with anyio.create_task_group() as tg:
                    for _ in range(3):
                        tg.start_soon(send, "/fast")
                began = anyio.current_time()
                async with anyio.create_task_group() as tg:
                    for path in ("/fast", "/slow", "/fast"):
                        tg.start_soon(send, path)
                took = anyio.current_time() - began
                deadlines = transport._trio_deadlines
                assert deadlines is not None
                left = len(deadlines._tables)
                return out, took, left, await transport.send(request(rx.url("/fast")))
            finally:
                await transport.aclose()

        out, took, left, after = anyio.run(main, backend="trio")
        assert out == [200, 200, 200, 200, 200, Outcome.TIMEOUT]
        assert 0.3 <= took < 0.3 + 0.2
        assert left == 0
        assert after.status == 200
        slow = rx.requests_for("/slow")[0].connection_id
        assert rx.requests[-1].connection_id != slow


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
@pytest.mark.parametrize("parser", PARSERS)
def test_a_cancelled_exchange_closes_its_connection(backend: str, parser: str) -> None:
    with LoopbackReceiver() as rx:
        rx.route("/slow", Hang(5.0))

        async def main() -> HttpResponse:
            transport = Http1Transport(policy=LOOPBACK, parser=parser)
            try:
                await transport.send(request(rx.url("/fast")))
                with anyio.move_on_after(0.2):
                    await transport.send(request(rx.url("/slow")))
                return await transport.send(request(rx.url("/fast")))
            finally:
                await transport.aclose()

        assert anyio.run(main, backend=backend).status == 200
        fast = rx.requests_for("/fast")
        assert len(fast) == 2
        assert fast[0].connection_id != fast[1].connection_id


# -- name resolution and TLS ---------------------------------------------------------


class Resolutions:
    """A resolver that sends every name to 127.0.0.1 and records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []

    def sync(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        return ["127.0.0.1"]

    async def __call__(self, host: str, port: int) -> list[str]:
        return self.sync(host, port)


def with_resolver(flavour: str, resolver: Resolutions, **options: Any) -> Client:
    return Client(
        flavour, resolver=resolver.sync if runtime(flavour) == "sync" else resolver, **options
    )


def test_names_are_resolved_once_per_connection_through_the_resolver(flavour: str) -> None:
    resolver = Resolutions()
    with LoopbackReceiver() as rx:
        url = f"http://hooks.invalid:{rx.port}/hook"
        answers = with_resolver(flavour, resolver).run(request(url), request(url))
        assert [ok(a).status for a in answers] == [200, 200]
        assert resolver.asked == [("hooks.invalid", rx.port)]
        assert rx.requests[0].header("host") == f"hooks.invalid:{rx.port}"


def refuse(host: str, port: int) -> list[str]:
    raise TransportError(Outcome.CONNECT_ERROR, f"{host} resolves to a forbidden address")


def no_addresses(host: str, port: int) -> list[str]:
    return []


def guard_error(host: str, port: int) -> list[str]:
    raise ValueError(f"{host} is not a public address")


@pytest.mark.parametrize("answer", [refuse, no_addresses, guard_error])
def test_a_resolver_refusal_is_a_connect_error(
    flavour: str, answer: Callable[[str, int], list[str]]
) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return answer(host, port)

    client = Client(flavour, resolver=answer if runtime(flavour) == "sync" else resolve)
    (result,) = client.run(request("https://hooks.invalid/hook"))
    assert failed(result) is Outcome.CONNECT_ERROR


@contextlib.contextmanager
def tls_server(cert: trustme.LeafCert) -> Iterator[tuple[int, list[str | None]]]:
    """A one-thread HTTPS server on 127.0.0.1 answering 200; yields its port and the SNIs seen."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    names: list[str | None] = []
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError), raw:
                raw.settimeout(5)
                with context.wrap_socket(raw, server_side=True) as conn:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += conn.recv(65536)
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK"
                    )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], names
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_tls_with_the_configured_ca_verifies_and_sends_sni(
    flavour: str, ca: trustme.CA, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    resolver = Resolutions()
    with tls_server(ca.issue_cert("hooks.example")) as (port, names):
        client = with_resolver(flavour, resolver, verify=str(bundle))
        (answer,) = client.run(request(f"https://hooks.example:{port}/hook"))
        assert ok(answer).status == 200
        assert names == ["hooks.example"]


def test_tls_refuses_an_untrusted_certificate(flavour: str, ca: trustme.CA) -> None:
    with tls_server(ca.issue_cert("hooks.example")) as (port, _):
        client = with_resolver(flavour, Resolutions())
        (answer,) = client.run(request(f"https://hooks.example:{port}/hook"))
        assert failed(answer) is Outcome.TLS_ERROR


def test_tls_refuses_a_certificate_for_another_host(
    flavour: str, ca: trustme.CA, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with tls_server(ca.issue_cert("other.example")) as (port, _):
        client = with_resolver(flavour, Resolutions(), verify=str(bundle))
        (answer,) = client.run(request(f"https://hooks.example:{port}/hook"))
        assert failed(answer) is Outcome.TLS_ERROR


@pytest.mark.parametrize("transport", [Http1Transport, Http1SyncTransport])
def test_an_unknown_parser_is_refused_when_the_transport_is_made(transport: type[Any]) -> None:
    with pytest.raises(ConfigError, match="parser must be one of llhttp, h11, not 'fast'"):
        transport(policy=LOOPBACK, parser="fast")


@pytest.mark.parametrize("transport", [Http1Transport, Http1SyncTransport])
def test_a_policy_with_a_proxy_is_refused_when_the_transport_is_made(
    transport: type[Any],
) -> None:
    proxied = OutboundPolicy(LOOPBACK_NETWORKS, allow_http=True, proxy="http://127.0.0.1:3128")
    with pytest.raises(ConfigError, match=r"does not speak through a proxy.*HttpxTransport"):
        transport(policy=proxied)
