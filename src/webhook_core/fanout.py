"""Fan-out: one event becomes one delivery per subscribed, active endpoint."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from webhook_core.delivery_machine import PENDING, Delivery, delivery_of
from webhook_core.endpoint_machine import ACTIVE, Endpoint
from webhook_core.envelope import Event


def fan_out(
    event: Event, endpoints: Iterable[Endpoint], *, new_id: Callable[[], str], now: float
) -> list[Delivery]:
    """Pending deliveries of ``event`` to every active endpoint whose patterns select it.

    Unverified, verifying and disabled endpoints get nothing.
    """
    return _deliveries(event, _subscribers(endpoints, event.name), new_id, now)


def fan_out_many(
    events: Iterable[Event],
    endpoints: Sequence[Endpoint],
    *,
    new_id: Callable[[], str],
    now: float,
    subscribers: dict[str, list[Endpoint]] | None = None,
) -> list[tuple[Event, Sequence[Delivery]]]:
    """Each event with its ``fan_out``; the subscribers of each event name are found once.

    ``subscribers`` (event name to subscribed endpoints) keeps them across calls
    given the same ``endpoints``: pass one dict to each, and it is filled as names
    come up.
    """
    by_name = {} if subscribers is None else subscribers
    fanned: list[tuple[Event, Sequence[Delivery]]] = []
    for event in events:
        targets = by_name.get(event.name)
        if targets is None:
            targets = by_name[event.name] = _subscribers(endpoints, event.name)
        fanned.append((event, _deliveries(event, targets, new_id, now)))
    return fanned


def _subscribers(endpoints: Iterable[Endpoint], name: str) -> list[Endpoint]:
    return [e for e in endpoints if e.state is ACTIVE and e.subscribes_to(name)]


def _deliveries(
    event: Event, targets: list[Endpoint], new_id: Callable[[], str], now: float
) -> list[Delivery]:
    event_id, pending = event.id, PENDING
    return [delivery_of(new_id(), event_id, e.id, now, pending, now) for e in targets]
