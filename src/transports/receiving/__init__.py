"""Receiving webhooks: a verifying, de-duplicating, routing receiver and framework adapters.

Framework adapters live in their own modules, each needing its extra:
``transports.receiving.starlette`` (Starlette, FastAPI), ``.flask``,
``.django``; ``asgi_app`` and ``wsgi_app`` need no framework at all.
``PostgresIdempotencyStore`` is in ``transports.receiving.postgres_idempotency``.
"""

from transports.receiving.asgi import asgi_app
from transports.receiving.background import ThreadWorkQueue
from transports.receiving.idempotency import (
    IdempotencyStore,
    MemoryIdempotencyStore,
    SQLiteIdempotencyStore,
)
from transports.receiving.receiver import DEFAULT_TTL, EventHandler, Receiver, WorkQueue
from transports.receiving.wsgi import wsgi_app
from webhook_core.receiving import MalformedBody, ReceivedEvent, Reply

__all__ = [
    "DEFAULT_TTL",
    "EventHandler",
    "IdempotencyStore",
    "MalformedBody",
    "MemoryIdempotencyStore",
    "ReceivedEvent",
    "Receiver",
    "Reply",
    "SQLiteIdempotencyStore",
    "ThreadWorkQueue",
    "WorkQueue",
    "asgi_app",
    "wsgi_app",
]
