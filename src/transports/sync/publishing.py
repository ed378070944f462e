"""Concurrent publishes from threads written to a blocking store together.

Theory of operation
-------------------
The threaded twin of ``transports.aio.publishing``. Each publishing thread
queues its events. A thread that finds no write running becomes the leader:
it gathers, takes everything queued and, in one
``operations.publish_groups`` call, reads the endpoints once, fans every
caller's events out and stores them in one transaction (one durable commit:
one fsync on SQLite, one WAL flush on PostgreSQL). Threads that queue
meanwhile wait; when the write ends each gets its own results or its own
error, and the first of them to run again leads the next write. So with N
threads publishing at once a write carries about every one of them, and the
rate grows with N while each ``publish`` still returns only once its event
is durable.

Gathering is the threads' version of the async leader's pause. The threads
woken by a write, which typically publish again at once, need the GIL and
the lock one after the other; without a pause the first of them leads a
write carrying the few that made it back, the rest queue behind it, and the
writes alternate between a few callers and most of them (median group 9 of
64 threads, half the rate). So a leader waits until as many callers
have queued as its predecessor's write carried, or for a quarter of that
write's duration, whichever comes first: a group that does not come back
costs one such wait, after which the next leader expects the fewer it found.

An error that is not an ``Exception`` (``KeyboardInterrupt`` in the leader,
say) ends the write for the whole group: the leader raises it and the others
raise a ``RuntimeError`` naming it, their events perhaps stored. A caller
interrupted while it waits (its events not yet taken) withdraws them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from transports.driving import operations
from transports.driving.operations import EventSpec
from transports.stores.interface import Store, error_twin
from webhook_core import EventCatalog

# How long a leader may gather, as a share of the previous write's duration.
_GATHER_SHARE = 0.25


class _Waiting:
    """One caller's events, and the outcome once written."""

    __slots__ = ("events", "now", "outcome", "tenant", "trace_context")

    def __init__(
        self, events: Sequence[EventSpec], now: float, tenant: str, trace_context: str | None
    ) -> None:
        self.events = events
        self.now = now
        self.tenant = tenant
        self.trace_context = trace_context
        self.outcome: list[operations.PublishResult] | BaseException | None = None


class ThreadedGroupedPublisher:
    """Publishes events from concurrent threads in shared store writes."""

    def __init__(self, store: Store, catalog: EventCatalog) -> None:
        self.store = store
        self.catalog = catalog
        self._lock = threading.Lock()
        self._written = threading.Condition(self._lock)
        self._arrived = threading.Condition(self._lock)
        self._queue: list[_Waiting] = []
        self._writing = False
        self._expected = 1
        self._gather_limit = 0.0

    def publish(
        self,
        events: Sequence[EventSpec],
        now: float,
        tenant: str,
        trace_context: str | None = None,
    ) -> list[operations.PublishResult]:
        """Validate, fan out and store ``events`` (name, data, event id or None) of ``tenant``
        at ``now``, each with ``trace_context``.

        Raises what publishing these events alone would raise (invalid data, a
        duplicate event id, a store error), and nothing caused by other callers'
        events.
        """
        mine = _Waiting(events, now, tenant, trace_context)
        with self._written:
            self._queue.append(mine)
            if len(self._queue) >= self._expected:
                self._arrived.notify()
            while self._writing and mine.outcome is None:
                try:
                    self._written.wait()
                except BaseException:
                    self._withdraw(mine)
                    raise
            group = [] if mine.outcome is not None else self._gather(mine)
        if group:
            self._write(group, mine)
        if isinstance(mine.outcome, BaseException):
            raise mine.outcome
        assert mine.outcome is not None
        return mine.outcome

    def _gather(self, leader: _Waiting) -> list[_Waiting]:
        """Lead the next write: wait for callers to queue (see the module), then take them all.

        Called holding the lock, which the waits release.
        """
        self._writing = True
        try:
            self._arrived.wait_for(lambda: len(self._queue) >= self._expected, self._gather_limit)
        except BaseException:
            self._writing = False
            self._withdraw(leader)
            raise
        group, self._queue = self._queue, []
        self._expected = len(group)
        return group

    def _withdraw(self, mine: _Waiting) -> None:
        """An interrupted caller takes its queued events back; if no write runs, the others
        are woken so that one of them leads."""
        if mine in self._queue:
            self._queue.remove(mine)
        if not self._writing:
            self._written.notify_all()

    def _write(self, group: list[_Waiting], leader: _Waiting) -> None:
        began = time.perf_counter()
        try:
            outcomes = operations.publish_groups(
                self.store,
                self.catalog,
                [(w.events, w.now, w.tenant, w.trace_context) for w in group],
            )
            for waiting, outcome in zip(group, outcomes, strict=True):
                waiting.outcome = outcome
        except Exception as exc:
            for waiting in group:
                waiting.outcome = exc if waiting is leader else error_twin(exc)
        except BaseException as exc:
            for waiting in group:
                waiting.outcome = exc
                if waiting is not leader:
                    waiting.outcome = RuntimeError(
                        f"publishing was interrupted by {type(exc).__name__} in another "
                        "thread; the event may or may not be stored"
                    )
        finally:
            with self._written:
                self._gather_limit = _GATHER_SHARE * (time.perf_counter() - began)
                self._writing = False
                self._written.notify_all()
