"""Signed requests exactly as the sender makes them, for testing receivers."""

from __future__ import annotations

import time
from typing import Any

from transports.ids import new_id
from webhook_core import (
    Endpoint,
    EndpointSecret,
    EventCatalog,
    HttpRequest,
    build_event,
    delivery_request,
    new_delivery,
    platform_catalog,
)


def signed_request(
    event: str,
    data: Any,
    secret: str,
    *,
    url: str = "https://receiver.example/webhooks",
    now: float | None = None,
    event_id: str | None = None,
    catalog: EventCatalog | None = None,
    timeout: float = 30.0,
) -> HttpRequest:
    """The first attempt's request for ``event`` with ``data``, signed with ``secret``.

    The body and headers are byte for byte what the dispatcher sends
    (``request.body``, ``dict(request.headers)``); ``now`` defaults to the
    current time, so the timestamp is within a receiver's tolerance.
    """
    when = time.time() if now is None else now
    built = build_event(
        catalog if catalog is not None else platform_catalog(),
        event,
        data,
        event_id=event_id or new_id("evt"),
        now=when,
    )
    endpoint = Endpoint(
        id="ep_test", url=url, secrets=(EndpointSecret(secret, when),), created_at=when
    )
    delivery = new_delivery(new_id("dlv"), built.id, endpoint.id, when)
    return delivery_request(delivery, built, endpoint, when, timeout)
