"""The whole retry schedule observed in virtual time, under each driver."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from transports.aio.clock import AnyioClock
from transports.aio.service import WebhookService
from transports.clocks import VirtualClock
from transports.stores.memory import MemoryStore
from transports.testing.timetravel import (
    DEFAULT_EPOCH,
    RecordingReceiver,
    virtual_asyncio,
    virtual_trio,
)
from webhook_core import DeliveryState, EndpointState, HttpRequest, Outcome

URL = "https://receiver.example/hook"
DATA = {"message_id": "msg_1", "channel": "sms", "to": "+919876543210", "status": "failed"}
# The platform's schedule: 1 min, 5 min, 15 min, 1 h after the previous attempt ended.
EXPECTED_OFFSETS = [0.0, 60.0, 360.0, 1260.0, 4860.0]


async def walk_schedule() -> tuple[list[float], Any]:
    clock = AnyioClock(epoch=DEFAULT_EPOCH)
    receiver = RecordingReceiver(clock)
    receiver.script(URL, 500)
    async with WebhookService(MemoryStore(), http=receiver.as_async(), clock=clock) as hooks:
        endpoint = await hooks.add_endpoint(URL)
        await hooks.drain()
        assert (await hooks.get_endpoint(endpoint.id)).state is EndpointState.ACTIVE  # type: ignore[union-attr]
        await hooks.publish("message.failed", DATA)
        await hooks.drain()
        (delivery,) = await hooks.list_deliveries()
    offsets = [t - DEFAULT_EPOCH for t in receiver.times(URL)]
    return offsets, delivery


@pytest.mark.parametrize(
    ("backend", "options"), [("trio", virtual_trio), ("asyncio", virtual_asyncio)]
)
def test_full_schedule_in_virtual_time(backend: str, options: Any) -> None:
    started = time.perf_counter()
    offsets, delivery = anyio.run(walk_schedule, backend=backend, backend_options=options())
    wall = time.perf_counter() - started
    assert offsets == EXPECTED_OFFSETS
    assert delivery.state is DeliveryState.FAILED
    assert [a.status for a in delivery.attempts] == [500] * 5
    assert [a.started_at - DEFAULT_EPOCH for a in delivery.attempts] == EXPECTED_OFFSETS
    assert wall < 5.0, f"virtual time took {wall:.2f} s of wall time"


def test_full_schedule_in_virtual_time_threads() -> None:
    from transports.sync.service import ThreadedWebhookService

    clock = VirtualClock(DEFAULT_EPOCH)
    receiver = RecordingReceiver(clock)
    receiver.script(URL, 500)
    started = time.perf_counter()
    with ThreadedWebhookService(MemoryStore(), http=receiver.as_sync(), clock=clock) as hooks:
        hooks.add_endpoint(URL)
        hooks.drain(timeout=10)
        hooks.publish("message.failed", DATA)
        hooks.drain(timeout=10)
        (delivery,) = hooks.list_deliveries()
    wall = time.perf_counter() - started
    assert [t - DEFAULT_EPOCH for t in receiver.times(URL)] == EXPECTED_OFFSETS
    assert delivery.state is DeliveryState.FAILED
    assert wall < 5.0


def test_a_scripted_timeout_then_success_in_virtual_time() -> None:
    async def main() -> tuple[list[float], Any]:
        clock = AnyioClock(epoch=DEFAULT_EPOCH)
        receiver = RecordingReceiver(clock)
        receiver.script(URL, Outcome.TIMEOUT, 503, 200)
        async with WebhookService(MemoryStore(), http=receiver.as_async(), clock=clock) as hooks:
            await hooks.add_endpoint(URL)
            await hooks.drain()
            await hooks.publish("message.sent", DATA)
            await hooks.drain()
            (delivery,) = await hooks.list_deliveries()
        return [t - DEFAULT_EPOCH for t in receiver.times(URL)], delivery

    offsets, delivery = anyio.run(main, backend="trio", backend_options=virtual_trio())
    assert offsets == [0.0, 60.0, 360.0]
    assert [a.outcome for a in delivery.attempts] == [
        Outcome.TIMEOUT,
        Outcome.HTTP_ERROR,
        Outcome.SUCCESS,
    ]
    assert delivery.state is DeliveryState.DELIVERED


def test_recorded_requests_carry_the_attempt_number() -> None:
    async def main() -> list[HttpRequest]:
        clock = AnyioClock(epoch=DEFAULT_EPOCH)
        receiver = RecordingReceiver(clock)
        receiver.script(URL, 500, 500, 200)
        async with WebhookService(MemoryStore(), http=receiver.as_async(), clock=clock) as hooks:
            await hooks.add_endpoint(URL)
            await hooks.drain()
            await hooks.publish("message.sent", DATA)
            await hooks.drain()
        return [r.request for r in receiver.requests]

    requests = anyio.run(main, backend="asyncio", backend_options=virtual_asyncio())
    attempts = [dict(r.headers)["X-Netasampark-Attempt"] for r in requests]
    assert attempts == ["1", "2", "3"]
