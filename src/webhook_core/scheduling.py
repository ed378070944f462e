"""The due-queue: which deliveries to start now, under concurrency caps.

Theory of operation
-------------------
Deliveries enter with the time they are due. ``take(now)`` hands out those
due at ``now`` in due-time order, while the global cap (``max_in_flight``) and
each endpoint's cap allow; a due item whose endpoint is at its cap waits in
that endpoint's backlog and returns to the queue when ``done`` frees a slot.
``next_deadline()`` tells the driver when to wake: the earliest due time that
could be handed out, or None when nothing is queued or every slot is taken.
The queue is a plain object with no I/O; time is always an argument.
"""

from __future__ import annotations

import heapq
from collections import defaultdict, deque
from collections.abc import Mapping

from webhook_core.errors import ConfigError


class DueQueue:
    """Due work in time order, handed out under global and per-endpoint caps."""

    def __init__(self, *, max_in_flight: int = 256, per_endpoint: int | None = None) -> None:
        if max_in_flight < 1 or (per_endpoint is not None and per_endpoint < 1):
            raise ConfigError("concurrency caps must be positive integers")
        self.max_in_flight = max_in_flight
        self.per_endpoint = per_endpoint
        self._heap: list[tuple[float, int, str, str]] = []
        self._queued: dict[str, float] = {}
        self._backlog: defaultdict[str, deque[tuple[float, int, str, str]]] = defaultdict(deque)
        self._running: defaultdict[str, int] = defaultdict(int)
        self._in_flight = 0
        self._seq = 0

    def __len__(self) -> int:
        return len(self._queued)

    @property
    def in_flight(self) -> int:
        """Deliveries handed out and not yet ``done``."""
        return self._in_flight

    def push(self, delivery_id: str, endpoint_id: str, due_at: float) -> None:
        """Queue ``delivery_id`` (replacing an earlier entry for it) to be due at ``due_at``."""
        self._seq += 1
        self._queued[delivery_id] = due_at
        heapq.heappush(self._heap, (due_at, self._seq, delivery_id, endpoint_id))

    def discard(self, delivery_id: str) -> None:
        """Forget a queued delivery (it was cancelled or claimed elsewhere)."""
        self._queued.pop(delivery_id, None)

    def _cap(self, endpoint_id: str, caps: Mapping[str, int] | None) -> int | None:
        if caps is not None and endpoint_id in caps:
            return caps[endpoint_id]
        return self.per_endpoint

    def take(
        self, now: float, limit: int | None = None, caps: Mapping[str, int] | None = None
    ) -> list[tuple[str, str]]:
        """Hand out ``(delivery_id, endpoint_id)`` pairs due at ``now``, within the caps.

        ``caps`` overrides the per-endpoint cap for particular endpoints.
        """
        room = self.max_in_flight - self._in_flight
        if limit is not None:
            room = min(room, limit)
        taken: list[tuple[str, str]] = []
        heap = self._heap
        while heap and len(taken) < room and heap[0][0] <= now:
            item = heapq.heappop(heap)
            due_at, _, delivery_id, endpoint_id = item
            if self._queued.get(delivery_id) != due_at:
                continue
            cap = self._cap(endpoint_id, caps)
            if cap is not None and self._running[endpoint_id] >= cap:
                self._backlog[endpoint_id].append(item)
                continue
            del self._queued[delivery_id]
            self._running[endpoint_id] += 1
            self._in_flight += 1
            taken.append((delivery_id, endpoint_id))
        return taken

    def done(self, endpoint_id: str) -> None:
        """Release the slot of a finished delivery to ``endpoint_id``."""
        if self._running[endpoint_id] <= 0:
            raise ValueError(f"no delivery to endpoint {endpoint_id!r} is in flight")
        self._running[endpoint_id] -= 1
        if not self._running[endpoint_id]:
            del self._running[endpoint_id]
        self._in_flight -= 1
        backlog = self._backlog.get(endpoint_id)
        if backlog:
            heapq.heappush(self._heap, backlog.popleft())
            if not backlog:
                del self._backlog[endpoint_id]

    def next_deadline(self) -> float | None:
        """When ``take`` could next hand something out; None if nothing could be."""
        if self._in_flight >= self.max_in_flight:
            return None
        heap = self._heap
        while heap and self._queued.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None
