"""The threaded webhook service: the driver for applications without an event loop.

Theory of operation
-------------------
``with ThreadedWebhookService(...) as hooks:`` (or ``start()`` ... ``stop()``)
runs these threads beside the application's own. What to do is decided by
the shared driver (``transports.sync.driver``, generated from the async one,
and the ``DriverState`` it asks); this module provides the threads, the
waiting and the I/O:

* the dispatcher claims due deliveries from the store in batches and hands
  each claim to the attempt pool, then sleeps until the store's next due
  time, a wake-up (publish, replay, a finished attempt, a written batch) or,
  for stores other processes may write, the poll interval. Under
  ``VirtualClock(autojump=True)`` it jumps the clock to the next due time
  instead, once nothing is held, unwritten or being verified, so hours of
  back-off pass in no wall time;
* the attempt pool (``max_in_flight`` threads) runs each attempt;
* the writer stores finished records a batch at a time;
* handshakes run on a small pool of their own, for endpoints in ``verifying``.

Threads publishing at once to a blocking store share its writes
(``transports.sync.publishing``): one transaction, one durable commit, for
every publish that arrived while the previous write ran.

Each attempt has a total deadline (``policy.timeout``): the transport bounds
every socket wait, name resolution included, by the time left, and an
exchange that outlasted the deadline is recorded as a timeout whatever came
back. The shared state is asked under its own lock (``_state_lock``); the
wake-ups (``_signal``, the dispatcher's sleep, ``drain`` and ``stop``) and
their count (``DriverState.progress``) use another (``_lock``, with the
condition ``_changed``).

``stop()`` stops claiming, lets attempts in flight finish within their
deadline, flushes the writer, gives claims no worker started back to the
store (``release``), joins every thread and closes a store the service
opened itself. Nothing is lost: a claim never written back is reclaimed when
its lease ends.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import ParamSpec, TypeVar, Unpack

from transports.clocks import Clock, SystemClock, VirtualClock
from transports.driving.config import DriverOptions, DriverSettings, transport_choice
from transports.http.httpx_transport import HttpxSyncTransport
from transports.http.lean import Http1SyncTransport
from transports.http.transport import (
    HttpResponse,
    SyncHttpTransport,
    TransportError,
    attempt_result,
    timeout_result,
)
from transports.stores.interface import Claimed, Store
from transports.sync.driver import SyncDriver
from transports.sync.publishing import ThreadedGroupedPublisher
from webhook_core import AttemptResult, Delivery, Endpoint, HttpRequest

P = ParamSpec("P")
T = TypeVar("T")

_WRITE_BATCH = 512
_HANDSHAKE_WORKERS = 4
_VIRTUAL_TICK = 0.01  # real seconds between looks at a VirtualClock advanced by hand


def send_with_deadline(
    http: SyncHttpTransport, request: HttpRequest, clock: Clock
) -> tuple[AttemptResult, bytes]:
    """Send ``request``; the core's view of the result, and the body.

    An exchange that took ``request.timeout`` or longer is a timeout, whatever
    the transport returned: the deadline is total, not per network operation.
    """
    started = clock.now()
    began = time.monotonic()
    try:
        response: HttpResponse | TransportError = http.send(request)
    except TransportError as exc:
        response = exc
    ended = max(clock.now(), started)
    if time.monotonic() - began >= request.timeout:
        return timeout_result(started, ended, request.timeout)
    return attempt_result(started, ended, response)


class ThreadedWebhookService(SyncDriver):
    """Sends webhooks from a program without an event loop, on threads.

    ``store`` defaults to the SQLite file ``webhooks.db`` (or ``$WEBHOOKS_DB``);
    ``http`` to the lean HTTP/1.1 transport (``Http1SyncTransport``;
    ``http="httpx"``: ``HttpxSyncTransport``; either made with the service's
    outbound policy, while a transport you pass, a proxied one say, keeps its own);
    ``clock`` to the system clock (``VirtualClock`` in tests). The rest are
    ``DriverSettings``, as one object (``settings=``) or as keyword arguments.
    The sender's methods mirror ``WebhookService``'s, synchronously.
    """

    default_max_in_flight = 32

    def __init__(
        self,
        store: Store | None = None,
        *,
        http: SyncHttpTransport | str | None = None,
        clock: Clock | None = None,
        settings: DriverSettings | None = None,
        **options: Unpack[DriverOptions],
    ) -> None:
        super().__init__(store, settings, **options)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._http, self._http_choice = transport_choice(http)
        self._owns_http = self._http is None
        self._store_lock = threading.Lock()
        self._publisher = ThreadedGroupedPublisher(self.store, self.catalog)
        self._stop_lock = threading.Lock()
        # The state's own lock, apart from the one the wake-ups wait on: 32 workers take it
        # four times an attempt, and would otherwise queue behind every wait and notify.
        self._state_lock = threading.Lock()
        self._state = self._new_state()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # Guarded by _lock:
        self._started = False
        self._wake = False
        self._unsubscribe: Callable[[], None] | None = None
        # Set up by start():
        self._results: queue.SimpleQueue[Delivery | None] = queue.SimpleQueue()
        self._writer_told = False
        self._attempts: ThreadPoolExecutor | None = None
        self._handshakes: ThreadPoolExecutor | None = None
        self._dispatcher: threading.Thread | None = None
        self._writer: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        """The clock the service reads."""
        return self._clock

    def start(self) -> None:
        """Start the threads; endpoints left in ``verifying`` get their handshake now."""
        with self._stop_lock:
            with self._lock:
                if self._started:
                    raise RuntimeError("the service is already running")
                if self._http is None:
                    self._http = (
                        Http1SyncTransport(policy=self.outbound)
                        if self._http_choice == "http1"
                        else HttpxSyncTransport(policy=self.outbound)
                    )
                self._state = self._new_state()
                self._wake = self._writer_told = False
                self._results = queue.SimpleQueue()
                self._attempts = ThreadPoolExecutor(
                    self.max_in_flight, thread_name_prefix="webhooks-attempt"
                )
                self._handshakes = ThreadPoolExecutor(
                    _HANDSHAKE_WORKERS, thread_name_prefix="webhooks-handshake"
                )
                self._writer = threading.Thread(
                    target=self._write_loop, name="webhooks-writer", daemon=True
                )
                self._dispatcher = threading.Thread(
                    target=self._dispatch_thread, name="webhooks-dispatcher", daemon=True
                )
                self._started = True
            self._writer.start()
            for endpoint in self._first_scan():
                self._start_handshake(endpoint)
            self._dispatcher.start()
            subscribe = getattr(self.store, "subscribe", None)
            if subscribe is not None:
                self._unsubscribe = subscribe(self._signal)

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully and join every thread.

        Claiming stops at once; attempts and handshakes in flight finish (each
        within its deadline) and their results are written; claims no worker
        started go back to the store. Raises ``TimeoutError`` if that takes
        longer than ``timeout`` seconds; calling ``stop`` again resumes waiting.
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(deadline - time.monotonic(), 0.0)

        def timed_out() -> TimeoutError:
            return TimeoutError(
                f"the service did not stop within {timeout:g} s; call stop() again to keep waiting"
            )

        remaining = left()
        if not self._stop_lock.acquire(timeout=-1 if remaining is None else remaining):
            raise timed_out()
        try:
            with self._changed:
                if not self._started:
                    return
                self._state.stopping = True
            self._signal()
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
            assert self._dispatcher and self._writer and self._attempts and self._handshakes
            self._dispatcher.join(left())
            with self._changed:
                if self._dispatcher.is_alive() or not self._changed.wait_for(
                    lambda: not (self._state.held or self._state.verifying), left()
                ):
                    raise timed_out()
            self._attempts.shutdown()
            self._handshakes.shutdown()
            if not self._writer_told:
                self._results.put(None)
                self._writer_told = True
            self._writer.join(left())
            if self._writer.is_alive():
                raise timed_out()
            self._release_unstarted()
            if self._owns_http and self._http is not None:
                self._http.close()
                self._http = None
            if self.owns_store:
                self.store.close()
            with self._lock:
                self._started = False
        finally:
            self._stop_lock.release()

    def __enter__(self) -> ThreadedWebhookService:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def drain(self, timeout: float | None = None) -> None:
        """Block until no delivery is waiting or in flight and no handshake is running.

        Under ``VirtualClock(autojump=True)`` this runs the whole retry schedule
        in next to no wall time. Raises ``TimeoutError`` after ``timeout``
        seconds, and ``RuntimeError`` if the service is not running.
        """
        with self._lock:
            if not self._started:
                raise RuntimeError("the service is not running; start() it first")
        self._drain(None if timeout is None else time.monotonic() + timeout)

    # -- the primitives of SyncDriver ----------------------------------------------

    def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if not self.store.blocking:
            return fn(*args, **kwargs)
        with self._store_lock:
            return fn(*args, **kwargs)

    def _call_on_loop(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        # No event loop here: such a call is made where the thread calling it runs.
        return self._call(fn, *args, **kwargs)

    def _signal(self) -> None:
        with self._lock:
            self._wake = True
            self._state.signalled()
            self._changed.notify_all()

    def _pause(self, seconds: float) -> None:
        time.sleep(seconds)

    def _send(self, request: HttpRequest) -> tuple[AttemptResult, bytes]:
        assert self._http is not None
        return send_with_deadline(self._http, request, self.clock)

    def _spawn_handshake(self, endpoint: Endpoint) -> None:
        assert self._handshakes is not None
        self._handshakes.submit(self._handshake, endpoint)

    def _hand_out(self, claims: Sequence[Claimed]) -> None:
        assert self._attempts is not None
        for claim in claims:
            self._attempts.submit(self._work, claim)

    def _queue_result(self, delivery: Delivery) -> bool:
        self._results.put(delivery)
        return True

    def _sleep_until(self, timeout: float, next_due: float | None) -> None:
        """Wait for a wake-up or ``timeout`` seconds; under ``VirtualClock`` see the module."""
        clock = self.clock
        with self._changed:
            if not self._wake:
                if isinstance(clock, VirtualClock) and next_due is not None:
                    if not clock.autojump:
                        timeout = min(timeout, _VIRTUAL_TICK)
                    elif self._state.idle:
                        clock.jump_to(next_due)
                        timeout = 0.0
                if timeout > 0:
                    self._changed.wait(None if math.isinf(timeout) else timeout)
            self._wake = False

    def _wait_for_progress(self, seen: int, wait: float | None, deadline: float | None) -> None:
        with self._changed:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("deliveries still open when drain's timeout ran out")
                wait = left if wait is None else min(wait, left)
            if self._state.progress == seen:
                self._changed.wait(wait)

    def _deadline_after(self, seconds: float) -> float:
        return time.monotonic() + seconds

    def _running(self) -> bool:
        return self._started and not self._state.stopping

    # -- threads -----------------------------------------------------------------

    def _dispatch_thread(self) -> None:
        self._dispatch_loop()

    def _write_loop(self) -> None:
        results = self._results
        while True:
            first = results.get()
            if first is None:
                return
            batch = [first]
            last = False
            while len(batch) < _WRITE_BATCH:
                try:
                    record = results.get_nowait()
                except queue.Empty:
                    break
                if record is None:
                    last = True
                    break
                batch.append(record)
            self._write_batch(batch)
            if last:
                return
