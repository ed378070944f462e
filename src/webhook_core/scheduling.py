"""The due-queue: which deliveries to start now, under concurrency caps.

Theory of operation
-------------------
Deliveries enter with the time they are due. ``take(now)`` hands out those
due at ``now`` in due-time order, while the global cap (``max_in_flight``) and
each endpoint's cap allow; a due item whose endpoint is at its cap waits in
that endpoint's backlog and returns to the queue when a slot frees (``done``)
or the cap is raised. ``next_deadline()`` tells the driver when to wake: the
earliest due time that could be handed out (a backlogged item counts once its
endpoint is below the cap it was held back by), or None when nothing is queued
or every slot is taken. The queue is a plain object with no I/O; time is always
an argument.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

from webhook_core.errors import ConfigError

# (due_at, sequence number, delivery id, endpoint id); the sequence number
# identifies the live entry of a delivery, so re-pushed and discarded entries
# left behind in the heaps are recognised and skipped.
_Entry = tuple[float, int, str, str]


class DueQueue:
    """Due work in time order, handed out under global and per-endpoint caps."""

    def __init__(self, *, max_in_flight: int = 256, per_endpoint: int | None = None) -> None:
        if max_in_flight < 1 or (per_endpoint is not None and per_endpoint < 1):
            raise ConfigError("concurrency caps must be positive integers")
        self.max_in_flight = max_in_flight
        self.per_endpoint = per_endpoint
        self._heap: list[_Entry] = []
        self._queued: dict[str, int] = {}
        self._backlog: dict[str, list[_Entry]] = {}
        self._backlog_cap: dict[str, int] = {}
        self._running: dict[str, int] = {}
        self._in_flight = 0
        self._seq = 0

    def __len__(self) -> int:
        return len(self._queued)

    @property
    def in_flight(self) -> int:
        """Deliveries handed out and not yet ``done``."""
        return self._in_flight

    def _live(self, entry: _Entry) -> bool:
        return self._queued.get(entry[2]) == entry[1]

    def push(self, delivery_id: str, endpoint_id: str, due_at: float) -> None:
        """Queue ``delivery_id`` (replacing an earlier entry for it) to be due at ``due_at``."""
        self._seq += 1
        self._queued[delivery_id] = self._seq
        heapq.heappush(self._heap, (due_at, self._seq, delivery_id, endpoint_id))

    def discard(self, delivery_id: str) -> None:
        """Forget a queued delivery (it was cancelled or claimed elsewhere)."""
        self._queued.pop(delivery_id, None)

    def _cap(self, endpoint_id: str, caps: Mapping[str, int] | None) -> int | None:
        if caps is not None and endpoint_id in caps:
            return caps[endpoint_id]
        return self.per_endpoint

    def _release(self, caps: Mapping[str, int] | None) -> None:
        """Move backlogged items back to the queue for endpoints below their cap."""
        for endpoint_id in list(self._backlog):
            backlog = self._backlog[endpoint_id]
            cap = self._cap(endpoint_id, caps)
            free = len(backlog) if cap is None else cap - self._running.get(endpoint_id, 0)
            while free > 0 and backlog:
                entry = heapq.heappop(backlog)
                if self._live(entry):
                    heapq.heappush(self._heap, entry)
                    free -= 1
            if not backlog:
                del self._backlog[endpoint_id]
                del self._backlog_cap[endpoint_id]
            elif cap is not None:  # always so: without a cap the whole backlog went back
                self._backlog_cap[endpoint_id] = cap

    def take(
        self, now: float, limit: int | None = None, caps: Mapping[str, int] | None = None
    ) -> list[tuple[str, str]]:
        """Hand out ``(delivery_id, endpoint_id)`` pairs due at ``now``, within the caps.

        ``caps`` overrides the per-endpoint cap for particular endpoints.
        """
        if self._backlog:
            self._release(caps)
        room = self.max_in_flight - self._in_flight
        if limit is not None:
            room = min(room, limit)
        taken: list[tuple[str, str]] = []
        heap = self._heap
        while heap and len(taken) < room and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if not self._live(entry):
                continue
            _, _, delivery_id, endpoint_id = entry
            cap = self._cap(endpoint_id, caps)
            running = self._running.get(endpoint_id, 0)
            if cap is not None and running >= cap:
                heapq.heappush(self._backlog.setdefault(endpoint_id, []), entry)
                self._backlog_cap[endpoint_id] = cap
                continue
            del self._queued[delivery_id]
            self._running[endpoint_id] = running + 1
            self._in_flight += 1
            taken.append((delivery_id, endpoint_id))
        return taken

    def done(self, endpoint_id: str) -> None:
        """Release the slot of a finished delivery to ``endpoint_id``."""
        running = self._running.get(endpoint_id, 0)
        if running <= 0:
            raise ValueError(f"no delivery to endpoint {endpoint_id!r} is in flight")
        if running == 1:
            del self._running[endpoint_id]
        else:
            self._running[endpoint_id] = running - 1
        self._in_flight -= 1

    def next_deadline(self) -> float | None:
        """When ``take`` could next hand something out; None if nothing could be."""
        if self._in_flight >= self.max_in_flight:
            return None
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        best = heap[0][0] if heap else None
        for endpoint_id in list(self._backlog):
            backlog = self._backlog[endpoint_id]
            while backlog and not self._live(backlog[0]):
                heapq.heappop(backlog)
            if not backlog:
                del self._backlog[endpoint_id]
                del self._backlog_cap[endpoint_id]
                continue
            if self._running.get(endpoint_id, 0) < self._backlog_cap[endpoint_id]:
                due = backlog[0][0]
                if best is None or due < best:
                    best = due
        return best
