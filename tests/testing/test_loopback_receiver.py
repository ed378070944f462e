"""Tests for transports.testing.LoopbackReceiver, driven by real HTTP clients."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator

import anyio
import httpx
import pytest
import trio

from transports.testing import (
    CloseWithoutResponse,
    Delay,
    Drip,
    Garbage,
    Handler,
    Hang,
    LoopbackReceiver,
    ReceivedRequest,
    Reset,
    Respond,
)


def _loopback_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("loopback-")]


@pytest.fixture
def rx() -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver() as receiver:
        yield receiver
    assert _loopback_threads() == []


def _raw_request(rx: LoopbackReceiver, data: bytes, timeout: float = 2.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", rx.port), timeout=timeout)
    sock.sendall(data)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


# -- basics --------------------------------------------------------------------


def test_url_and_port(rx: LoopbackReceiver) -> None:
    assert rx.url() == f"http://127.0.0.1:{rx.port}/"
    assert rx.url("/hooks/a?x=1") == f"http://127.0.0.1:{rx.port}/hooks/a?x=1"
    assert rx.url("b") == f"http://127.0.0.1:{rx.port}/b"


def test_not_started_receiver_has_no_port() -> None:
    receiver = LoopbackReceiver()
    with pytest.raises(RuntimeError):
        _ = receiver.port
    receiver.close()  # closing a never-started receiver is harmless


def test_unrouted_path_answers_200_ok_and_records_request(rx: LoopbackReceiver) -> None:
    before = time.time()
    response = httpx.post(
        rx.url("/hook?attempt=1"),
        content=b'{"event":"message.sent"}',
        headers=[("X-First", "1"), ("Content-Type", "application/json"), ("x-first", "2")],
    )
    assert response.status_code == 200
    assert response.content == b"OK"

    [request] = rx.requests
    assert request.method == "POST"
    assert request.path == "/hook?attempt=1"
    assert request.path_only == "/hook"
    assert request.body == b'{"event":"message.sent"}'
    assert request.json() == {"event": "message.sent"}
    assert before <= request.received_at <= time.time()
    assert request.connection_id >= 1
    # order and spelling preserved, lookup case-insensitive
    names = [name for name, _ in request.headers]
    assert names.index("X-First") < names.index("Content-Type") < names.index("x-first")
    assert request.header("CONTENT-TYPE") == "application/json"
    assert request.header("x-FIRST") == "1"
    assert request.header_all("X-First") == ["1", "2"]
    assert request.header("missing") is None
    assert rx.requests_for("/hook") == [request]
    assert rx.requests_for("/hook?attempt=1") == [request]
    assert rx.requests_for("/hook?attempt=2") == []
    assert rx.requests_for("/other") == []


def test_requests_is_a_copy_and_clear_forgets(rx: LoopbackReceiver) -> None:
    httpx.get(rx.url("/a"))
    snapshot = rx.requests
    snapshot.clear()
    assert len(rx.requests) == 1
    rx.clear()
    assert rx.requests == []


def test_head_request_gets_no_body(rx: LoopbackReceiver) -> None:
    rx.route("/h", Respond(200, b"hello"))
    with httpx.Client() as client:
        head = client.head(rx.url("/h"))
        assert head.status_code == 200
        assert head.headers["content-length"] == "5"
        assert head.content == b""
        # the connection is still usable after the HEAD
        assert client.get(rx.url("/h")).content == b"hello"


# -- keep-alive and concurrency ------------------------------------------------


def test_keep_alive_reuses_one_connection(rx: LoopbackReceiver) -> None:
    with httpx.Client() as client:
        for i in range(5):
            assert client.post(rx.url(f"/k/{i}"), content=b"x" * i).status_code == 200
    with httpx.Client() as other:
        other.get(rx.url("/other"))
    requests = rx.requests
    assert len({r.connection_id for r in requests[:5]}) == 1
    assert requests[5].connection_id != requests[0].connection_id
    assert [r.body for r in requests[:5]] == [b"x" * i for i in range(5)]


def test_client_asking_for_close_gets_connection_closed(rx: LoopbackReceiver) -> None:
    with httpx.Client() as client:
        first = client.get(rx.url("/c"), headers={"Connection": "close"})
        assert first.headers["connection"] == "close"
        client.get(rx.url("/c"))
    a, b = rx.requests
    assert a.connection_id != b.connection_id


def test_twenty_concurrent_connections(rx: LoopbackReceiver) -> None:
    rx.route("/slow", Delay(0.3, Respond(202, b"later")))
    results: list[int] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        with httpx.Client(timeout=5) as client:
            status = client.post(rx.url(f"/slow?i={i}"), content=str(i).encode()).status_code
        with lock:
            results.append(status)

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    elapsed = time.monotonic() - started

    assert results == [202] * 20
    requests = rx.wait_for_path("/slow", 20, timeout=1)
    assert len({r.connection_id for r in requests}) == 20
    assert sorted(int(r.body) for r in requests) == list(range(20))
    assert elapsed < 20 * 0.3 / 2  # served in parallel, not one after another


# -- scripted behaviour ------------------------------------------------------------


def test_scripted_sequence_last_behaviour_repeats(rx: LoopbackReceiver) -> None:
    rx.route("/a", Respond(500), Respond(503, b"busy"), Respond(200, b"fine"))
    with httpx.Client() as client:
        got = [(r.status_code, r.content) for r in (client.post(rx.url("/a")) for _ in range(5))]
        assert got == [
            (500, b"OK"),
            (503, b"busy"),
            (200, b"fine"),
            (200, b"fine"),
            (200, b"fine"),
        ]
        # routes ignore the query string unless they name one
        assert client.post(rx.url("/a?x=1")).content == b"fine"
        rx.route("/a?special=1", Respond(418))
        assert client.post(rx.url("/a?special=1")).status_code == 418
        # re-routing restarts the script
        rx.route("/a", Respond(201), Respond(204))
        assert [client.post(rx.url("/a")).status_code for _ in range(3)] == [201, 204, 204]
        # other paths are unaffected
        assert client.post(rx.url("/b")).status_code == 200


def test_respond_headers_are_sent(rx: LoopbackReceiver) -> None:
    rx.route("/h", Respond(301, b"", (("Location", "http://elsewhere/"), ("X-Y", "z"))))
    response = httpx.post(rx.url("/h"))  # httpx does not follow redirects by default
    assert response.status_code == 301
    assert response.headers["location"] == "http://elsewhere/"
    assert response.headers["x-y"] == "z"


def test_default_behaviour_is_settable() -> None:
    with LoopbackReceiver(default=Respond(404, b"nope")) as rx:
        assert httpx.get(rx.url("/x")).status_code == 404
        rx.default = Respond(410)
        assert rx.default == Respond(410)
        assert httpx.get(rx.url("/x")).status_code == 410
        rx.route("/y", Respond(200))
        assert httpx.get(rx.url("/y")).status_code == 200
    assert _loopback_threads() == []


def test_invalid_scripts_are_refused(rx: LoopbackReceiver) -> None:
    with pytest.raises(ValueError):
        rx.route("/a")
    with pytest.raises(ValueError):
        rx.route("no-slash", Respond())
    with pytest.raises(TypeError):
        rx.route("/a", 200)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Respond(99)
    with pytest.raises(ValueError):
        Delay(-1)
    with pytest.raises(ValueError):
        Hang(float("nan"))
    with pytest.raises(ValueError):
        Drip(interval=-0.1)


def test_delay_waits_before_answering(rx: LoopbackReceiver) -> None:
    rx.route("/d", Delay(0.3, Respond(201, b"done")))
    started = time.monotonic()
    response = httpx.post(rx.url("/d"), content=b"payload")
    elapsed = time.monotonic() - started
    assert (response.status_code, response.content) == (201, b"done")
    assert elapsed >= 0.3
    # the request was recorded on arrival, before the delay ended
    [request] = rx.requests
    assert request.received_at <= time.time() - 0.25


def test_delay_then_any_behaviour(rx: LoopbackReceiver) -> None:
    rx.route("/d", Delay(0.1, CloseWithoutResponse()))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(rx.url("/d"))


def test_drip_sends_headers_at_once_and_body_slowly(rx: LoopbackReceiver) -> None:
    body = b"abcdef"
    interval = 0.15
    rx.route("/drip", Drip(200, body, interval))
    chunks: list[tuple[float, bytes]] = []
    started = time.monotonic()
    with (
        httpx.Client(timeout=5) as client,
        client.stream("POST", rx.url("/drip"), content=b"{}") as response,
    ):
        headers_at = time.monotonic() - started
        assert response.headers["content-length"] == str(len(body))
        for chunk in response.iter_raw():
            chunks.append((time.monotonic() - started, chunk))
    total = time.monotonic() - started

    assert headers_at < 0.5 * (len(body) - 1) * interval
    assert b"".join(c for _, c in chunks) == body
    assert chunks[0][0] < 2 * interval  # first byte arrives quickly
    assert len(chunks) >= 3  # it really arrived in pieces
    assert total >= (len(body) - 1) * interval * 0.9


def test_drip_keeps_connection_alive_afterwards(rx: LoopbackReceiver) -> None:
    rx.route("/drip", Drip(200, b"ab", 0.05))
    with httpx.Client() as client:
        assert client.get(rx.url("/drip")).content == b"ab"
        assert client.get(rx.url("/x")).content == b"OK"
    a, b = rx.requests
    assert a.connection_id == b.connection_id


def test_reset_gives_connection_error(rx: LoopbackReceiver) -> None:
    rx.route("/r", Reset())
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        httpx.post(rx.url("/r"), content=b"body")
    [request] = rx.requests  # the request was fully read before the reset
    assert request.body == b"body"


def test_reset_is_a_tcp_rst(rx: LoopbackReceiver) -> None:
    rx.route("/r", Reset())
    sock = _raw_request(rx, b"GET /r HTTP/1.1\r\nHost: x\r\n\r\n")
    with sock, pytest.raises(ConnectionResetError):
        _read_until_closed(sock)


def test_close_without_response(rx: LoopbackReceiver) -> None:
    rx.route("/c", CloseWithoutResponse())
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(rx.url("/c"), content=b"x")
    sock = _raw_request(rx, b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
    with sock:
        assert _read_until_closed(sock) == b""  # clean FIN, no bytes
    assert len(rx.requests_for("/c")) == 2


def test_garbage_gives_protocol_error(rx: LoopbackReceiver) -> None:
    rx.route("/g", Garbage())
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(rx.url("/g"), content=b"x")
    rx.route("/g", Garbage(b"\x00\x01binary junk"))
    sock = _raw_request(rx, b"GET /g HTTP/1.1\r\nHost: x\r\n\r\n")
    with sock:
        assert _read_until_closed(sock) == b"\x00\x01binary junk"


def test_hang_sends_nothing_then_closes(rx: LoopbackReceiver) -> None:
    rx.route("/hang", Hang(0.4))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(rx.url("/hang"), timeout=httpx.Timeout(5, read=0.2))
    started = time.monotonic()
    sock = _raw_request(rx, b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
    with sock:
        assert _read_until_closed(sock) == b""
    assert time.monotonic() - started >= 0.35
    assert len(rx.requests_for("/hang")) == 2


# -- Handler -------------------------------------------------------------------


def test_handler_answers_verification_handshake(rx: LoopbackReceiver) -> None:
    def echo_token(request: ReceivedRequest) -> Respond:
        payload = request.json()
        token = payload["data"]["verification_token"]
        return Respond(200, json.dumps({"verification_token": token}).encode())

    rx.route("/hook", Handler(echo_token))
    body = {"event": "webhook.verification", "data": {"verification_token": "tok-123"}}
    response = httpx.post(rx.url("/hook"), json=body)
    assert response.status_code == 200
    assert response.json() == {"verification_token": "tok-123"}


def test_handler_can_check_signatures(rx: LoopbackReceiver) -> None:
    secret = b"s3cret"

    def verify(request: ReceivedRequest) -> Respond:
        expected = "sha256=" + hmac.new(secret, request.body, hashlib.sha256).hexdigest()
        given = request.header("X-Netasampark-Signature") or ""
        if hmac.compare_digest(given, expected):
            return Respond(200)
        return Respond(401, b"bad signature")

    rx.route("/hook", Handler(verify))
    body = b'{"event":"message.sent"}'
    good = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    with httpx.Client() as client:
        ok = client.post(rx.url("/hook"), content=body, headers={"X-Netasampark-Signature": good})
        bad = client.post(rx.url("/hook"), content=body, headers={"X-Netasampark-Signature": "x"})
    assert ok.status_code == 200
    assert (bad.status_code, bad.content) == (401, b"bad signature")


def test_handler_may_return_any_behaviour_and_errors_become_500(rx: LoopbackReceiver) -> None:
    def choose(request: ReceivedRequest) -> Reset | Respond:
        return Reset() if request.body == b"reset" else Respond(202)

    def broken(request: ReceivedRequest) -> Respond:
        raise KeyError("verification_token")

    rx.route("/choose", Handler(choose))
    rx.route("/broken", Handler(broken))
    assert httpx.post(rx.url("/choose"), content=b"fine").status_code == 202
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        httpx.post(rx.url("/choose"), content=b"reset")
    response = httpx.post(rx.url("/broken"))
    assert response.status_code == 500
    assert b"KeyError" in response.content
    [error] = rx.errors
    assert isinstance(error, KeyError)


# -- waiting -------------------------------------------------------------------


def test_wait_for_returns_when_requests_arrive(rx: LoopbackReceiver) -> None:
    def later() -> None:
        time.sleep(0.1)
        with httpx.Client() as client:
            client.post(rx.url("/a"))
            client.post(rx.url("/b"))
            client.post(rx.url("/a"))

    sender = threading.Thread(target=later)
    sender.start()
    try:
        got = rx.wait_for_path("/a", 2, timeout=5)
        assert [r.path for r in got] == ["/a", "/a"]
        assert len(rx.wait_for(3, timeout=5)) == 3
    finally:
        sender.join(5)


def test_wait_for_times_out_with_helpful_message(rx: LoopbackReceiver) -> None:
    httpx.post(rx.url("/other"))
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"2 requests, got 1.*POST /other"):
        rx.wait_for(2, timeout=0.2)
    with pytest.raises(TimeoutError, match=r"requests for '/hook', got 0.*POST /other"):
        rx.wait_for_path("/hook", 1, timeout=0.2)
    assert 0.4 <= time.monotonic() - started < 2


def test_await_requests_under_trio_and_asyncio(rx: LoopbackReceiver) -> None:
    async def scenario() -> None:
        async with httpx.AsyncClient() as client:
            await client.post(rx.url("/async"), content=b"1")
        got = await rx.await_requests(1, timeout=2, path="/async")
        assert got[-1].path == "/async"
        with pytest.raises(TimeoutError):
            await rx.await_requests(99, timeout=0.1)
        # the documented alternative: the blocking wait in a worker thread
        got = await anyio.to_thread.run_sync(lambda: rx.wait_for_path("/async", 1, 1.0))
        assert got

    trio.run(scenario)
    asyncio.run(scenario())
    assert len(rx.requests_for("/async")) == 2


# -- protocol edge cases ---------------------------------------------------------


def test_expect_100_continue(rx: LoopbackReceiver) -> None:
    sock = _raw_request(
        rx,
        b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    with sock:
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 ")
        sock.sendall(b"hello")
        assert sock.recv(1024).startswith(b"HTTP/1.1 200 ")
    assert rx.wait_for_path("/e", 1, 2)[0].body == b"hello"


def test_malformed_request_gets_400_and_is_reported(rx: LoopbackReceiver) -> None:
    sock = _raw_request(rx, b"THIS IS NOT HTTP\r\n\r\n")
    with sock:
        assert _read_until_closed(sock).startswith(b"HTTP/1.1 400 ")
    assert rx.requests == []
    assert len(rx.errors) == 1


def test_body_limit_answers_413() -> None:
    with LoopbackReceiver(max_body_size=10) as rx:
        response = httpx.post(rx.url("/big"), content=b"x" * 100)
        assert response.status_code == 413
        assert rx.requests == []


def test_idle_keep_alive_connection_is_dropped() -> None:
    with LoopbackReceiver(idle_timeout=0.2) as rx:
        sock = socket.create_connection(("127.0.0.1", rx.port), timeout=2)
        with sock:
            assert _read_until_closed(sock) == b""


# -- shutdown ------------------------------------------------------------------


def test_shutdown_is_prompt_and_leaves_no_threads() -> None:
    baseline = set(threading.enumerate())
    rx = LoopbackReceiver()
    with rx:
        rx.route("/hang", Hang(60))
        rx.route("/drip", Drip(200, b"x" * 100, 1.0))
        rx.route("/delay", Delay(60))
        errors: list[BaseException] = []

        def call(path: str) -> None:
            try:
                httpx.get(rx.url(path), timeout=10)
            except httpx.HTTPError as exc:
                errors.append(exc)

        clients = [threading.Thread(target=call, args=(p,)) for p in ("/hang", "/drip", "/delay")]
        for t in clients:
            t.start()
        idle = socket.create_connection(("127.0.0.1", rx.port))  # open but silent
        rx.wait_for(3, timeout=5)
        assert len(_loopback_threads()) >= 5  # acceptor + 4 connections
        started = time.monotonic()
    shutdown_took = time.monotonic() - started
    for t in clients:
        t.join(5)
    idle.close()

    assert shutdown_took < 2
    assert len(errors) == 3  # every client saw its connection go away
    assert _loopback_threads() == []
    assert set(threading.enumerate()) <= baseline
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", rx.port), timeout=1)
    rx.close()  # idempotent
    with pytest.raises(RuntimeError):
        rx.start()
