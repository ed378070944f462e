"""Clocks: wall-clock time for records, and the virtual clock of the threaded driver's tests.

Records store wall-clock epoch seconds so that they survive a restart. The
threaded driver uses ``SystemClock`` or, in tests, ``VirtualClock``. Async
drivers take ``now`` from an ``AnyioClock`` (``transports.aio.clock``): the
epoch time when it was made plus the event loop's elapsed time, so under
trio's ``MockClock`` or ``looptime`` the whole service runs in virtual time.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


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
