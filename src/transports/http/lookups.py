"""Name lookups that a caller can abandon at its deadline.

``socket.getaddrinfo`` has no timeout, and a stalled resolver would hold an
attempt past its deadline. Names are therefore looked up on at most
``LOOKUP_THREADS`` daemon threads of our own, and callers wait for the answer
only as long as they may: the blocking side with the time left
(``LookupTimeout`` when it runs out), the async side until the
caller's cancel scope ends, without holding a thread while it waits. A lookup
already under way for the same host and port is joined, not repeated, so a
stalled name holds one thread however many attempts wait for it, and other
names go on being looked up on the other threads (past ``LOOKUP_THREADS``
stalled names, new lookups wait their turn, and time out). The threads are
daemons, so a lookup that never returns does not hold up the interpreter's
exit, as it would on asyncio's default executor, which ``asyncio.run`` joins;
nor does it take a thread the store's calls need from trio's default limiter.
The async side's modules (anyio, sniffio, trio, asyncio) are imported only
when an async caller looks a name up, so the threaded driver never loads them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

LOOKUP_THREADS = 16


class LookupTimeout(Exception):
    """A name lookup outlasted the time the caller had left (each transport reports it
    as its own kind of timeout)."""


AddressInfo = list[tuple[Any, ...]]
_Key = tuple[str, int]


class _Lookups:
    """``getaddrinfo`` on at most ``limit`` daemon threads, one lookup per (host, port).

    A thread is started for each new lookup while fewer than ``limit`` run, and
    ends when no lookup is waiting; past the limit, lookups wait their turn.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._forget()

    def _forget(self) -> None:
        """Start empty; also in a forked child, which has none of the parent's threads."""
        self._lock = threading.Lock()
        self._pending: dict[_Key, concurrent.futures.Future[AddressInfo]] = {}
        self._waiting: deque[_Key] = deque()
        self._threads = 0

    def lookup(self, host: str, port: int) -> concurrent.futures.Future[AddressInfo]:
        """The answer for ``host``, ``port``, from the lookup under way or a new one."""
        key = (host, port)
        with self._lock:
            future = self._pending.get(key)
            if future is None:
                future = self._pending[key] = concurrent.futures.Future()
                self._waiting.append(key)
                if self._threads < self._limit:
                    self._threads += 1
                    threading.Thread(target=self._work, name="webhooks-lookup", daemon=True).start()
            return future

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._waiting:
                    self._threads -= 1
                    return
                key = self._waiting.popleft()
            infos: AddressInfo = []
            error: Exception | None = None
            try:
                infos = socket.getaddrinfo(*key, type=socket.SOCK_STREAM)
            except Exception as exc:
                error = exc
            with self._lock:
                future = self._pending.pop(key)
            if error is None:
                future.set_result(infos)
            else:
                future.set_exception(error)


_LOOKUPS = _Lookups(LOOKUP_THREADS)
os.register_at_fork(after_in_child=_LOOKUPS._forget)


def _from_thread(callback: Callable[[], object]) -> Callable[[], None]:
    """``callback`` made safe to call from any thread: it then runs in this event loop."""
    import sniffio  # noqa: PLC0415 (async callers only)

    schedule: Callable[[Callable[[], object]], object]
    if sniffio.current_async_library() == "trio":
        import trio  # noqa: PLC0415

        schedule = trio.lowlevel.current_trio_token().run_sync_soon
    else:
        import asyncio  # noqa: PLC0415

        schedule = asyncio.get_running_loop().call_soon_threadsafe

    def call() -> None:
        # A loop that has ended raises RuntimeError (trio's RunFinishedError is one);
        # nobody is left waiting then.
        with contextlib.suppress(RuntimeError):
            schedule(callback)

    return call


async def lookup(host: str, port: int) -> AddressInfo:
    """``getaddrinfo`` for ``host``, ``port``; the wait ends with the caller's cancel scope."""
    import anyio  # noqa: PLC0415 (async callers only)

    future = _LOOKUPS.lookup(host, port)
    if not future.done():
        answered = anyio.Event()
        wake = _from_thread(answered.set)
        future.add_done_callback(lambda _: wake())
        await answered.wait()
    return future.result()


def lookup_sync(host: str, port: int, timeout: float | None) -> AddressInfo:
    """``getaddrinfo`` for ``host``, ``port``, waiting at most ``timeout`` seconds."""
    future = _LOOKUPS.lookup(host, port)
    done, _ = concurrent.futures.wait([future], timeout)
    if not done:
        raise LookupTimeout(
            f"resolving {host!r} took longer than the {timeout:g} s left of the deadline"
        )
    return future.result()
