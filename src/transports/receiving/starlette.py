"""Starlette and FastAPI: a request handler for a route of your own.

    app.add_route("/webhooks", webhook_endpoint(receiver), methods=["POST"])   # Starlette
    app.post("/webhooks")(webhook_endpoint(receiver))                         # FastAPI

Needs the ``asgi`` extra (``pip install 'webhooks-delivery[asgi]'``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from transports.receiving.receiver import Receiver
from webhook_core.canonical import MAX_BODY
from webhook_core.receiving import NOT_POST, TOO_LARGE, Reply


def _response(reply: Reply) -> Response:
    return Response(reply.body, status_code=reply.status, media_type=reply.content_type)


def webhook_endpoint(receiver: Receiver) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette/FastAPI handler that verifies and routes the request with ``receiver``."""

    async def webhook(request: Request) -> Response:
        if request.method != "POST":
            return _response(NOT_POST)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                return _response(TOO_LARGE)
            chunks.append(chunk)
        return _response(await receiver.handle_async(b"".join(chunks), request.headers))

    return webhook
