"""Both response parsers (llhttp and h11) read the same bytes the same way."""

from __future__ import annotations

import pytest

from transports.http.transport import HttpResponse, TransportError
from transports.http.wire import PARSERS, Wire, make_wire, parse_target, request_bytes
from webhook_core import ConfigError, HttpRequest, Outcome

TARGET = parse_target("http://hooks.example:8080/in?x=1")
REQUEST = HttpRequest(
    "http://hooks.example:8080/in?x=1", (("Content-Type", "application/json"),), b"{}", 5.0
)
OK = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 2\r\n\r\nOK"


@pytest.fixture(params=PARSERS)
def wire(request: pytest.FixtureRequest) -> Wire:
    return make_wire(str(request.param), 1024, 100)


def exchange(wire: Wire, *chunks: bytes) -> HttpResponse | None:
    """Send the request, feed ``chunks`` in order; the response once one is complete."""
    wire.request(TARGET, REQUEST)
    for chunk in chunks:
        response = wire.feed(chunk)
        if response is not None:
            return response
    return None


def error(wire: Wire, *chunks: bytes) -> Outcome:
    with pytest.raises(TransportError) as caught:
        exchange(wire, *chunks)
    return caught.value.kind


def test_a_response_with_a_length(wire: Wire) -> None:
    response = exchange(wire, OK)
    assert response == HttpResponse(200, (("server", "nginx"), ("content-length", "2")), b"OK")
    assert wire.reuse()
    assert exchange(wire, OK) == response
    assert wire.reuse()


def test_a_response_fed_one_byte_at_a_time(wire: Wire) -> None:
    chunks = [OK[i : i + 1] for i in range(len(OK))]
    response = exchange(wire, *chunks)
    assert response is not None and response.body == b"OK"
    assert wire.reuse()


def test_a_chunked_body_with_trailers(wire: Wire) -> None:
    data = (
        b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    response = exchange(wire, data)
    assert response is not None
    assert (response.status, response.body) == (500, b"abcde")
    assert response.headers == (("transfer-encoding", "chunked"),)
    assert wire.reuse()


def test_a_body_without_a_length_ends_with_the_connection(wire: Wire) -> None:
    wire.request(TARGET, REQUEST)
    assert wire.feed(b"HTTP/1.1 200 OK\r\n\r\nall of it") is None
    response = wire.feed(b"")
    assert response is not None and response.body == b"all of it"
    assert not wire.reuse()


def test_interim_responses_are_skipped(wire: Wire) -> None:
    response = exchange(wire, b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n", OK)
    assert response is not None
    assert response.status == 200
    assert response.header("x-interim") is None
    assert wire.reuse()


def test_a_response_without_a_body(wire: Wire) -> None:
    response = exchange(wire, b"HTTP/1.1 204 No Content\r\n\r\n")
    assert response == HttpResponse(204, (), b"")
    assert wire.reuse()


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK",
    ],
    ids=["connection-close", "http-1.0"],
)
def test_a_response_that_ends_the_connection_is_not_reused(wire: Wire, data: bytes) -> None:
    response = exchange(wire, data)
    assert response is not None and response.body == b"OK"
    assert not wire.reuse()


def test_bytes_after_the_response_make_the_connection_unusable(wire: Wire) -> None:
    response = exchange(wire, OK + b"HTTP/1.1 200 OK\r\n")
    assert response is not None and response.body == b"OK"
    assert not wire.reuse()


def test_the_body_is_capped_and_the_connection_not_reused(wire: Wire) -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n" + b"x" * 150
    response = exchange(wire, data)
    assert response is not None and response.body == b"x" * 100
    assert not wire.reuse()


@pytest.mark.parametrize(
    "chunks",
    [
        (b"",),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", b""),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", b""),
        (b"HTTP/1.1 200 OK\r\nContent-", b""),
    ],
    ids=["nothing", "short-body", "short-chunk", "half-a-head"],
)
def test_a_connection_closed_before_the_whole_response_is_a_network_error(
    wire: Wire, chunks: tuple[bytes, ...]
) -> None:
    assert error(wire, *chunks) is Outcome.NETWORK_ERROR


@pytest.mark.parametrize(
    "data",
    [
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: nine\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    ],
    ids=["not-http", "bad-length", "bad-status", "bad-header"],
)
def test_bytes_that_are_not_http_are_a_protocol_error(wire: Wire, data: bytes) -> None:
    assert error(wire, data) is Outcome.PROTOCOL_ERROR


def test_a_head_over_the_limit_is_a_protocol_error(wire: Wire) -> None:
    data = b"HTTP/1.1 200 OK\r\nX-Big: " + b"y" * 2000 + b"\r\nContent-Length: 0\r\n\r\n"
    assert error(wire, data) is Outcome.PROTOCOL_ERROR


def test_an_endless_head_is_cut_off_at_the_limit(wire: Wire) -> None:
    chunks = [b"HTTP/1.1 200 OK\r\n"] + [b"X-More: " + b"z" * 90 + b"\r\n"] * 20
    assert error(wire, *chunks) is Outcome.PROTOCOL_ERROR


def test_the_request_bytes() -> None:
    assert request_bytes(TARGET, REQUEST) == (
        b"POST /in?x=1 HTTP/1.1\r\nHost: hooks.example:8080\r\nContent-Length: 2\r\n"
        b"Content-Type: application/json\r\n\r\n{}"
    )


@pytest.mark.parametrize(
    "header",
    [
        ("X-Evil", "a\r\nInjected: yes"),
        ("X-Evil", "a\nb"),
        ("X-Evil", "a\rb"),
        ("X-Evil\r", "a"),
        ("X-Name", "caf\u00e9\u20ac"),
    ],
    ids=["crlf", "lf", "cr", "cr-in-name", "not-latin-1"],
)
def test_a_header_that_cannot_be_sent_is_refused(header: tuple[str, str]) -> None:
    bad = HttpRequest(REQUEST.url, (header,), b"{}", 5.0)
    with pytest.raises(TransportError) as caught:
        request_bytes(TARGET, bad)
    assert caught.value.kind is Outcome.PROTOCOL_ERROR


def test_an_unknown_parser_is_named_in_the_error() -> None:
    with pytest.raises(ConfigError, match="parser must be one of llhttp, h11, not 'fast'"):
        make_wire("fast", 1024, 100)
