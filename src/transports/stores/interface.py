"""The storage interface every backend implements (memory, SQLite, PostgreSQL).

Work moves in batches: ``claim`` hands out up to ``limit`` due deliveries in
one call, leasing them to a worker until ``lease_until``; ``complete`` writes
many finished records in one call, and only those that come from the claim
still holding the row.

Fencing is per claim, not per worker. Each claim gives each row it leases a
fresh lease token (``lease_token``: the claim's random prefix and the row's
id), stored with the lease and carried by the claimed record; the core keeps
it through every transition, so the finished record brings it back. A result
is written only while the row is ``in_flight``, leased to the worker, under
that token; a record without a token (one read back from the store, say) is
never written. A worker id alone would not do: a worker whose lease expired
and that claimed the same delivery again holds it once more, and its stale
result from the earlier claim would be written over (or instead of) the newer
one. Writing a result, ``save_deliveries`` and ``release`` clear the lease
and its token. ``release`` takes ids, not records, so it is fenced by worker
only: it gives back whatever claim of that worker holds the row.

A claimed delivery comes back as it was stored, with the claim's token:
``pending`` or ``retry_scheduled``, or ``in_flight`` when an earlier lease
expired (the dispatcher then records that attempt as abandoned before
starting anew). In the store, a claimed delivery is ``in_flight`` with the
lease set, exactly as the core's ``Start`` would leave it. Reads
(``get_delivery``, ``list_deliveries``) never show a token: only the claim
hands it out.

``add_events`` may write through the caller's own open database connection
(the outbox pattern): the rows then belong to the caller's transaction.
Stores that other processes write may offer ``subscribe(wake)`` (see
``Subscribable``) so that idle dispatchers wake when work arrives.

Methods are synchronous. A backend that blocks (``blocking = True``) is called
from worker threads by the async drivers; the memory store is called directly.
A blocking store may offer ``without_waiting`` (see ``Waitless``): the async
drivers then make their claims and results on the event loop's thread, and
only a call that would wait goes to a worker thread.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, Self, TypeAlias, TypeVar

import attrs

from webhook_core import Delivery, DeliveryState, Endpoint, Event
from webhook_core.statemachine import record_builder


class DuplicateEvent(ValueError):
    """An event with this id is already stored (nothing of the batch was stored)."""

    def __init__(self, event_ids: Sequence[str]) -> None:
        listed = ", ".join(repr(i) for i in event_ids[:5])
        more = f" and {len(event_ids) - 5} more" if len(event_ids) > 5 else ""
        super().__init__(f"an event is already stored under one of the ids {listed}{more}")
        self.event_ids = tuple(event_ids)


E = TypeVar("E", bound=BaseException)


def error_twin(exc: E) -> E:
    """A copy of ``exc`` for another caller to raise (one object raised twice mixes tracebacks)."""
    try:
        twin = copy.copy(exc)
    except Exception:
        return exc
    twin.__cause__ = exc.__cause__
    return twin


def claim_prefix() -> str:
    """A random prefix new to one ``claim`` call (64 bits, as hex).

    Each row the call leases gets the lease token ``prefix + row id`` (in SQL,
    ``? || id``): unique per row and per claim, at the cost of one random
    draw per call.
    """
    return secrets.token_hex(8)


def first_of_each(deliveries: Sequence[Delivery]) -> list[Delivery]:
    """``deliveries`` without later records of an id already given, in order.

    ``Store.complete`` writes a record given twice once, as first given (the
    first write ends the lease the second would need), also where one
    statement writes the whole batch.
    """
    first: dict[str, Delivery] = {}
    for d in deliveries:
        first.setdefault(d.id, d)
    return list(first.values())


@attrs.frozen(weakref_slot=False)  # no __weakref__ slot: see record_builder
class Claimed:
    """A leased delivery with what is needed to send it, and when the lease ends."""

    delivery: Delivery
    event: Event
    endpoint: Endpoint
    lease_until: float


claimed_of = record_builder(Claimed)
"""What ``Claimed(...)`` builds, for less (see ``record_builder``)."""


@attrs.frozen
class DeliveryFilter:
    """Which deliveries a listing selects (None: any)."""

    state: DeliveryState | None = None
    endpoint_id: str | None = None
    event_id: str | None = None
    created_since: float | None = None
    created_before: float | None = None
    tenant: str | None = None
    """Only deliveries of this tenant's events."""
    event_name: str | None = None
    """Only deliveries of events of this name."""


ALL_DELIVERIES = DeliveryFilter()

EventBatch: TypeAlias = tuple[Event, Sequence[Delivery]]
"""An event with the deliveries it fanned out to."""


@attrs.frozen
class SchemaStatus:
    """A store's applied schema version against the latest this library knows."""

    version: int
    latest: int

    @property
    def pending(self) -> int:
        """How many migrations are not applied yet."""
        return max(self.latest - self.version, 0)


