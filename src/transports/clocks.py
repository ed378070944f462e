"""Clocks: wall-clock time for records, and the virtual clocks used in tests.

Records store wall-clock epoch seconds so that they survive a restart. Async
drivers take ``now`` from an ``AnyioClock``: the epoch time when it was made
plus the event loop's elapsed time, so under trio's ``MockClock`` or
``looptime`` the whole service runs in virtual time. The threaded driver uses
``SystemClock`` or, in tests, ``VirtualClock``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Protocol

import anyio
import sniffio
import trio


class Clock(Protocol):
    """Tells the time in epoch seconds."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> float:
        """``time.time()``."""
        return time.time()


class AnyioClock:
    """Wall-clock time that advances with the running event loop's clock.

    Must be created and used inside a running event loop. Under a virtual loop
    clock (trio ``MockClock``, ``looptime``) time is virtual; ``epoch`` sets
    where it starts (default: the real time now).
    """

    def __init__(self, epoch: float | None = None) -> None:
        self._epoch = time.time() if epoch is None else epoch
        self._loop_time = loop_time()
        self._start = self._loop_time()

    def now(self) -> float:
        """Epoch seconds: start plus the loop time elapsed."""
        return self._epoch + (self._loop_time() - self._start)


def loop_time() -> Callable[[], float]:
    """The running event loop's clock (``anyio.current_time``), looked up once.

    ``anyio.current_time`` finds the running backend on every call; a clock
    read several times per delivery keeps the loop's own function instead.
    """
    library = sniffio.current_async_library()
    if library == "asyncio":
        return asyncio.get_running_loop().time
    if library == "trio":
        return trio.current_time
    return anyio.current_time


class VirtualClock:
    """A manually driven clock for the threaded driver's tests.

    ``advance`` and ``jump_to`` move time forward. With ``autojump`` on, the
    threaded dispatcher jumps straight to the next due time instead of sleeping
    whenever nothing is in flight, so an hour of back-off passes in no wall time.
    """

    def __init__(self, epoch: float = 1_700_000_000.0, *, autojump: bool = True) -> None:
        self._now = epoch
        self.autojump = autojump
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def now(self) -> float:
        """The virtual epoch seconds."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        with self._changed:
            self._now += seconds
            self._changed.notify_all()

    def jump_to(self, when: float) -> None:
        """Move time forward to ``when`` (no-op if it has passed)."""
        with self._changed:
            if when > self._now:
                self._now = when
                self._changed.notify_all()
