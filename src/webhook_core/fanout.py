"""Fan-out: one event becomes one delivery per subscribed, active endpoint."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from webhook_core.delivery import Delivery, DeliveryState
from webhook_core.endpoint import Endpoint, EndpointState
from webhook_core.envelope import Event


def fan_out(
    event: Event, endpoints: Iterable[Endpoint], *, new_id: Callable[[], str], now: float
) -> list[Delivery]:
    """Pending deliveries of ``event`` to every active endpoint whose patterns select it.

    Unverified, verifying and disabled endpoints get nothing.
    """
    name, event_id, pending = event.name, event.id, DeliveryState.PENDING
    return [
        Delivery(new_id(), event_id, e.id, now, pending, now)
        for e in endpoints
        if e.state is EndpointState.ACTIVE and e.subscribes_to(name)
    ]
