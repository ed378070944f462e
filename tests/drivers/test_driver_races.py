"""Races the stateful test found in the drivers, each reproduced with a store that is
only slower (as database round trips are), never different in its results."""

from __future__ import annotations

import threading
import time
from typing import Any

import attrs
import pytest

from transports.clocks import VirtualClock
from transports.driving import operations
from transports.stores.interface import ALL_DELIVERIES, Claimed, DeliveryFilter
from transports.stores.memory import MemoryStore
from transports.sync.service import ThreadedWebhookService
from transports.testing import RecordingReceiver
from webhook_core import DeliveryState, Endpoint, EndpointState

URL = "https://a.receiver.example/hook"
DATA = {"message_id": "m1", "channel": "sms", "to": "+919800000000", "status": "sent"}


class SlowClaimsAndCounts(MemoryStore):
    def claim(self, now: float, limit: int, worker: str, lease_until: float) -> list[Claimed]:
        time.sleep(0.2)
        return super().claim(now, limit, worker, lease_until)

    def count_deliveries(self, where: DeliveryFilter = ALL_DELIVERIES) -> int:
        delays = {DeliveryState.PENDING: 0.3, DeliveryState.IN_FLIGHT: 0.2}
        time.sleep(delays.get(where.state, 0.0) if where.state else 0.0)
        return super().count_deliveries(where)


class SlowReceiver(RecordingReceiver):
    def handle(self, request: Any) -> Any:
        time.sleep(0.2)
        return super().handle(request)


def test_threaded_drain_does_not_return_while_a_delivery_is_open() -> None:
    clock = VirtualClock(autojump=False)
    receiver = SlowReceiver(clock)
    store = SlowClaimsAndCounts()
    with ThreadedWebhookService(store, http=receiver.as_sync(), clock=clock) as hooks:
        hooks.add_endpoint(URL)
        hooks.drain(timeout=10)
        receiver.script(URL, 503)
        hooks.publish("message.sent", DATA)
        with pytest.raises(TimeoutError):
            hooks.drain(timeout=3)  # frozen time: the retry never becomes due
        (delivery,) = hooks.list_deliveries()
        assert delivery.state is DeliveryState.RETRY_SCHEDULED


class SlowEndpointReads(MemoryStore):
    def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        time.sleep(0.1)
        return super().get_endpoint(endpoint_id)


def test_two_simultaneous_disables_leave_one_disabled_endpoint_and_no_error() -> None:
    store = SlowEndpointReads()
    endpoint = operations.add_endpoint(store, "https://example.com/hook", 0.0)
    store.save_endpoint(attrs.evolve(endpoint, state=EndpointState.ACTIVE))
    errors: list[BaseException] = []

    def disable() -> None:
        try:
            operations.disable_if_enabled(store, endpoint.id, 1.0, "410 Gone")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=disable) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.05)  # the second checks while active, then reads it disabled
    for t in threads:
        t.join(10)
    assert errors == []
    stored = store.get_endpoint(endpoint.id)
    assert stored is not None and stored.state is EndpointState.DISABLED
