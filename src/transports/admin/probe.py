"""``POST /endpoints/{id}/test``: send one sample event to one endpoint now, and record it.

The attempt is made as the dispatcher makes one (``begin_attempt``, the same
signed request, the same deadline) but in the caller's request, with no
retries, and it does not count toward the endpoint's health. The event and its
delivery are stored afterwards under an event id starting with ``evttest_``:
that is how a delivery is marked as a test.
"""

from __future__ import annotations

from typing import Any

import attrs

from transports.clocks import Clock
from transports.driving import operations
from transports.http.transport import SyncHttpTransport
from transports.ids import new_id
from transports.stores.interface import Store
from transports.sync.service import send_with_deadline
from webhook_core import (
    ConfigError,
    Delivery,
    EndpointState,
    EventCatalog,
    Finish,
    RetryPolicy,
    begin_attempt,
    build_event,
    delivery_machine,
    new_delivery,
)
from webhook_core.samples import SAMPLES, sample_data

TEST_EVENT_PREFIX = "evttest"
_ONCE = RetryPolicy(schedule=())  # a test is attempted once
TIMEOUT = 15.0


def is_test(delivery: Delivery) -> bool:
    """True for a delivery that ``send_test`` made."""
    return delivery.event_id.startswith(TEST_EVENT_PREFIX + "_")


def send_test(
    store: Store,
    catalog: EventCatalog,
    http: SyncHttpTransport,
    clock: Clock,
    endpoint_id: str,
    event_name: str | None,
    tenant: str,
    data: Any = None,
) -> Delivery:
    """Send a sample event (or ``event_name`` with ``data``, checked against the catalog) to
    the tenant's endpoint now; return the stored delivery."""
    endpoint = operations.find_endpoint(store, endpoint_id, tenant)
    if endpoint is None:
        raise operations.NotFound(f"no endpoint with id {endpoint_id!r}")
    if endpoint.state is not EndpointState.ACTIVE:
        raise ConfigError(
            f"endpoint {endpoint.id} is {endpoint.state.value}; verify or enable it first"
        )
    name = event_name or next(
        (n for n in SAMPLES if n in catalog and endpoint.subscribes_to(n)), None
    )
    if name is None:
        raise ConfigError(f"endpoint {endpoint.id} subscribes to no event that has a sample")
    now = clock.now()
    event = build_event(
        catalog,
        name,
        sample_data(name) if data is None else data,
        event_id=new_id(TEST_EVENT_PREFIX),
        now=now,
        tenant=tenant,
    )
    started, request = begin_attempt(
        new_delivery(new_id("dlv"), event.id, endpoint.id, now), event, endpoint, now, _ONCE
    )
    if request is None:  # pragma: no cover - an active endpoint's fresh delivery is always sent
        raise ConfigError(f"endpoint {endpoint.id} cannot be sent to now")
    request = attrs.evolve(request, timeout=min(request.timeout, TIMEOUT))
    result, _ = send_with_deadline(http, request, clock)
    finished, _ = delivery_machine.apply(started, Finish(result), _ONCE)
    store.add_events([(event, [finished])])
    return finished
