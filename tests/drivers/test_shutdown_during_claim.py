"""Stopping the async service while the dispatcher waits on a slow claim loses nothing."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import anyio
import attrs
import pytest

from transports.aio.service import WebhookService
from transports.driving import operations
from transports.stores.interface import Claimed, DeliveryFilter
from transports.stores.memory import MemoryStore
from transports.testing import (
    LOOPBACK_NETWORKS,
    Handler,
    LoopbackReceiver,
    ReceivedRequest,
    Respond,
)
from webhook_core import DeliveryState, EndpointState, RetryPolicy, platform_catalog

DATA = {"message_id": "m", "channel": "sms", "to": "+919876543210", "status": "sent"}


def active_endpoint(store: MemoryStore, url: str) -> None:
    """An endpoint at ``url``, verified as if its handshake had passed."""
    endpoint = operations.add_endpoint(store, url, 0.0, allow_http=True)
    store.save_endpoint(attrs.evolve(endpoint, state=EndpointState.ACTIVE, verification_token=None))


class SlowClaims(MemoryStore):
    """A store whose claims take long, like a busy database (called from worker threads)."""

    blocking = True

    def __init__(self) -> None:
        super().__init__()
        self.claiming = threading.Event()
        self.stopping = threading.Event()

    def claim(self, now: float, limit: int, worker: str, lease_until: float) -> list[Claimed]:
        self.claiming.set()
        self.stopping.wait(10)
        return super().claim(now, limit, worker, lease_until)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_claims_returned_after_stopping_are_released_not_sent(backend: str) -> None:
    store = SlowClaims()

    async def main(url: str) -> None:
        active_endpoint(store, url)
        operations.publish(store, platform_catalog(), "message.sent", DATA, 0.0)
        service = WebhookService(
            store, allow_http=True, allowed_networks=LOOPBACK_NETWORKS, poll_interval=0.05
        )
        async with service:
            await anyio.to_thread.run_sync(store.claiming.wait, 10)
            threading.Timer(0.2, store.stopping.set).start()

    with LoopbackReceiver(default=Respond(200)) as rx:
        anyio.run(main, rx.url("/hook"), backend=backend)
        assert rx.requests == []
    (delivery,) = store.list_deliveries()
    assert delivery.state is DeliveryState.PENDING
    assert store.claim(1.0, 10, "next", 100.0)[0].delivery.id == delivery.id


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_error_inside_the_service_is_the_only_error_raised(backend: str) -> None:
    class Boom(Exception):
        pass

    store = MemoryStore()

    async def main(url: str) -> None:
        active_endpoint(store, url)
        async with WebhookService(
            store, allow_http=True, allowed_networks=LOOPBACK_NETWORKS, max_in_flight=8
        ) as hooks:
            for _ in range(200):
                await hooks.publish("message.sent", DATA)
            await anyio.sleep(0.05)
            raise Boom

    with LoopbackReceiver(default=Respond(200)) as rx:
        with pytest.raises(BaseException) as raised:
            anyio.run(main, rx.url("/hook"), backend=backend)
        assert rx.requests, "the service was sending when the error came"
    errors = (
        list(raised.value.exceptions)
        if isinstance(raised.value, BaseExceptionGroup)
        else [raised.value]
    )
    assert [type(e) for e in errors] == [Boom]


class CountedReleases(MemoryStore):
    """A memory store that records each ``release`` call's ids."""

    def __init__(self) -> None:
        super().__init__()
        self.releases: list[list[str]] = []

    def release(self, delivery_ids: Sequence[str], worker: str) -> None:
        self.releases.append(list(delivery_ids))
        super().release(delivery_ids, worker)


@pytest.mark.parametrize(
    ("timeout", "queued"),
    [
        (30.0, 3),  # lease 60 s: a queued claim may wait (60 - 30 - 5) / 30 of a round
        (5.0, 8),  # lease 35 s: five rounds would fit, two is the most queued
    ],
)
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_claims_queued_ahead_of_the_workers_are_released_on_exit(
    backend: str, timeout: float, queued: int
) -> None:
    """The dispatcher claims more than its four workers can send at once, as many as
    the lease leaves time for; leaving the service gives those back in one call."""
    store = CountedReleases()
    answering = threading.Event()
    arrived = threading.Semaphore(0)

    def hold(request: ReceivedRequest) -> Respond:
        arrived.release()
        answering.wait(10)
        return Respond(200)

    async def main(url: str) -> None:
        active_endpoint(store, url)
        for _ in range(20):
            operations.publish(store, platform_catalog(), "message.sent", DATA, 0.0)
        async with WebhookService(
            store,
            allow_http=True,
            allowed_networks=LOOPBACK_NETWORKS,
            max_in_flight=4,
            policy=RetryPolicy(timeout=timeout),
        ):
            for _ in range(4):
                assert await anyio.to_thread.run_sync(arrived.acquire, True, 10)
            leased = store.count_deliveries(DeliveryFilter(state=DeliveryState.IN_FLIGHT))
            assert leased == 4 + queued
            threading.Timer(0.2, answering.set).start()

    with LoopbackReceiver(default=Handler(hold)) as rx:
        anyio.run(main, rx.url("/hook"), backend=backend)
        assert len(rx.requests) == 4
    states = [d.state for d in store.list_deliveries()]
    assert states.count(DeliveryState.DELIVERED) == 4
    assert states.count(DeliveryState.PENDING) == 16
    assert [len(ids) for ids in store.releases] == [queued]
    assert len(store.claim(1.0, 20, "next", 100.0)) == 16


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_quick_attempts_let_the_dispatcher_queue_more(backend: str) -> None:
    """At the default 30 s deadline and 60 s lease the dispatcher first queues what
    could wait for attempts that each take the whole deadline (3 for 4 workers); once
    100 attempts have answered at once, it queues the most it ever does (8)."""
    store = MemoryStore()
    answering = threading.Event()
    arrived = threading.Semaphore(0)
    quick = 100

    def answer(request: ReceivedRequest) -> Respond:
        arrived.release()
        if len(rx.requests) > quick:
            answering.wait(10)
        return Respond(200)

    async def main(url: str) -> None:
        active_endpoint(store, url)
        async with WebhookService(
            store, allow_http=True, allowed_networks=LOOPBACK_NETWORKS, max_in_flight=4
        ) as hooks:
            for _ in range(quick + 20):
                await hooks.publish("message.sent", DATA)
            for _ in range(quick + 4):
                assert await anyio.to_thread.run_sync(arrived.acquire, True, 10)
            with anyio.fail_after(10):
                while store.count_deliveries(DeliveryFilter(state=DeliveryState.DELIVERED)) < quick:
                    await anyio.sleep(0.01)
                await anyio.sleep(0.1)  # the dispatcher claims again after the last quick one
            leased = store.count_deliveries(DeliveryFilter(state=DeliveryState.IN_FLIGHT))
            assert leased == 4 + 8
            answering.set()

    with LoopbackReceiver(default=Handler(answer)) as rx:
        anyio.run(main, rx.url("/hook"), backend=backend)
    states = [d.state for d in store.list_deliveries(limit=200)]
    assert states.count(DeliveryState.DELIVERED) == quick + 4
    assert states.count(DeliveryState.PENDING) == 16
