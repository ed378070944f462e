"""Receiving webhooks, sans-IO: what a request is and what to answer to it.

Theory of operation
-------------------
A receiver decides in steps, each a pure function of the request's raw body
bytes, its headers and the time ``now``:

0. A body over ``MAX_BODY`` bytes is refused unread: 413.
1. ``Verifier.verify`` checks a signature over the raw body (never a
   re-serialised one) and the timestamp's tolerance. Failure: 401 (a body
   that verifies but is not UTF-8: 400).
2. ``parse_envelope`` reads the body as the wire contract's envelope
   (``event``, ``timestamp``, ``data``, ``id``). Failure, including JSON
   nested too deep to read and ``NaN`` or ``Infinity``: 400.
3. ``webhook.verification`` is the sender's handshake: ``handshake_reply``
   answers its token; nothing else happens.
4. Anything else becomes a ``ReceivedEvent`` whose ``data`` is structured by
   the event catalog (``decode_event``; data that does not fit the model: 400).
   The caller (``transports.receiving.Receiver``) de-duplicates it by
   ``dedup_key`` and runs the handlers whose pattern ``Routes`` matches.

``check_request`` runs steps 0 to 2; ``rejection_reply`` turns either error
into the answer, so a verification problem is always a 4xx, never a 500.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import attrs

from webhook_core.canonical import MAX_BODY
from webhook_core.catalog import EventCatalog
from webhook_core.envelope import VERIFICATION_EVENT
from webhook_core.errors import PayloadError, VerificationError, WebhookError
from webhook_core.names import pattern_matches, validate_event_name, validate_pattern
from webhook_core.signing import BodyNotUTF8, VerifiedRequest, Verifier
from webhook_core.timefmt import parse_rfc3339

D = TypeVar("D")
H = TypeVar("H")


_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


class MalformedBody(WebhookError, ValueError):
    """A signed body that is not the wire contract's envelope (the receiver answers 400)."""


class BodyTooLarge(MalformedBody):
    """A body over ``MAX_BODY`` bytes, refused before it is verified (the receiver answers 413)."""


def _refuse_constant(name: str) -> Any:
    raise MalformedBody(f"the body holds {name}, which is not JSON; send numbers only")


@attrs.frozen
class Reply:
    """The HTTP answer a receiver gives: status, body and content type."""

    status: int
    body: bytes
    content_type: str = _TEXT


@attrs.frozen
class Envelope:
    """A parsed request body: the event name, its id, its timestamp and its raw ``data``."""

    event: str
    id: str | None
    timestamp: str
    created_at: float
    data: dict[str, Any]


@attrs.frozen
class ReceivedEvent(Generic[D]):
    """A verified event as handlers see it; ``data`` is the catalog's model for ``name``.

    ``id`` is the event id (stable across retries); ``delivery_id`` and
    ``attempt`` come from the ``X-Netasampark-Delivery`` and
    ``X-Netasampark-Attempt`` headers when the sender set them; ``body`` is the
    exact bytes that were verified.
    """

    name: str
    id: str | None
    timestamp: str
    created_at: float
    data: D
    body: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")
    delivery_id: str | None = None
    attempt: int | None = None


