"""``ensure_endpoint`` and ``wait_until_verified`` on every driver, against real receivers.

A service that restarts calls ``ensure_endpoint`` again and must get its
endpoint back, not a second one; ``wait_until_verified`` waits for one
handshake (not for deliveries, as ``drain`` does) on the driver's progress
signal, not by polling the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.cli.cli_helpers import handshake_then
from transports.aio.service import WebhookService
from transports.driving.operations import NotFound
from transports.stores.memory import MemoryStore
from transports.stores.sqlite import SQLiteStore
from transports.sync.service import ThreadedWebhookService
from transports.testing import LOOPBACK_NETWORKS, Delay, LoopbackReceiver, Respond
from webhook_core import ConfigError, DeliveryState, Endpoint, EndpointState, RetryPolicy

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MESSAGE = {"message_id": "m1", "channel": "sms", "to": "+919800000000", "status": "sent"}
LOOPBACK: dict[str, Any] = {"allow_http": True, "allowed_networks": LOOPBACK_NETWORKS}


@pytest.fixture
def rx() -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver() as receiver:
        receiver.route("/ok", handshake_then())
        receiver.route("/refuses", Respond(403, b"no"))
        receiver.route("/slow", Delay(2.0, Respond(200, b"wrong token")))
        receiver.route("/failing", handshake_then(Respond(500, b"down")))
        yield receiver


@pytest.fixture(params=["threads", "trio", "asyncio"])
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Driver:
    """One driver behind a synchronous face, so each test is written once for all three."""

    def __init__(self, runtime: str, store: Any, **options: Any) -> None:
        self.runtime = runtime
        self.store = store
        self.options = options

    def run(self, scenario: Callable[[Callable[..., Any]], Any]) -> Any:
        """``scenario(call)`` with a running driver; ``call("method", ...)`` calls it."""
        if self.runtime == "threads":
            with ThreadedWebhookService(self.store, **self.options) as hooks:
                return scenario(lambda name, *a, **k: getattr(hooks, name)(*a, **k))

        async def main() -> Any:
            async with WebhookService(self.store, **self.options) as hooks:
                return await anyio.to_thread.run_sync(
                    scenario,
                    lambda name, *a, **k: anyio.from_thread.run(
                        lambda: getattr(hooks, name)(*a, **k)
                    ),
                )

        return anyio.run(main, backend=self.runtime)


def test_ensure_endpoint_survives_a_restart(
    runtime: str, rx: LoopbackReceiver, tmp_path: Path
) -> None:
    path = tmp_path / "hooks.db"
    url = rx.url("/ok")

    def start(call: Callable[..., Any]) -> Endpoint:
        endpoint: Endpoint = call("ensure_endpoint", url, events=["message.*"], secret=SECRET)
        again: Endpoint = call("ensure_endpoint", url, events=["message.*"], secret=SECRET)
        assert again.id == endpoint.id
        verified: Endpoint = call("wait_until_verified", endpoint.id, 30)
        assert verified.state is EndpointState.ACTIVE
        return endpoint

    first = Driver(runtime, SQLiteStore(path), **LOOPBACK).run(start)
    second = Driver(runtime, SQLiteStore(path), **LOOPBACK).run(start)
    assert second.id == first.id
    store = SQLiteStore(path)
    [endpoint] = store.list_endpoints()
    store.close()
    assert endpoint.state is EndpointState.ACTIVE and endpoint.secrets[0].value == SECRET


def test_ensure_endpoint_changes_events_and_refuses_another_secret(runtime: str) -> None:
    def scenario(call: Callable[..., Any]) -> None:
        endpoint = call("ensure_endpoint", "https://hooks.example.com/in", events=["message.*"])
        changed = call("ensure_endpoint", "https://hooks.example.com/in", events=["payment.*"])
        # The same endpoint (its handshake to an unresolvable host may end meanwhile).
        assert (changed.id, changed.filters, changed.secrets) == (
            endpoint.id,
            ("payment.*",),
            endpoint.secrets,
        )
        with pytest.raises(ConfigError, match="has another secret; change it with rotate_secret"):
            call("ensure_endpoint", "https://hooks.example.com/in", secret=SECRET)
        with pytest.raises(ConfigError, match="matches no known event"):
            call("ensure_endpoint", "https://hooks.example.com/in", events=["bogus.event"])
        call("add_endpoint", "https://hooks.example.com/in", allow_duplicate=True)
        with pytest.raises(ConfigError, match="2 endpoints have URL"):
            call("ensure_endpoint", "https://hooks.example.com/in")

    Driver(runtime, MemoryStore()).run(scenario)


def test_wait_until_verified_returns_the_outcome_of_the_handshake(
    runtime: str, rx: LoopbackReceiver
) -> None:
    def scenario(call: Callable[..., Any]) -> None:
        ok = call("add_endpoint", rx.url("/ok"), secret=SECRET)
        refused = call("add_endpoint", rx.url("/refuses"), secret=SECRET)
        assert call("wait_until_verified", ok.id, 30).state is EndpointState.ACTIVE
        answer = call("wait_until_verified", refused.id, 30)
        assert answer.state is EndpointState.UNVERIFIED and "403" in answer.last_error
        with pytest.raises(NotFound):
            call("wait_until_verified", "ep_missing", 1)

    Driver(runtime, MemoryStore(), **LOOPBACK).run(scenario)


def test_wait_until_verified_does_not_wait_for_retrying_deliveries(
    runtime: str, rx: LoopbackReceiver
) -> None:
    policy = RetryPolicy(schedule=(600.0,), timeout=5.0)

    def scenario(call: Callable[..., Any]) -> None:
        failing = call("add_endpoint", rx.url("/failing"), secret=SECRET)
        assert call("wait_until_verified", failing.id, 30).state is EndpointState.ACTIVE
        call("publish", "message.sent", MESSAGE)
        while not call("list_deliveries")[0].attempts:
            time.sleep(0.02)
        [delivery] = call("list_deliveries")
        assert delivery.state is DeliveryState.RETRY_SCHEDULED  # next attempt in 10 minutes
        fresh = call("add_endpoint", rx.url("/ok"), secret=SECRET)
        assert call("wait_until_verified", fresh.id, 30).state is EndpointState.ACTIVE

    Driver(runtime, MemoryStore(), policy=policy, **LOOPBACK).run(scenario)


class CountingStore(MemoryStore):
    """A memory store that counts ``get_endpoint`` calls (how often a waiter reads the store)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        self.reads += 1
        return super().get_endpoint(endpoint_id)


def test_waiting_reads_the_store_on_progress_not_in_a_loop(
    runtime: str, rx: LoopbackReceiver
) -> None:
    store = CountingStore()

    def scenario(call: Callable[..., Any]) -> None:
        slow = call("add_endpoint", rx.url("/slow"), secret=SECRET)
        store.reads = 0
        with pytest.raises(TimeoutError, match=f"endpoint {slow.id} is still verifying after 0.5"):
            call("wait_until_verified", slow.id, 0.5)
        assert store.reads <= 3  # once, and once per wake-up (none came)
        answer = call("wait_until_verified", slow.id, 30)
        assert answer.state is EndpointState.UNVERIFIED  # the slow receiver echoes no token
        assert store.reads <= 10

    Driver(runtime, store, **LOOPBACK).run(scenario)
