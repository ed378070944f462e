"""ASGI adapter: a webhook receiver as an ASGI application (Starlette, FastAPI, any server).

Mount it (``app.mount("/webhooks", asgi_app(receiver))``) or route to it
(``Route("/webhooks", asgi_app(receiver))``). It reads at most
``MAX_BODY`` bytes of the raw body and answers with ``Receiver.handle_async``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from transports.receiving.receiver import Receiver
from webhook_core.canonical import MAX_BODY
from webhook_core.receiving import NOT_POST, TOO_LARGE, Reply

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def scope_headers(scope: Scope) -> dict[str, str]:
    """An ASGI scope's headers as a dict of lower-case names (repeated values comma-joined)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


async def read_body(receive: Receive, limit: int = MAX_BODY) -> bytes | None:
    """The whole request body, or None when it is longer than ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def send_reply(send: Send, reply: Reply) -> None:
    """Send ``reply`` as the response."""
    await send(
        {
            "type": "http.response.start",
            "status": reply.status,
            "headers": [
                (b"content-type", reply.content_type.encode("latin-1")),
                (b"content-length", str(len(reply.body)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": reply.body})


def asgi_app(receiver: Receiver) -> ASGIApp:
    """An ASGI application that answers webhook POSTs with ``receiver``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            await send_reply(send, NOT_POST)
            return
        body = await read_body(receive)
        if body is None:
            await send_reply(send, TOO_LARGE)
            return
        await send_reply(send, await receiver.handle_async(body, scope_headers(scope)))

    return app
