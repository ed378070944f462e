"""Endpoints, deliveries and attempts as JSON documents: the command line's ``--json`` output
and the management API's resources share them."""

from __future__ import annotations

import json
from typing import Any

from webhook_core import Attempt, Delivery, Endpoint, Event, rfc3339


def when(epoch: float | None) -> str | None:
    """An RFC 3339 time, or None."""
    return None if epoch is None else rfc3339(epoch)


def endpoint_json(endpoint: Endpoint, *, secrets: bool = False) -> dict[str, Any]:
    """An endpoint as a JSON object (its secrets only when asked for)."""
    document: dict[str, Any] = {
        "id": endpoint.id,
        "url": endpoint.url,
        "state": endpoint.state.value,
        "events": list(endpoint.filters),
        "description": endpoint.description,
        "created_at": when(endpoint.created_at),
        "verified_url": endpoint.verified_url,
        "disabled_reason": endpoint.disabled_reason,
        "last_error": endpoint.last_error,
        "headers": dict(endpoint.headers),
    }
    if secrets:
        document["secrets"] = [
            {"secret": s.value, "created_at": when(s.created_at), "expires_at": when(s.expires_at)}
            for s in endpoint.secrets
        ]
    return document


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    """One attempt as a JSON object."""
    return {
        "number": attempt.number,
        "started_at": when(attempt.started_at),
        "ended_at": when(attempt.ended_at),
        "duration_ms": round((attempt.ended_at - attempt.started_at) * 1000, 1),
        "outcome": attempt.outcome.value,
        "status": attempt.status,
        "error": attempt.error,
        "response_excerpt": attempt.response_excerpt,
    }


def delivery_json(delivery: Delivery, event: Event | None = None) -> dict[str, Any]:
    """A delivery as a JSON object, with its attempts (and its event, when given)."""
    document: dict[str, Any] = {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "endpoint_id": delivery.endpoint_id,
        "state": delivery.state.value,
        "created_at": when(delivery.created_at),
        "next_attempt_at": when(delivery.next_attempt_at),
        "reason": delivery.reason,
        "replay_of": delivery.replay_of,
        "attempts": [attempt_json(a) for a in delivery.attempts],
    }
    if event is not None:
        document["event"] = {
            "id": event.id,
            "name": event.name,
            "created_at": when(event.created_at),
            "body": json.loads(event.body),
        }
    return document


__all__ = ["attempt_json", "delivery_json", "endpoint_json", "when"]
