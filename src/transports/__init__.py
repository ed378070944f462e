"""Drivers that run the webhook core: HTTP, clocks, storage and runtimes.

The names below are the public API. ``PostgresStore`` needs the ``postgres``
extra and is imported on first use; the receiving toolkit is in
``transports.receiving`` and test helpers in ``transports.testing``.
"""

from typing import TYPE_CHECKING, Any

from transports.clocks import AnyioClock, Clock, SystemClock, VirtualClock
from transports.config import DriverConfig
from transports.guard import BlockedAddress, OutboundPolicy, resolve_vetted, resolve_vetted_sync
from transports.http import (
    AsyncHttpTransport,
    HttpResponse,
    HttpxSyncTransport,
    HttpxTransport,
    SyncHttpTransport,
    TransportError,
)
from transports.http1 import Http1SyncTransport, Http1Transport
from transports.memory import MemoryStore
from transports.operations import (
    NotFound,
    PublishResult,
    Retention,
    apply_retention,
    publish,
    publish_many,
    record_outcomes,
    replay_delivery,
    replay_failed_since,
)
from transports.service import WebhookService
from transports.sqlite import SQLiteStore
from transports.storage_url import open_store
from transports.store import (
    Claimed,
    DeliveryFilter,
    DuplicateEvent,
    SchemaStatus,
    Store,
    Subscribable,
)
from transports.threaded import ThreadedWebhookService

if TYPE_CHECKING:
    from transports.postgres import PostgresStore


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":
        from transports.postgres import PostgresStore  # noqa: PLC0415 (optional extra)

        return PostgresStore
    raise AttributeError(f"module 'transports' has no attribute {name!r}")


__all__ = [
    "AnyioClock",
    "AsyncHttpTransport",
    "BlockedAddress",
    "Claimed",
    "Clock",
    "DeliveryFilter",
    "DriverConfig",
    "DuplicateEvent",
    "Http1SyncTransport",
    "Http1Transport",
    "HttpResponse",
    "HttpxSyncTransport",
    "HttpxTransport",
    "MemoryStore",
    "NotFound",
    "OutboundPolicy",
    "PostgresStore",
    "PublishResult",
    "Retention",
    "SQLiteStore",
    "SchemaStatus",
    "Store",
    "Subscribable",
    "SyncHttpTransport",
    "SystemClock",
    "ThreadedWebhookService",
    "TransportError",
    "VirtualClock",
    "WebhookService",
    "apply_retention",
    "open_store",
    "publish",
    "publish_many",
    "record_outcomes",
    "replay_delivery",
    "replay_failed_since",
    "resolve_vetted",
    "resolve_vetted_sync",
]
