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
import pytest

from tests import pg
from transports.aio.service import WebhookService
from transports.stores.interface import Store
from transports.stores.memory import MemoryStore
from transports.stores.sqlite import SQLiteStore
from transports.testing import LOOPBACK_NETWORKS, Handler, ReceivedRequest, Respond
from webhook_core import Endpoint, EndpointState

DRIVERS = ("trio", "asyncio", "uvloop", "threads")
# The async drivers' event loops: "uvloop" is the asyncio driver on uvloop's loop, which
# uvicorn runs when uvloop is installed.
BACKENDS: dict[str, tuple[str, dict[str, Any]]] = {
    "trio": ("trio", {}),
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
}
STORES = ("memory", "sqlite", "postgres")
# "default": no ``http`` argument (the lean HTTP/1.1 transport); "httpx": ``http="httpx"``.
TRANSPORTS = ("default", "httpx")


def make_store(kind: str, directory: Path) -> Store:
    """A fresh store of the given kind (SQLite files go in ``directory``)."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(directory / "webhooks.db")
    if kind == "postgres":
        from transports.stores.postgres import PostgresStore

        return PostgresStore(pg.require_postgres(), schema=pg.fresh_schema())
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


@contextlib.contextmanager
def running(
    driver: str, store_kind: str = "memory", transport: str = "default", **options: Any
) -> Iterator[Any]:
    """A started service of the given driver, store and transport (``TRANSPORTS``), stopped
    gracefully on exit."""
    options.setdefault("allow_http", True)
    options.setdefault("allowed_networks", LOOPBACK_NETWORKS)
    if "store" not in options:
        options["store"] = make_store(store_kind, Path(tempfile.mkdtemp()))
    if transport != "default":
        options.setdefault("http", transport)  # made by the driver, with its outbound policy
    if driver == "threads":
        from transports.sync.service import ThreadedWebhookService

        with ThreadedWebhookService(**options) as hooks:
            yield hooks
        return
    if driver == "uvloop":
        pytest.importorskip("uvloop")
    backend, backend_options = BACKENDS[driver]
    with anyio.from_thread.start_blocking_portal(backend, backend_options) as portal:
        service = WebhookService(**options)
        with portal.wrap_async_context_manager(service):
            yield PortalService(service, portal)


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
        endpoint: Endpoint | None = hooks.get_endpoint(endpoint_id)
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