class Store(Protocol):
    """Durable (or in-memory) home of endpoints, events and deliveries."""

    blocking: bool

    def save_endpoint(self, endpoint: Endpoint) -> None:
        """Insert or replace an endpoint."""
        ...

    def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        """The endpoint, or None."""
        ...

    def get_endpoints(self, endpoint_ids: Collection[str]) -> dict[str, Endpoint]:
        """The endpoints of these ids that exist, by id (one read, whatever the count)."""
        ...

    def list_endpoints(self, tenant: str | None = None) -> list[Endpoint]:
        """Every endpoint (of ``tenant`` when given), oldest first."""
        ...

    def delete_endpoint(self, endpoint_id: str) -> bool:
        """Remove an endpoint; False if it did not exist. Claims skip its deliveries."""
        ...

    def add_events(self, batch: Sequence[EventBatch], *, connection: Any = None) -> None:
        """Store events and their deliveries together (all or nothing).

        With ``connection`` (the caller's open connection to the same
        database), the rows are written in the caller's transaction.
        """
        ...

    def get_event(self, event_id: str) -> Event | None:
        """The event, or None."""
        ...

    def claim(self, now: float, limit: int, worker: str, lease_until: float) -> list[Claimed]:
        """Lease up to ``limit`` deliveries that are due at ``now`` (or whose lease expired).

        Each claimed record carries a lease token new to this claim (see the module).
        """
        ...

    def complete(self, deliveries: Sequence[Delivery], worker: str) -> int:
        """Write finished records of claims that still hold their rows; return how many.

        A record is written only while its row is ``in_flight`` and leased to
        ``worker`` under the record's ``lease_token`` (the claim it came from);
        the write clears the lease and the token. Others are skipped: a claim
        taken over by another worker, or by this one claiming the row again
        after its lease expired, and records without a token. A record given
        twice in one call is written once, as first given.
        """
        ...

    def release(self, delivery_ids: Sequence[str], worker: str) -> None:
        """Give back claimed deliveries that were never started (shutdown); clears the lease.

        Fenced by ``worker`` only (ids carry no token): it releases the row
        under whichever claim of this worker holds it.
        """
        ...

    def save_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        """Insert or replace delivery records (replays, cancellations); clears any lease."""
        ...

    def next_due(self) -> float | None:
        """The earliest time a delivery becomes due or a lease expires; None if none will."""
        ...

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        """The delivery with its attempts, or None."""
        ...

    def list_deliveries(
        self, where: DeliveryFilter = ALL_DELIVERIES, limit: int = 100, offset: int = 0
    ) -> list[Delivery]:
        """Deliveries matching ``where``, oldest first."""
        ...

    def count_deliveries(self, where: DeliveryFilter = ALL_DELIVERIES) -> int:
        """How many deliveries match ``where``."""
        ...

    def prune(self, state: DeliveryState, before: float, limit: int) -> int:
        """Delete up to ``limit`` finished deliveries in ``state`` created before ``before``."""
        ...

    def schema_status(self) -> SchemaStatus:
        """The schema version applied against the latest one."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


@attrs.frozen
class AdminToken:
    """A management API token: only a digest of its secret is stored."""

    id: str
    tenant: str
    digest: str
    """The SHA-256 of the token, in hex (see ``transports.admin.auth``)."""
    created_at: float
    description: str = ""


class TokenStore(Protocol):
    """Where management API tokens are kept (every store is one)."""

    def save_token(self, token: AdminToken) -> None:
        """Store a new token."""
        ...

    def find_token(self, digest: str) -> AdminToken | None:
        """The token with this digest, or None."""
        ...

    def list_tokens(self, tenant: str | None = None) -> list[AdminToken]:
        """Every token (of ``tenant`` when given), oldest first."""
        ...

    def delete_token(self, token_id: str) -> bool:
        """Revoke a token; False if there was none."""
        ...


class ClosesOnExit:
    """Makes a store a context manager: ``with SQLiteStore(path) as store:`` closes it."""

    def close(self) -> None:
        """Release resources."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class WouldWait(Exception):
    """A call made inside a store's ``without_waiting`` would have waited (see ``Waitless``)."""


class Waitless(Protocol):
    """A blocking store whose calls can be made without waiting, from an event loop's thread."""

    def without_waiting(self) -> AbstractContextManager[None]:
        """Inside, calls on this thread raise ``WouldWait`` instead of waiting for a lock,
        another process or the disk (a call that raised may be made again elsewhere)."""
        ...


class Subscribable(Protocol):
    """A store that can wake idle dispatchers when another process adds due work."""

    def subscribe(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` from a background thread when work may be due; return a stop function."""
        ...