def parse_envelope(body: bytes) -> Envelope:
    """Read ``body`` as an envelope; ``MalformedBody`` naming what is wrong."""
    try:
        document = json.loads(body, parse_constant=_refuse_constant)
    except MalformedBody:
        raise
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedBody(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise MalformedBody("the body is JSON nested too deeply to read") from None
    if not isinstance(document, dict):
        raise MalformedBody(f"the body is a JSON {type(document).__name__}, not an object")
    name = document.get("event")
    if name is None:
        raise MalformedBody("the body has no 'event' field")
    try:
        validate_event_name(name)
    except WebhookError as exc:
        raise MalformedBody(f"event: {exc}") from None
    timestamp = document.get("timestamp")
    try:
        created_at = parse_rfc3339(timestamp)  # type: ignore[arg-type]
    except PayloadError as exc:
        raise MalformedBody(str(exc)) from None
    data = document.get("data")
    if not isinstance(data, dict):
        raise MalformedBody("data: expected an object")
    event_id = document.get("id")
    if event_id is not None and not isinstance(event_id, str):
        raise MalformedBody("id: expected a string")
    return Envelope(name, event_id, timestamp, created_at, data)  # type: ignore[arg-type]


def check_request(
    verifier: Verifier,
    body: bytes,
    headers: Mapping[str, str],
    now: float,
    *,
    allow_platform_only: bool = False,
) -> tuple[VerifiedRequest, Envelope]:
    """Verify the signature over the raw ``body``, then parse it.

    Raises ``VerificationError`` (answer 401) or ``MalformedBody`` (answer 400;
    ``BodyTooLarge``, 413).
    """
    if len(body) > MAX_BODY:
        raise BodyTooLarge(f"the body is larger than {MAX_BODY} bytes")
    verified = verifier.verify(body, headers, now, allow_platform_only=allow_platform_only)
    return verified, parse_envelope(body)


def dedup_key(verified: VerifiedRequest, envelope: Envelope) -> str | None:
    """The id to de-duplicate on: the signed ``webhook-id``, else the body's ``id``."""
    return verified.msg_id if verified.msg_id is not None else envelope.id


def is_handshake(envelope: Envelope) -> bool:
    """True for the sender's endpoint verification request."""
    return envelope.event == VERIFICATION_EVENT


def handshake_reply(envelope: Envelope) -> Reply:
    """200 with ``{"verification_token": ...}``; 400 if the handshake carries no token."""
    token = envelope.data.get("verification_token")
    if not isinstance(token, str) or not token:
        return rejection_reply(MalformedBody("data.verification_token: expected a string"))
    return Reply(200, json.dumps({"verification_token": token}).encode(), _JSON)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def decode_event(
    catalog: EventCatalog, envelope: Envelope, body: bytes, headers: Mapping[str, str]
) -> ReceivedEvent[Any]:
    """The handlers' view of an event: ``data`` structured by the catalog's model.

    Names the catalog does not know keep ``data`` as a dict. Data that does not
    fit its model raises ``MalformedBody`` naming the field.
    """
    data: Any = envelope.data
    if envelope.event in catalog:
        try:
            data = catalog.from_json(envelope.event, envelope.data)
        except PayloadError as exc:
            raise MalformedBody(str(exc)) from None
    attempt = _header(headers, "X-Netasampark-Attempt")
    return ReceivedEvent(
        envelope.event,
        envelope.id,
        envelope.timestamp,
        envelope.created_at,
        data,
        body,
        _header(headers, "X-Netasampark-Delivery"),
        int(attempt) if attempt is not None and attempt.isdigit() else None,
    )


def rejection_reply(error: VerificationError | MalformedBody) -> Reply:
    """401 for a signature that does not verify, 400 for a malformed body (413: too large)."""
    if isinstance(error, BodyTooLarge):
        return TOO_LARGE
    status = 400 if isinstance(error, (MalformedBody, BodyNotUTF8)) else 401
    return Reply(status, str(error).encode("utf-8"))


ACCEPTED = Reply(200, b"OK")
QUEUED = Reply(202, b"queued")
DUPLICATE = Reply(200, b"duplicate: already received")
TOO_LARGE = Reply(413, f"the body is larger than {MAX_BODY} bytes".encode())
NOT_POST = Reply(405, b"webhooks are delivered with POST")
HANDLER_FAILED = Reply(500, b"the handler failed; send it again")


class Routes(Generic[H]):
    """Handlers registered under event names or patterns (``message.*``, ``*``)."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, H]] = []

    def add(self, pattern: str, handler: H) -> None:
        """Register ``handler`` for events that ``pattern`` selects."""
        validate_pattern(pattern)
        self._routes.append((pattern, handler))

    def match(self, name: str) -> list[H]:
        """The handlers for event ``name``, in the order they were registered."""
        return [handler for pattern, handler in self._routes if pattern_matches(pattern, name)]

    def __len__(self) -> int:
        return len(self._routes)
