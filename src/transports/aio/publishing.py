"""Concurrent publishes written to a blocking store together.

Theory of operation
-------------------
Given a worker thread and a store transaction each, concurrent publishes
would fight the event loop for the GIL, and each transaction would write its
own pages. Instead, callers queue their events. Whoever finds no write
running becomes the leader: it lets the event loop run twice (so that
callers woken by the previous write, who typically publish again at once,
join this one instead of waiting for the next), takes everything queued,
and one worker-thread call reads the endpoints once, fans every caller's
events out and stores them in one transaction (``operations.publish_groups``).
Callers that queued meanwhile wait; when the write ends, each gets its own
results or its own error, and the first of any newer arrivals leads the next
write. Without that pause, callers publishing in a loop split into two
halves that take turns, each write carrying half of them.

A caller cancelled while its events are still queued takes them back (they
are not published); once its write has begun (for a leader: once it leads,
the two turns included), the events are stored and the caller sees the
cancellation, as with any store call already under way.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import anyio.lowlevel

from transports.driving import operations
from transports.driving.operations import EventSpec
from transports.stores.interface import Store, error_twin
from webhook_core import EventCatalog

# Event-loop turns a leader waits before taking the queue: one for callers woken
# by the last write to run, one more because trio may run them after the leader.
_GATHER_TURNS = 2


class _Waiting:
    """One caller's events, its turn to lead, and the outcome once written."""

    __slots__ = ("events", "now", "outcome", "tenant", "turn")

    def __init__(self, events: Sequence[EventSpec], now: float, tenant: str) -> None:
        self.events = events
        self.now = now
        self.tenant = tenant
        self.turn = anyio.Event()
        self.outcome: list[operations.PublishResult] | Exception | None = None


class GroupedPublisher:
    """Publishes events from concurrent async callers in shared store writes."""

    def __init__(self, store: Store, catalog: EventCatalog) -> None:
        self.store = store
        self.catalog = catalog
        self._queue: list[_Waiting] = []
        self._writing = False

    async def publish(
        self, events: Sequence[EventSpec], now: float, tenant: str
    ) -> list[operations.PublishResult]:
        """Validate, fan out and store ``events`` (name, data, event id or None) of ``tenant``
        at ``now``.

        Raises what publishing these events alone would raise (invalid data, a
        duplicate event id, a store error), and nothing caused by other callers'
        events.
        """
        mine = _Waiting(events, now, tenant)
        self._queue.append(mine)
        while mine.outcome is None:
            if self._writing:
                try:
                    await mine.turn.wait()
                except BaseException:
                    self._withdraw(mine)
                    raise
                mine.turn = anyio.Event()
                continue
            await self._write_queued()
        if isinstance(mine.outcome, Exception):
            raise mine.outcome
        return mine.outcome

    def _withdraw(self, mine: _Waiting) -> None:
        """A cancelled caller leaves the queue, passing its turn on if it had one."""
        if mine in self._queue:
            self._queue.remove(mine)
        if not self._writing and self._queue:
            self._queue[0].turn.set()

    async def _write_queued(self) -> None:
        self._writing = True
        group: list[_Waiting] = []
        try:
            with anyio.CancelScope(shield=True):
                for _ in range(_GATHER_TURNS):
                    await anyio.lowlevel.checkpoint()
                group, self._queue = self._queue, []
                outcomes = await anyio.to_thread.run_sync(
                    operations.publish_groups,
                    self.store,
                    self.catalog,
                    [(w.events, w.now, w.tenant) for w in group],
                )
            for waiting, outcome in zip(group, outcomes, strict=True):
                waiting.outcome = outcome
        except Exception as exc:
            for index, waiting in enumerate(group):
                waiting.outcome = error_twin(exc) if index else exc
        finally:
            self._writing = False
            for waiting in group:
                waiting.turn.set()
            if self._queue:
                self._queue[0].turn.set()
