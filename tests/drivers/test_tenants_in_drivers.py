"""The drivers' sender API is scoped by tenant, in both drivers (the shared driver body)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tests.cli.cli_helpers import handshake_then
from transports.aio.service import WebhookService
from transports.driving.operations import NotFound
from transports.stores.memory import MemoryStore
from transports.sync.service import ThreadedWebhookService
from transports.testing.loopback import LOOPBACK_NETWORKS, LoopbackReceiver
from webhook_core import ConfigError, DeliveryState, EndpointState, RetryPolicy

DATA = {"message_id": "m1", "channel": "sms", "to": "+919876543210", "status": "sent"}
OPTIONS: dict[str, Any] = {
    "allow_http": True,
    "allowed_networks": LOOPBACK_NETWORKS,
    "policy": RetryPolicy(schedule=(), timeout=5),
}


def test_the_threaded_driver_keeps_tenants_apart() -> None:
    with LoopbackReceiver() as rx, ThreadedWebhookService(MemoryStore(), **OPTIONS) as hooks:
        rx.default = handshake_then()
        acme = hooks.add_endpoint(rx.url("/acme"), tenant="acme")
        other = hooks.add_endpoint(rx.url("/default"))
        hooks.drain(timeout=10)
        assert hooks.get_endpoint(acme.id) is None
        current = hooks.get_endpoint(acme.id, tenant="acme")
        assert current is not None and current.state is EndpointState.ACTIVE
        assert [e.id for e in hooks.list_endpoints()] == [other.id]

        result = hooks.publish("message.sent", DATA, tenant="acme")
        assert result.deliveries == 1
        hooks.drain(timeout=10)
        (delivery,) = hooks.list_deliveries(tenant="acme")
        assert delivery.endpoint_id == acme.id and delivery.state is DeliveryState.DELIVERED
        assert [r.path for r in rx.requests_for("/acme")][-1] == "/acme"
        assert hooks.list_deliveries() == []
        assert hooks.get_delivery(delivery.id) is None
        with pytest.raises(NotFound):
            hooks.replay(delivery.id)
        with pytest.raises(NotFound):
            hooks.disable_endpoint(acme.id)
        with pytest.raises(ConfigError, match="tenant id"):
            hooks.publish("message.sent", DATA, tenant="not a tenant")


def test_the_async_driver_keeps_tenants_apart() -> None:
    async def main() -> None:
        async with WebhookService(MemoryStore(), **OPTIONS) as hooks:
            acme = await hooks.add_endpoint("http://127.0.0.1:9/acme", tenant="acme")
            assert await hooks.get_endpoint(acme.id) is None
            assert await hooks.list_endpoints(tenant="globex") == []
            assert (await hooks.publish("message.sent", DATA)).deliveries == 0
            with pytest.raises(NotFound):
                await hooks.remove_endpoint(acme.id, tenant="globex")
            await hooks.remove_endpoint(acme.id, tenant="acme")

    anyio.run(main, backend="trio")
