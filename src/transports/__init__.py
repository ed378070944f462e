"""Drivers that run the webhook core: HTTP, clocks, storage and runtimes.

The names below are the public API, each imported from its module on first
use (PEP 562), so ``import transports`` is cheap and the threaded driver never
loads anyio, trio or asyncio. ``PostgresStore`` needs the ``postgres`` extra;
the receiving toolkit is in ``transports.receiving`` and test helpers in
``transports.testing``.

Where things live:

- ``transports.http``: transports (httpx, lean HTTP/1.1), the outbound
  address guard, TLS settings and the HTTP/1.1 wire;
- ``transports.stores``: the ``Store`` interface, memory, SQLite, PostgreSQL;
- ``transports.driving``: what both drivers share (settings, operations);
- ``transports.aio``: the anyio driver (trio and asyncio);
- ``transports.sync``: the threaded driver;
- ``transports.clocks``: the ``Clock`` protocol, system and virtual clocks.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transports.aio.clock import AnyioClock
    from transports.aio.service import WebhookService
    from transports.clocks import Clock, SystemClock, VirtualClock
    from transports.driving.config import DriverConfig
    from transports.driving.operations import (
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
    from transports.http.guard import (
        BlockedAddress,
        OutboundPolicy,
        resolve_vetted,
        resolve_vetted_sync,
    )
    from transports.http.httpx_transport import HttpxSyncTransport, HttpxTransport
    from transports.http.lean import Http1SyncTransport
    from transports.http.lean_async import Http1Transport
    from transports.http.transport import (
        AsyncHttpTransport,
        HttpResponse,
        SyncHttpTransport,
        TransportError,
    )
    from transports.stores.interface import (
        Claimed,
        DeliveryFilter,
        DuplicateEvent,
        SchemaStatus,
        Store,
        Subscribable,
    )
    from transports.stores.memory import MemoryStore
    from transports.stores.postgres import PostgresStore
    from transports.stores.sqlite import SQLiteStore
    from transports.stores.url import open_store
    from transports.sync.service import ThreadedWebhookService

# Each public name and the module it is imported from on first use.
_MODULES = {
    "AnyioClock": "transports.aio.clock",
    "AsyncHttpTransport": "transports.http.transport",
    "BlockedAddress": "transports.http.guard",
    "Claimed": "transports.stores.interface",
    "Clock": "transports.clocks",
    "DeliveryFilter": "transports.stores.interface",
    "DriverConfig": "transports.driving.config",
    "DuplicateEvent": "transports.stores.interface",
    "Http1SyncTransport": "transports.http.lean",
    "Http1Transport": "transports.http.lean_async",
    "HttpResponse": "transports.http.transport",
    "HttpxSyncTransport": "transports.http.httpx_transport",
    "HttpxTransport": "transports.http.httpx_transport",
    "MemoryStore": "transports.stores.memory",
    "NotFound": "transports.driving.operations",
    "OutboundPolicy": "transports.http.guard",
    "PostgresStore": "transports.stores.postgres",
    "PublishResult": "transports.driving.operations",
    "Retention": "transports.driving.operations",
    "SQLiteStore": "transports.stores.sqlite",
    "SchemaStatus": "transports.stores.interface",
    "Store": "transports.stores.interface",
    "Subscribable": "transports.stores.interface",
    "SyncHttpTransport": "transports.http.transport",
    "SystemClock": "transports.clocks",
    "ThreadedWebhookService": "transports.sync.service",
    "TransportError": "transports.http.transport",
    "VirtualClock": "transports.clocks",
    "WebhookService": "transports.aio.service",
    "apply_retention": "transports.driving.operations",
    "open_store": "transports.stores.url",
    "publish": "transports.driving.operations",
    "publish_many": "transports.driving.operations",
    "record_outcomes": "transports.driving.operations",
    "replay_delivery": "transports.driving.operations",
    "replay_failed_since": "transports.driving.operations",
    "resolve_vetted": "transports.http.guard",
    "resolve_vetted_sync": "transports.http.guard",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'transports' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
