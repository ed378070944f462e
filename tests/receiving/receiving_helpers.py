"""Signed requests and real loopback servers for the receiver tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, TypedDict

from webhook_core import build_event, platform_catalog, verification_event
from webhook_core.request import USER_AGENT
from webhook_core.signing import as_secrets, signature_headers

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_QWxsIHlvdXIgYmFzZSBhcmUgYmVsb25nIHRvIHVz"
CATALOG = platform_catalog()


class MessageFields(TypedDict):
    """The required fields of a message event's ``data``."""

    message_id: str
    channel: str
    to: str
    status: str


MESSAGE: MessageFields = {
    "message_id": "msg_1",
    "channel": "sms",
    "to": "+919876543210",
    "status": "delivered",
}


def sign(
    body: bytes, *, secret: str = SECRET, msg_id: str = "evt_1", now: float | None = None
) -> dict[str, str]:
    """The headers the sender puts on ``body``."""
    stamp = int(time.time() if now is None else now)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Netasampark-Delivery": "dlv_1",
        "X-Netasampark-Attempt": "2",
        **signature_headers(as_secrets([secret]), msg_id, stamp, body),
    }


def event_request(
    name: str = "message.delivered",
    data: Any = None,
    *,
    event_id: str = "evt_1",
    secret: str = SECRET,
    now: float | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A signed event request: its body and headers."""
    when = time.time() if now is None else now
    event = build_event(
        CATALOG, name, MESSAGE if data is None else data, event_id=event_id, now=when
    )
    return event.body, sign(event.body, secret=secret, msg_id=event_id, now=when)


def handshake_request(token: str = "tok_abc", secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    """A signed verification handshake."""
    event = verification_event(token, event_id="evt_hs", now=time.time())
    return event.body, sign(event.body, secret=secret, msg_id=event.id)


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1; yield its base URL."""
    import uvicorn

    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextlib.contextmanager
def serve_wsgi(app: Any) -> Iterator[str]:
    """Run a WSGI ``app`` under Werkzeug's threaded server on 127.0.0.1; yield its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
