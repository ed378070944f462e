"""Every driver sends through the lean HTTP/1.1 transport unless told otherwise.

The conformance suite (``tests/conformance``) runs every driver over the
default transport and over ``http="httpx"``; this checks which one the
default is, and that a transport name that is neither is refused.
"""

from __future__ import annotations

import anyio
import pytest

from transports.aio.service import WebhookService
from transports.http.httpx_transport import HttpxSyncTransport, HttpxTransport
from transports.http.lean import Http1SyncTransport
from transports.http.lean_async import Http1Transport
from transports.stores.memory import MemoryStore
from transports.sync.service import ThreadedWebhookService
from webhook_core import ConfigError


@pytest.mark.parametrize(
    ("http", "expected"), [(None, Http1SyncTransport), ("httpx", HttpxSyncTransport)]
)
def test_the_threaded_driver_makes_the_lean_transport_by_default(
    http: str | None, expected: type
) -> None:
    hooks = ThreadedWebhookService(MemoryStore(), http=http)
    with hooks:
        assert type(hooks._http) is expected
    assert hooks._http is None  # made by the driver, so closed by it


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize(("http", "expected"), [(None, Http1Transport), ("httpx", HttpxTransport)])
def test_the_async_driver_makes_the_lean_transport_by_default(
    backend: str, http: str | None, expected: type
) -> None:
    async def main() -> None:
        hooks = WebhookService(MemoryStore(), http=http)
        async with hooks:
            assert type(hooks._http) is expected
        assert hooks._http is None

    anyio.run(main, backend=backend)


@pytest.mark.parametrize("driver", [WebhookService, ThreadedWebhookService])
def test_an_unknown_transport_name_is_refused(driver: type) -> None:
    with pytest.raises(ConfigError, match="http must be a transport, 'http1' or 'httpx', not 'h2'"):
        driver(MemoryStore(), http="h2")
