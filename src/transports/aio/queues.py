"""The async driver's queues between its tasks: claims for the workers, results for the writer.

Theory of operation
-------------------
Producers put items in without waiting; consumer tasks take them out. A
consumer that finds an item waiting takes it without yielding. One that finds
none parks on an event of its own, and each item put in wakes one parked
consumer (a consumer woken after another took the item parks again). The
writer takes everything waiting at once, up to a batch. Closing wakes every
parked consumer; consumers then drain what is left and get ``None`` (or an
empty batch).

This does what anyio's memory object stream did here with less per item: a
busy service's workers often find the queue empty between two claims, and
the stream's blocking receive (a checkpoint, an exception, a receiver record
and a cancellation check per item) cost the event loop more than an attempt's
own bookkeeping; its ``send_nowait`` and ``receive_nowait`` cost as much
again for every result.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")


class WorkQueue(Generic[T]):
    """Items waiting for a consumer task, first in, first out."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._parked: deque[anyio.Event] = deque()
        self._closed = False

    def put(self, item: T) -> None:
        """Queue ``item`` and wake one parked consumer; ``anyio.ClosedResourceError`` once
        closed."""
        if self._closed:
            raise anyio.ClosedResourceError
        self._items.append(item)
        if self._parked:
            self._parked.popleft().set()

    async def _wait(self) -> bool:
        """Wait until an item is queued; False once closed and empty."""
        while not self._items:
            if self._closed:
                return False
            parked = anyio.Event()
            self._parked.append(parked)
            try:
                await parked.wait()
            except BaseException:
                if not parked.is_set():
                    self._parked.remove(parked)
                elif self._items and self._parked:
                    self._parked.popleft().set()  # the wake-up meant for this consumer
                raise
        return True

    async def get(self) -> T | None:
        """The next item, waiting for one if none is queued; None once closed and empty."""
        if self._items or await self._wait():
            return self._items.popleft()
        return None

    async def get_batch(self, limit: int) -> list[T]:
        """Up to ``limit`` items, oldest first, waiting for the first; empty once closed and
        empty."""
        if not self._items and not await self._wait():
            return []
        items = self._items
        if len(items) <= limit:
            batch = list(items)
            items.clear()
            return batch
        return [items.popleft() for _ in range(limit)]

    def take_all(self) -> list[T]:
        """Empty the queue; the items it held, oldest first."""
        taken = list(self._items)
        self._items.clear()
        return taken

    def close(self) -> None:
        """Take no more items; wake every parked consumer."""
        self._closed = True
        while self._parked:
            self._parked.popleft().set()
