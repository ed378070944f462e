"""Converting core records to and from JSON-ready dicts, for durable stores (cattrs at the edge)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import cattrs

from transports.stores.interface import DeliveryFilter
from webhook_core import (
    Attempt,
    ConfigError,
    Delivery,
    DeliveryState,
    Endpoint,
    EndpointSecret,
    Outcome,
)
from webhook_core.delivery_machine import attempt_of, delivery_of

ENDPOINT_CACHE = 32_768
_COMPACT = json.JSONEncoder(separators=(",", ":"))
_json_text: Callable[[str], str] = json.encoder.encode_basestring_ascii
_OUTCOMES = {o: _json_text(o.value) for o in Outcome}
_OUTCOMES_BY_VALUE = {o.value: o for o in Outcome}  # a dict lookup, not Outcome(value)

converter = cattrs.Converter()
converter.register_unstructure_hook(Outcome, lambda o: o.value)
converter.register_structure_hook(Outcome, lambda v, _: Outcome(v))
converter.register_unstructure_hook(
    EndpointSecret,
    lambda s: {"value": s.value, "created_at": s.created_at, "expires_at": s.expires_at},
)
converter.register_structure_hook(
    EndpointSecret, lambda v, _: EndpointSecret(v["value"], v["created_at"], v["expires_at"])
)


def endpoint_to_json(endpoint: Endpoint) -> str:
    """An endpoint as a JSON document."""
    return json.dumps(converter.unstructure(endpoint), separators=(",", ":"))


@functools.lru_cache(maxsize=ENDPOINT_CACHE)
def endpoint_from_json(text: str) -> Endpoint:
    """An endpoint from its JSON document, decoded once per distinct document.

    Endpoints are immutable, so a fan-out to thousands of endpoints reuses the
    decoded records (and their prepared signing keys) until one changes.
    """
    return converter.structure(json.loads(text), Endpoint)


def attempts_to_json(attempts: tuple[Attempt, ...]) -> str:
    """A delivery's attempt history as a JSON array (what ``converter`` would write).

    Written out by hand: every finished attempt passes through here, and a
    format string does in a third of the time what the encoder does with a
    dict per attempt (which it still does for values a format would write
    otherwise than JSON: a non-finite time, a time or a number not a float
    or an int).
    """
    return "[" + ",".join([_attempt_json(a) for a in attempts]) + "]"


def _attempt_json(a: Attempt) -> str:
    started, ended, status = a.started_at, a.ended_at, a.status
    if (
        type(started) is float
        and type(ended) is float
        and started - started == 0.0 == ended - ended
        and type(a.number) is int
        and (status is None or type(status) is int)
    ):
        error, excerpt = a.error, a.response_excerpt
        return (
            f'{{"number":{a.number},"started_at":{started!r},"ended_at":{ended!r},'
            f'"outcome":{_OUTCOMES[a.outcome]},"status":{"null" if status is None else status},'
            f'"error":{"null" if error is None else _json_text(error)},'
            f'"response_excerpt":{"null" if excerpt is None else _json_text(excerpt)}}}'
        )
    return _COMPACT.encode(
        {
            "number": a.number,
            "started_at": started,
            "ended_at": ended,
            "outcome": a.outcome.value,
            "status": status,
            "error": a.error,
            "response_excerpt": a.response_excerpt,
        }
    )


def attempts_from_json(text: str) -> tuple[Attempt, ...]:
    """A delivery's attempt history from its JSON array."""
    data: list[dict[str, Any]] = json.loads(text)
    return tuple(
        attempt_of(
            a["number"],
            a["started_at"],
            a["ended_at"],
            _OUTCOMES_BY_VALUE[a["outcome"]],
            a.get("status"),
            a.get("error"),
            a.get("response_excerpt"),
        )
        for a in data
    )


def delivery_row(d: Delivery) -> tuple[Any, ...]:
    """The column values of a delivery, in ``DELIVERY_COLUMNS`` order."""
    return (
        d.id,
        d.event_id,
        d.endpoint_id,
        d.created_at,
        d.state._value_,  # .value is a descriptor call, on every row written
        d.next_attempt_at,
        attempts_to_json(d.attempts) if d.attempts else "[]",
        d.reason,
        d.replay_of,
    )


DELIVERY_COLUMNS = (
    "id, event_id, endpoint_id, created_at, state, next_attempt_at, attempts, reason, replay_of"
)


_STATES = {s.value: s for s in DeliveryState}


def delivery_from_row(row: tuple[Any, ...], lease_token: str | None = None) -> Delivery:
    """A delivery from its columns, in ``DELIVERY_COLUMNS`` order.

    The lease token is not among the columns read back: only a claim hands
    it out (``lease_token``), so a record read from the store has none.
    """
    return delivery_of(
        row[0],
        row[1],
        row[2],
        row[3],
        _STATES[row[4]],
        row[5],
        attempts_from_json(row[6]) if row[6] != "[]" else (),
        row[7],
        row[8],
        lease_token,
    )


def filter_sql(where: DeliveryFilter, mark: str, events: str = "events") -> tuple[str, list[Any]]:
    """A ``WHERE`` clause (or nothing) selecting ``where``, with ``mark`` as placeholder.

    A delivery's tenant and event name are its event's (``events`` names that table).
    """
    tests = (
        ("state", "=", None if where.state is None else where.state.value),
        ("endpoint_id", "=", where.endpoint_id),
        ("event_id", "=", where.event_id),
        ("created_at", ">=", where.created_since),
        ("created_at", "<", where.created_before),
        ("event_id", f"IN (SELECT id FROM {events} WHERE name =", where.event_name),
    )
    clauses = [
        f"{column} {op} {mark}" + (")" if op.startswith("IN") else "")
        for column, op, value in tests
        if value is not None
    ]
    params = [value for _, _, value in tests if value is not None]
    # One primary-key lookup per row considered: a paged listing stops at its limit
    # instead of first collecting every id of the tenant's (or the name's) events.
    for column, value in (("tenant", where.tenant), ("name", where.event_name)):
        if value is not None:
            clauses.append(
                f"EXISTS (SELECT 1 FROM {events} e WHERE e.id = event_id AND e.{column} = {mark})"
            )
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def check_prunable(state: DeliveryState) -> None:
    """Refuse to prune deliveries that are not finished."""
    if state not in (DeliveryState.DELIVERED, DeliveryState.FAILED):
        raise ConfigError(f"only delivered or failed deliveries can be pruned, not {state.value}")
