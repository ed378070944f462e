"""In-memory storage: for tests, virtual-time runs and benchmarks. Not durable.

Due deliveries sit in a timeline keyed by due time (stale entries are skipped
lazily), and leases in a second one. Times mostly come in order (new
deliveries are due when published, leases end a lease's length after they
are taken), and those are kept in a FIFO; a time earlier than the last one
queued goes to a heap beside it. So ``claim`` costs O(k) for k claimed, and
O(k log n) at worst, out of n stored.

A lease is the worker, its expiry and the claim's lease token, kept beside the
records: stored records never carry a token, claimed records carry their
claim's, and ``complete`` writes a record only while its row's lease has the
record's token (see ``transports.store``).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import Counter, deque
from collections.abc import Collection, Sequence
from typing import Any

import attrs

from transports.stores.interface import (
    ALL_DELIVERIES,
    AdminToken,
    Claimed,
    ClosesOnExit,
    DeliveryFilter,
    DuplicateEvent,
    EventBatch,
    SchemaStatus,
    claim_prefix,
    claimed_of,
)
from transports.stores.records import check_prunable
from webhook_core import ConfigError, Delivery, DeliveryState, Endpoint, Event
from webhook_core.delivery_machine import IN_FLIGHT, delivery_of

_WAITING = (DeliveryState.PENDING, DeliveryState.RETRY_SCHEDULED)


class _Timeline:
    """Ids by time, earliest first: times that come in order in a FIFO, the rest in a heap."""

    def __init__(self) -> None:
        self._ordered: deque[tuple[float, str]] = deque()
        self._heap: list[tuple[float, int, tuple[float, str]]] = []
        self._seq = itertools.count()

    def add(self, at: float, key: str) -> None:
        """Queue ``key`` at time ``at``."""
        ordered = self._ordered
        if not ordered or at >= ordered[-1][0]:
            ordered.append((at, key))
        else:
            heapq.heappush(self._heap, (at, next(self._seq), (at, key)))

    def _heap_leads(self) -> bool:
        ordered, heap = self._ordered, self._heap
        return bool(heap) and (not ordered or heap[0][0] < ordered[0][0])

    def first(self) -> tuple[float, str] | None:
        """The earliest time and its id, or None when empty."""
        if self._heap_leads():
            return self._heap[0][2]
        return self._ordered[0] if self._ordered else None

    def pop_first(self) -> None:
        """Remove the entry ``first`` returns."""
        if self._heap_leads():
            heapq.heappop(self._heap)
        else:
            self._ordered.popleft()


class MemoryStore(ClosesOnExit):
    """A thread-safe in-memory ``Store``."""

    blocking = False

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._endpoints: dict[str, Endpoint] = {}
        self._events: dict[str, Event] = {}
        self._deliveries: dict[str, Delivery] = {}
        self._leases: dict[str, tuple[str, float, str]] = {}  # worker, expiry, token
        self._due = _Timeline()
        self._lease_ends = _Timeline()
        self._counts: Counter[DeliveryState] = Counter()
        self._tokens: dict[str, AdminToken] = {}

    def save_endpoint(self, endpoint: Endpoint) -> None:
        """Insert or replace an endpoint."""
        with self._lock:
            self._endpoints[endpoint.id] = endpoint

    def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        """The endpoint, or None."""
        return self._endpoints.get(endpoint_id)

    def get_endpoints(self, endpoint_ids: Collection[str]) -> dict[str, Endpoint]:
        """The endpoints of these ids that exist, by id."""
        with self._lock:
            return {i: self._endpoints[i] for i in endpoint_ids if i in self._endpoints}

    def list_endpoints(self, tenant: str | None = None) -> list[Endpoint]:
        """Every endpoint (of ``tenant`` when given), oldest first."""
        with self._lock:
            found = [e for e in self._endpoints.values() if tenant in (None, e.tenant)]
        return sorted(found, key=lambda e: (e.created_at, e.id))

    def delete_endpoint(self, endpoint_id: str) -> bool:
        """Remove an endpoint; False if there was none."""
        with self._lock:
            return self._endpoints.pop(endpoint_id, None) is not None

    def add_events(self, batch: Sequence[EventBatch], *, connection: Any = None) -> None:
        """Store events and their deliveries (all or nothing)."""
        if connection is not None:
            raise ConfigError(
                "the in-memory store cannot join a database transaction; "
                "use the SQLite or PostgreSQL store for transactional publish"
            )
        with self._lock:
            fresh: set[str] = set()
            for event, _ in batch:
                if event.id in self._events or event.id in fresh:
                    raise DuplicateEvent([event.id])
                fresh.add(event.id)
            for event, deliveries in batch:
                self._events[event.id] = event
                for d in deliveries:
                    self._put(d)

    def _put(self, d: Delivery) -> None:
        if d.lease_token is not None:
            d = _record(d, d.state, d.next_attempt_at, None)
        old = self._deliveries.get(d.id)
        if old is not None:
            self._counts[old.state] -= 1
        self._counts[d.state] += 1
        self._deliveries[d.id] = d
        self._leases.pop(d.id, None)
        if d.state in _WAITING and d.next_attempt_at is not None:
            self._due.add(d.next_attempt_at, d.id)

    def get_event(self, event_id: str) -> Event | None:
        """The event, or None."""
        return self._events.get(event_id)

    def claim(self, now: float, limit: int, worker: str, lease_until: float) -> list[Claimed]:
        """Lease up to ``limit`` due deliveries (expired leases first)."""
        claimed: list[Claimed] = []
        prefix = claim_prefix()
        with self._lock:
            lease_ends = self._lease_ends
            while (
                len(claimed) < limit and (head := lease_ends.first()) is not None and head[0] <= now
            ):
                lease_ends.pop_first()
                expires, delivery_id = head
                lease = self._leases.get(delivery_id)
                if lease is None or lease[1] != expires:
                    continue
                token = prefix + delivery_id
                self._lease(delivery_id, worker, lease_until, token)
                claimed.append(self._claimed(self._deliveries[delivery_id], lease_until, token))
            due = self._due
            while len(claimed) < limit and (head := due.first()) is not None and head[0] <= now:
                due.pop_first()
                due_at, delivery_id = head
                d = self._deliveries.get(delivery_id)
                if (
                    d is None
                    or d.state not in _WAITING
                    or d.next_attempt_at != due_at
                    or delivery_id in self._leases
                ):
                    continue
                endpoint = self._endpoints.get(d.endpoint_id)
                if endpoint is None:
                    continue
                token = prefix + delivery_id
                self._lease(delivery_id, worker, lease_until, token)
                self._counts[d.state] -= 1
                self._counts[IN_FLIGHT] += 1
                self._deliveries[delivery_id] = _record(d, IN_FLIGHT, None, None)
                claimed.append(self._claimed(d, lease_until, token))
        return claimed

    def _lease(self, delivery_id: str, worker: str, lease_until: float, token: str) -> None:
        self._leases[delivery_id] = (worker, lease_until, token)
        self._lease_ends.add(lease_until, delivery_id)

    def _claimed(self, d: Delivery, lease_until: float, token: str) -> Claimed:
        return claimed_of(
            _record(d, d.state, d.next_attempt_at, token),
            self._events[d.event_id],
            self._endpoints[d.endpoint_id],
            lease_until,
        )

    def complete(self, deliveries: Sequence[Delivery], worker: str) -> int:
        """Write records of claims that still hold their rows (leased to ``worker`` under
        the record's token)."""
        written = 0
        with self._lock:
            for d in deliveries:
                lease = self._leases.get(d.id)
                if lease is None or lease[0] != worker or lease[2] != d.lease_token:
                    continue
                self._put(d)
                written += 1
        return written

    def release(self, delivery_ids: Sequence[str], worker: str) -> None:
        """Return unstarted claims: due again at once."""
        with self._lock:
            for delivery_id in delivery_ids:
                lease = self._leases.get(delivery_id)
                if lease is None or lease[0] != worker:
                    continue
                del self._leases[delivery_id]
                d = self._deliveries[delivery_id]
                state = DeliveryState.RETRY_SCHEDULED if d.attempts_made else DeliveryState.PENDING
                self._put(attrs.evolve(d, state=state, next_attempt_at=d.created_at))

    def save_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        """Insert or replace delivery records."""
        with self._lock:
            for d in deliveries:
                self._put(d)

    def next_due(self) -> float | None:
        """Earliest due time or lease expiry."""
        with self._lock:
            due = self._due
            while (first_due := due.first()) is not None:
                due_at, delivery_id = first_due
                d = self._deliveries.get(delivery_id)
                if (
                    d is not None
                    and d.state in _WAITING
                    and d.next_attempt_at == due_at
                    and delivery_id not in self._leases
                ):
                    break
                due.pop_first()
            lease_ends = self._lease_ends
            while (first_end := lease_ends.first()) is not None:
                expires, delivery_id = first_end
                lease = self._leases.get(delivery_id)
                if lease is not None and lease[1] == expires:
                    break
                lease_ends.pop_first()
            times = [first[0] for first in (first_due, first_end) if first is not None]
            return min(times) if times else None

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        """The delivery, or None."""
        return self._deliveries.get(delivery_id)

    def _select(self, where: DeliveryFilter) -> list[Delivery]:
        with self._lock:
            rows = [
                d
                for d in self._deliveries.values()
                if (where.state is None or d.state is where.state)
                and (where.endpoint_id is None or d.endpoint_id == where.endpoint_id)
                and (where.event_id is None or d.event_id == where.event_id)
                and (where.event_name is None or self._events[d.event_id].name == where.event_name)
                and (where.created_since is None or d.created_at >= where.created_since)
                and (where.created_before is None or d.created_at < where.created_before)
                and (where.tenant is None or self._events[d.event_id].tenant == where.tenant)
                and (where.event_name is None or self._events[d.event_id].name == where.event_name)
            ]
        rows.sort(key=lambda d: (d.created_at, d.id))
        return rows

    def list_deliveries(
        self, where: DeliveryFilter = ALL_DELIVERIES, limit: int = 100, offset: int = 0
    ) -> list[Delivery]:
        """Deliveries matching ``where``, oldest first."""
        return self._select(where)[offset : offset + limit]

    def count_deliveries(self, where: DeliveryFilter = ALL_DELIVERIES) -> int:
        """How many deliveries match ``where`` (by state alone: constant time)."""
        if where.state is not None and where == DeliveryFilter(state=where.state):
            return self._counts[where.state]
        return len(self._select(where))

    def prune(self, state: DeliveryState, before: float, limit: int) -> int:
        """Delete up to ``limit`` deliveries in ``state`` created before ``before``."""
        check_prunable(state)
        with self._lock:
            doomed = self._select(DeliveryFilter(state=state, created_before=before))[:limit]
            for d in doomed:
                del self._deliveries[d.id]
                self._counts[state] -= 1
            kept = {d.event_id for d in self._deliveries.values()}
            for event_id in {d.event_id for d in doomed} - kept:
                del self._events[event_id]
        return len(doomed)

    def save_token(self, token: AdminToken) -> None:
        """Store a new token."""
        with self._lock:
            self._tokens[token.id] = token

    def find_token(self, digest: str) -> AdminToken | None:
        """The token with this digest, or None."""
        with self._lock:
            return next((t for t in self._tokens.values() if t.digest == digest), None)

    def list_tokens(self, tenant: str | None = None) -> list[AdminToken]:
        """Every token (of ``tenant`` when given), oldest first."""
        with self._lock:
            found = [t for t in self._tokens.values() if tenant in (None, t.tenant)]
        return sorted(found, key=lambda t: (t.created_at, t.id))

    def delete_token(self, token_id: str) -> bool:
        """Revoke a token; False if there was none."""
        with self._lock:
            return self._tokens.pop(token_id, None) is not None

    def schema_status(self) -> SchemaStatus:
        """Memory has no schema: always current."""
        return SchemaStatus(0, 0)

    def close(self) -> None:
        """Nothing to release."""


def _record(
    d: Delivery, state: DeliveryState, next_attempt_at: float | None, token: str | None
) -> Delivery:
    return delivery_of(
        d.id,
        d.event_id,
        d.endpoint_id,
        d.created_at,
        state,
        next_attempt_at,
        d.attempts,
        d.reason,
        d.replay_of,
        token,
    )
