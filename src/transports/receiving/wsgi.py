"""WSGI adapter: a webhook receiver as a WSGI application (any WSGI server, Flask, Werkzeug).

Serve it on its own, or mount it beside an application with Werkzeug's
``DispatcherMiddleware``. For a Flask route of your own see
``transports.receiving.flask``.
"""

from __future__ import annotations

import http
from collections.abc import Callable, Iterable
from typing import Any

from transports.receiving.receiver import Receiver
from webhook_core.canonical import MAX_BODY
from webhook_core.receiving import NOT_POST, TOO_LARGE, Reply

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def environ_headers(environ: dict[str, Any]) -> dict[str, str]:
    """The request headers of a WSGI environ, as lower-case names."""
    headers = {
        key[5:].replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers


def content_length(value: str | None) -> int | None:
    """The declared body length, or None when it is absent or not a number."""
    if not value or not value.isdigit():
        return None
    return int(value)


def read_environ_body(environ: dict[str, Any]) -> bytes | None:
    """The raw body, or None when it is longer than ``MAX_BODY``."""
    length = content_length(environ.get("CONTENT_LENGTH"))
    if length is None:
        length = 0
    if length > MAX_BODY:
        return None
    body: bytes = environ["wsgi.input"].read(length) if length else b""
    return body


def _status_line(status: int) -> str:
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def wsgi_app(receiver: Receiver) -> WSGIApp:
    """A WSGI application that answers webhook POSTs with ``receiver``."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        reply: Reply
        if environ.get("REQUEST_METHOD") != "POST":
            reply = NOT_POST
        else:
            body = read_environ_body(environ)
            reply = TOO_LARGE if body is None else receiver.handle(body, environ_headers(environ))
        start_response(
            _status_line(reply.status),
            [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body)))],
        )
        return [reply.body]

    return app
