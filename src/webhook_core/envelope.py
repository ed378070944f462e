"""Events as they go on the wire: the envelope and its canonical body bytes."""

from __future__ import annotations

import re
from typing import Any

import attrs

from webhook_core.canonical import canonical_json, check_depth
from webhook_core.catalog import EventCatalog
from webhook_core.errors import PayloadError
from webhook_core.tenants import DEFAULT_TENANT
from webhook_core.timefmt import rfc3339

_ID = re.compile(r"[A-Za-z0-9_\-:]{1,128}\Z")

VERIFICATION_EVENT = "webhook.verification"


def validate_id(value: object, what: str) -> str:
    """Return ``value`` if it is a usable id (1-128 of ``A-Z a-z 0-9 _ - :``)."""
    if not isinstance(value, str) or not _ID.match(value):
        raise PayloadError(
            what, f"{value!r} is not a valid id (1-128 characters of A-Z, a-z, 0-9, '_', '-', ':')"
        )
    return value


@attrs.frozen
class Event:
    """A published event: its id, name, creation time and the exact bytes that are sent.

    ``trace_context`` is the W3C ``traceparent`` of the span current when it was
    published (stored beside the body, never in it), when tracing is on.
    """

    id: str
    name: str
    created_at: float
    body: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    tenant: str = DEFAULT_TENANT
    """Whose event it is (see ``webhook_core.tenants``)."""
    trace_context: str | None = None

    @property
    def timestamp(self) -> str:
        """The envelope's ``timestamp`` (RFC 3339, UTC, ``Z``)."""
        return rfc3339(self.created_at)


def envelope_bytes(name: str, timestamp: str, data: Any, event_id: str) -> bytes:
    """The canonical body ``{"event", "timestamp", "data", "id"}`` for already-validated data."""
    return canonical_json({"event": name, "timestamp": timestamp, "data": data, "id": event_id})


def build_event(
    catalog: EventCatalog,
    name: str,
    data: Any,
    *,
    event_id: str,
    now: float,
    tenant: str = DEFAULT_TENANT,
    trace_context: str | None = None,
) -> Event:
    """Validate ``data`` against the catalog and encode the event's body.

    Raises ``UnknownEvent``/``InvalidEventName`` for the name and ``PayloadError``
    (naming the field) for data that does not match the model or cannot survive
    JavaScript's ``JSON.stringify(JSON.parse(body))`` round trip, or whose body
    would be larger than the catalog's ``max_body``.
    """
    validate_id(event_id, "id")
    check_depth(data, "$.data", 1)
    json_data = catalog.to_json(name, data)
    # What envelope_bytes writes, around the data encoded alone: the name (a
    # catalog's), the timestamp and the id (validated) hold nothing JSON escapes,
    # and check_depth has already refused data too deep for the whole envelope.
    body = b'{"event":"%b","timestamp":"%b","data":%b,"id":"%b"}' % (
        name.encode(),
        rfc3339(now).encode(),
        canonical_json(json_data, "$.data"),
        event_id.encode(),
    )
    if len(body) > catalog.max_body:
        raise PayloadError(
            "data",
            f"the event body would be {len(body)} bytes, over the limit of {catalog.max_body} "
            "(receivers refuse larger bodies); send less data, e.g. a reference to fetch",
        )
    return Event(
        id=event_id,
        name=name,
        created_at=now,
        body=body,
        tenant=tenant,
        trace_context=trace_context,
    )


def verification_event(token: str, *, event_id: str, now: float) -> Event:
    """The handshake request's event: ``webhook.verification`` carrying the token."""
    validate_id(event_id, "id")
    body = envelope_bytes(VERIFICATION_EVENT, rfc3339(now), {"verification_token": token}, event_id)
    return Event(id=event_id, name=VERIFICATION_EVENT, created_at=now, body=body)
