"""One synchronous face for every driver, so one conformance suite runs on all of them.

The async service runs in its own event loop thread (an anyio blocking
portal, trio or asyncio); the threaded service is synchronous already.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread

from transports.h11http import H11SyncTransport, H11Transport
from transports.http import HttpxSyncTransport, HttpxTransport
from transports.memory import MemoryStore
from transports.service import WebhookService
from transports.sqlite import SQLiteStore
from transports.store import Store
from transports.testing import Handler, ReceivedRequest, Respond
from webhook_core import Endpoint, EndpointState

DRIVERS = ("trio", "asyncio", "threads")
STORES = ("memory", "sqlite")
TRANSPORTS = ("httpx", "h11")


def make_store(kind: str, directory: Path) -> Store:
    """A fresh store of the given kind (SQLite files go in ``directory``)."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(directory / "webhooks.db")
    raise ValueError(f"unknown store kind {kind!r}")


class PortalService:
    """Calls the async service's methods from this thread through a blocking portal."""

    def __init__(self, service: WebhookService, portal: anyio.from_thread.BlockingPortal) -> None:
        self.service = service
        self.portal = portal

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.service, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self.portal.call(lambda: method(*args, **kwargs))

        return call

    def drain(self, timeout: float = 20.0) -> None:
        async def bounded() -> None:
            with anyio.fail_after(timeout):
                await self.service.drain()

        self.portal.call(bounded)

    @property
    def store(self) -> Any:
        return self.service.store


def make_transport(kind: str, driver: str) -> Any:
    """A new HTTP transport of the given kind, blocking for the threaded driver."""
    blocking = driver == "threads"
    if kind == "httpx":
        return HttpxSyncTransport() if blocking else HttpxTransport()
    if kind == "h11":
        return H11SyncTransport() if blocking else H11Transport()
    raise ValueError(f"unknown transport kind {kind!r}")


@contextlib.contextmanager
def running(
    driver: str, store_kind: str = "memory", transport: str = "httpx", **options: Any
) -> Iterator[Any]:
    """A started service of the given driver, store and transport, stopped gracefully on exit."""
    options.setdefault("allow_http", True)
    if "store" not in options:
        options["store"] = make_store(store_kind, Path(tempfile.mkdtemp()))
    http = options.setdefault("http", make_transport(transport, driver))
    if driver == "threads":
        from transports.threaded import ThreadedWebhookService

        try:
            with ThreadedWebhookService(**options) as hooks:
                yield hooks
        finally:
            http.close()
        return
    with anyio.from_thread.start_blocking_portal(driver) as portal:
        service = WebhookService(**options)
        try:
            with portal.wrap_async_context_manager(service):
                yield PortalService(service, portal)
        finally:
            portal.call(http.aclose)


def handshake_answer(request: ReceivedRequest) -> Respond | None:
    """The right answer to a verification request, or None if it is not one."""
    body = request.json()
    if body.get("event") == "webhook.verification":
        return Respond(200, body["data"]["verification_token"].encode())
    return None


OK = Respond(200)


def verifying(then: Respond | Handler = OK) -> Handler:
    """A behaviour that answers handshakes correctly and everything else with ``then``."""

    def handle(request: ReceivedRequest) -> Any:
        answer = handshake_answer(request)
        if answer is not None:
            return answer
        if isinstance(then, Handler):
            return then.fn(request)
        return then

    return Handler(handle)


def wait_endpoint(
    hooks: Any, endpoint_id: str, state: EndpointState, timeout: float = 10.0
) -> Endpoint:
    """Poll until the endpoint reaches ``state``."""
    deadline = time.monotonic() + timeout
    while True:
        endpoint = hooks.get_endpoint(endpoint_id)
        if endpoint is not None and endpoint.state is state:
            return endpoint
        if time.monotonic() > deadline:
            raise AssertionError(
                f"endpoint stayed {endpoint.state if endpoint else None}, not {state}"
            )
        time.sleep(0.01)


def message(i: int = 0) -> dict[str, Any]:
    """A valid ``message.*`` data object."""
    return {
        "message_id": f"msg_{i}",
        "channel": "whatsapp",
        "to": "+919876543210",
        "status": "sent",
    }


def body_json(request: ReceivedRequest) -> Any:
    return json.loads(request.body)
