"""HTTP requests the core asks drivers to send: deliveries and handshakes."""

from __future__ import annotations

import attrs

from webhook_core.delivery_machine import Delivery
from webhook_core.endpoint_machine import Endpoint
from webhook_core.envelope import Event
from webhook_core.signing import SIGNATURE_HEADER, Secret, platform_signature, webhook_signature
from webhook_core.statemachine import record_builder

USER_AGENT = "webhooks-delivery/0.1 (+python)"


@attrs.frozen(weakref_slot=False)  # no __weakref__ slot: see record_builder
class HttpRequest:
    """A signed POST: the driver sends exactly these bytes and headers, within ``timeout``."""

    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    timeout: float


_request_of = record_builder(HttpRequest)


def _headers(
    secrets: tuple[Secret, ...],
    event: Event,
    delivery_id: str,
    attempt: int,
    now: float,
    extra: tuple[tuple[str, str], ...],
    user_agent: str,
) -> tuple[tuple[str, str], ...]:
    stamp = str(int(now))
    return (
        ("Content-Type", "application/json"),
        ("User-Agent", user_agent),
        ("webhook-id", event.id),
        ("webhook-timestamp", stamp),
        ("webhook-signature", webhook_signature(secrets, event.id, stamp, event.body)),
        (SIGNATURE_HEADER, platform_signature(secrets[0], event.body)),
        ("X-Netasampark-Event", event.name),
        ("X-Netasampark-Delivery", delivery_id),
        ("X-Netasampark-Attempt", str(attempt)),
        *extra,
    )


def delivery_request(
    delivery: Delivery,
    event: Event,
    endpoint: Endpoint,
    now: float,
    timeout: float,
    user_agent: str = USER_AGENT,
) -> HttpRequest:
    """The signed request for the next attempt of ``delivery``, sent at ``now``."""
    headers = _headers(
        endpoint.signing_secrets(now),
        event,
        delivery.id,
        delivery.attempts_made + 1,
        now,
        endpoint.headers,
        user_agent,
    )
    return _request_of(endpoint.url, headers, event.body, timeout)


def verification_request(
    endpoint: Endpoint, event: Event, now: float, timeout: float, user_agent: str = USER_AGENT
) -> HttpRequest:
    """The signed handshake request; ``event`` is from ``envelope.verification_event``."""
    headers = _headers(
        endpoint.signing_secrets(now), event, event.id, 1, now, endpoint.headers, user_agent
    )
    return HttpRequest(endpoint.url, headers, event.body, timeout)
