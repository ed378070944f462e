"""The async driver's queue of claimed deliveries, between the dispatcher and its workers.

Theory of operation
-------------------
The dispatcher puts claims in; ``max_in_flight`` worker tasks take them out.
A worker that finds a claim waiting takes it without yielding. One that
finds none parks on an event of its own, and each claim put in wakes one
parked worker (a worker woken after another took the claim parks again).
Closing wakes every parked worker; workers then drain what is left and get
``None``.

This does what anyio's memory object stream did here with less per wait: a
busy service's workers often find the queue empty between two claims, and
the stream's blocking receive (a checkpoint, an exception, a receiver record
and a cancellation check per item) cost the event loop more than an attempt's
own bookkeeping.
"""

from __future__ import annotations

from collections import deque

import anyio

from transports.stores.interface import Claimed


class ClaimQueue:
    """Claims waiting for a worker, first in, first out."""

    def __init__(self) -> None:
        self._claims: deque[Claimed] = deque()
        self._parked: deque[anyio.Event] = deque()
        self._closed = False

    def put(self, claim: Claimed) -> None:
        """Queue ``claim`` and wake one parked worker."""
        if self._closed:
            raise anyio.ClosedResourceError
        self._claims.append(claim)
        if self._parked:
            self._parked.popleft().set()

    async def get(self) -> Claimed | None:
        """The next claim, waiting for one if none is queued; None once closed and empty."""
        while not self._claims:
            if self._closed:
                return None
            parked = anyio.Event()
            self._parked.append(parked)
            try:
                await parked.wait()
            except BaseException:
                if not parked.is_set():
                    self._parked.remove(parked)
                elif self._claims and self._parked:
                    self._parked.popleft().set()  # the wake-up meant for this worker
                raise
        return self._claims.popleft()

    def take_all(self) -> list[Claimed]:
        """Empty the queue; the claims it held, oldest first."""
        taken = list(self._claims)
        self._claims.clear()
        return taken

    def close(self) -> None:
        """Take no more claims; wake every parked worker."""
        self._closed = True
        while self._parked:
            self._parked.popleft().set()
