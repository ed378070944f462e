"""The async drivers' clock: wall-clock time that advances with the event loop's clock.

Records store wall-clock epoch seconds; an ``AnyioClock`` gives the epoch time
when it was made plus the event loop's elapsed time, so under trio's
``MockClock`` or ``looptime`` the whole service runs in virtual time. The
``Clock`` protocol and the other clocks are in ``transports.clocks``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import anyio
import sniffio
import trio
import trio.lowlevel


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

    ``anyio.current_time`` finds the running backend on every call, and
    ``trio.current_time`` the run's clock; a clock read several times per
    delivery keeps the loop's own function (trio's clock's) instead.
    """
    library = sniffio.current_async_library()
    if library == "asyncio":
        return asyncio.get_running_loop().time
    if library == "trio":
        return trio.lowlevel.current_clock().current_time
    return anyio.current_time
