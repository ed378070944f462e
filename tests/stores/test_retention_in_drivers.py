"""Every driver prunes finished deliveries by its retention settings, and keeps the rest."""

from __future__ import annotations

import time

import pytest

from tests.conformance.harness import DRIVERS, message, running, verifying, wait_endpoint
from transports.driving.operations import Retention
from transports.stores.interface import DeliveryFilter
from transports.testing import LoopbackReceiver, Respond
from webhook_core import DeliveryState, EndpointState


@pytest.mark.parametrize("driver", DRIVERS)
def test_delivered_records_are_pruned_after_the_retention_period(driver: str) -> None:
    with (
        LoopbackReceiver(default=verifying()) as rx,
        running(
            driver,
            "sqlite",
            retention=Retention(delivered=0.5),
            retention_interval=0.2,
            poll_interval=0.1,
        ) as hooks,
    ):
        endpoint = hooks.add_endpoint(rx.url("/hook"))
        wait_endpoint(hooks, endpoint.id, EndpointState.ACTIVE)
        rx.route("/hook", Respond(200))
        result = hooks.publish("message.sent", message(1))
        rx.wait_for_path("/hook", 2, timeout=10)
        deadline = time.monotonic() + 15
        while hooks.store.count_deliveries() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hooks.store.count_deliveries() == 0
        assert hooks.store.get_event(result.event.id) is None


@pytest.mark.parametrize("driver", DRIVERS)
def test_without_retention_nothing_is_pruned(driver: str) -> None:
    with (
        LoopbackReceiver(default=verifying()) as rx,
        running(driver, "sqlite", retention_interval=0.1, poll_interval=0.1) as hooks,
    ):
        endpoint = hooks.add_endpoint(rx.url("/hook"))
        wait_endpoint(hooks, endpoint.id, EndpointState.ACTIVE)
        hooks.publish("message.sent", message(1))
        hooks.drain()
        time.sleep(0.5)
        delivered = DeliveryFilter(state=DeliveryState.DELIVERED)
        assert hooks.store.count_deliveries(delivered) == 1
