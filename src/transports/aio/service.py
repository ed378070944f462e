"""The async webhook service: one implementation on anyio for trio and asyncio.

Theory of operation
-------------------
The host application enters ``async with WebhookService(...) as hooks:`` in
its own event loop (trio or asyncio). What to do is decided by the shared
driver (``transports.aio.driver``, and the ``DriverState`` it asks); this
module provides the tasks, the waiting and the I/O. Inside, three kinds of
task run in the service's task group:

* the dispatcher claims due deliveries from the store in batches, holding
  more claims than it has workers (so that workers finishing an attempt find
  the next claim queued instead of waiting for a store round trip, which for
  a blocking store can take several attempts' time behind a write of
  results; ``DriverState.claims_wanted`` says how many). It queues the
  claims for the workers (``transports.aio.queues``), then sleeps until the
  store's next due time, a wake-up (publish, a finished attempt) or, for
  stores other processes may write, the poll interval;
* ``max_in_flight`` worker tasks take claims from that queue; for each, a
  worker applies the core's ``Start``, sends the signed request under a total
  deadline (one cancel scope: connect, send, headers and body together),
  applies ``Finish`` and hands the record to the writer;
* the writer drains finished records and stores them a batch at a time.

Handshakes run as tasks of their own, for endpoints in ``verifying``: those
found on entering (every endpoint is read once then, before the host can
publish) and those registered since. A store
error is never the host's: each store call the service makes on its own is
retried with back-off and logged once (``DriverState``'s ``ACTIVITIES``).
On exit the dispatcher stops claiming, attempts in flight finish within
their deadline, queued claims are released in one store call (due again at
once), and the writer flushes; nothing is lost: a claim never written back
is reclaimed when its lease ends. A store the service opened itself is
closed.

A queued claim whose lease no longer covers its deadline and the margin is
written back unsent by the worker that takes it (the core decides), and the
dispatcher claims it again later. Its lease has not run out by then: claims
queue oldest first, so stale ones are at the head, and a worker whose
attempt ends (within the deadline, so well before the margin is used up)
writes back every stale claim at the head without yielding, before the
dispatcher, which claims only after an attempt has ended, can run. Results
are fenced by the claim's lease token, so even a stale result is refused.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, Unpack, cast

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel

from transports.aio.clock import AnyioClock
from transports.aio.driver import AsyncDriver
from transports.aio.publishing import GroupedPublisher
from transports.aio.queues import WorkQueue
from transports.clocks import Clock
from transports.driving.config import DriverOptions, DriverSettings, transport_choice
from transports.http.httpx_transport import HttpxTransport
from transports.http.lean_async import Http1Transport
from transports.http.transport import (
    AsyncHttpTransport,
    HttpResponse,
    TransportError,
    attempt_result,
    timeout_result,
)
from transports.stores.interface import Claimed, Store, Waitless, WouldWait
from webhook_core import AttemptResult, Delivery, Endpoint, HttpRequest

P = ParamSpec("P")
T = TypeVar("T")
_WRITE_BATCH = 512


async def send_with_deadline(
    http: AsyncHttpTransport, request: HttpRequest, clock: Clock
) -> tuple[AttemptResult, bytes]:
    """Send ``request`` under its total deadline; the core's view of the result, and the body."""
    started = clock.now()
    response: HttpResponse | TransportError | None = None
    if getattr(http, "keeps_deadline", False):
        try:
            response = await http.send(request)
        except TransportError as exc:
            response = exc
        return attempt_result(started, clock.now(), response)
    with anyio.CancelScope(deadline=anyio.current_time() + request.timeout) as deadline:
        try:
            response = await http.send(request)
        except TransportError as exc:
            response = exc
    if response is None or deadline.cancelled_caught:
        return timeout_result(started, clock.now(), request.timeout)
    return attempt_result(started, clock.now(), response)


class WebhookService(AsyncDriver):
    """Sends webhooks from inside a trio or asyncio application.

    ``store`` defaults to the SQLite file ``webhooks.db`` (or ``$WEBHOOKS_DB``);
    ``http`` to the lean HTTP/1.1 transport (``Http1Transport``; ``http="httpx"``
    picks ``HttpxTransport``, for HTTP/2; either is made with the service's
    outbound policy, while a transport you pass, a proxied one say, keeps its own);
    ``clock`` to the event loop's clock anchored at the real time (virtual under
    trio's ``MockClock`` or ``looptime``). The rest are ``DriverSettings``, as
    one object (``settings=``) or as keyword arguments.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        http: AsyncHttpTransport | str | None = None,
        clock: Clock | None = None,
        settings: DriverSettings | None = None,
        **options: Unpack[DriverOptions],
    ) -> None:
        super().__init__(store, settings, **options)
        self._http, self._http_choice = transport_choice(http)
        self._owns_http = self._http is None
        self._clock = clock
        self._tg: anyio.abc.TaskGroup | None = None
        self._wake = anyio.Event()
        self._progress = anyio.Event()
        # Every task runs on the event loop's thread: a reentrant lock never waits there.
        self._state_lock = threading.RLock()
        self._state = self._new_state()
        self._results: WorkQueue[Delivery] | None = None
        self._claims: WorkQueue[Claimed] | None = None
        self._limiter = anyio.CapacityLimiter(1)
        self._publisher = GroupedPublisher(self.store, self.catalog)
        self._unsubscribe: Callable[[], None] | None = None
        self._dispatcher_stopped = anyio.Event()

    # -- lifecycle -------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        """The clock the service reads (available once started)."""
        if self._clock is None:
            raise RuntimeError("the service has not started; use 'async with service:'")
        return self._clock

    async def __aenter__(self) -> WebhookService:
        if self._clock is None:
            self._clock = AnyioClock()
        if self._http is None:
            self._http = (
                Http1Transport(policy=self.outbound)
                if self._http_choice == "http1"
                else HttpxTransport(policy=self.outbound)
            )
        self._state = self._new_state()
        endpoints = await self._first_scan()
        self._results = WorkQueue()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._writer, self._results)
        self._claims = WorkQueue()
        for _ in range(self.max_in_flight):
            self._tg.start_soon(self._worker, self._claims)
        self._dispatcher_stopped = anyio.Event()
        self._tg.start_soon(self._dispatcher)
        for endpoint in endpoints:
            self._start_handshake(endpoint)
        subscribe = getattr(self.store, "subscribe", None)
        if subscribe is not None:
            self._unsubscribe = subscribe(self._wake_from_thread())
        return self

    def _wake_from_thread(self) -> Callable[[], None]:
        token = anyio.lowlevel.current_token()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):
                anyio.from_thread.run_sync(self._signal, token=token)

        return wake

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None and self._results is not None
        assert self._claims is not None
        self._state.stopping = True
        self._signal()
        if self._unsubscribe is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._unsubscribe)
            self._unsubscribe = None
        try:
            if exc_type is None:
                with anyio.CancelScope(shield=True):
                    await self._dispatcher_stopped.wait()
                    queued = self._claims.take_all()
                    self._state.unsent(queued)
                    self._state.ended(len(queued))
                    while self._state.held or self._state.verifying:
                        seen = self._state.progress
                        await self._wait_for_progress(seen, None, None)
                    await self._release_unstarted()
                self._claims.close()
                self._results.close()
            else:
                # Leaving on an error: attempts stop where they are (their leases
                # bring them back); the claim and result queues close
                # once every task has ended.
                self._tg.cancel_scope.cancel()
        finally:
            result = await self._tg.__aexit__(exc_type, exc, tb)
            self._claims.close()
            self._results.close()
            self._tg = None
            with anyio.CancelScope(shield=True):
                if self._owns_http and self._http is not None:
                    await self._http.aclose()
                    self._http = None
                if self.owns_store:
                    await self._call(self.store.close)
        return result

    async def serve(self) -> None:
        """Run until cancelled (for a dedicated dispatcher process)."""
        async with self:
            await anyio.sleep_forever()

    async def drain(self) -> None:
        """Wait until no delivery is waiting or in flight and no handshake is running.

        Under a virtual clock this runs the whole retry schedule in no wall time.
        """
        await self._drain(None)

    # -- the primitives of AsyncDriver ---------------------------------------------

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if not self.store.blocking:
            return fn(*args, **kwargs)
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=self._limiter)

    async def _call_on_loop(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        # Offered by the store's class itself: a wrapper that forwards attributes may block.
        if hasattr(type(self.store), "without_waiting"):
            try:
                with cast(Waitless, self.store).without_waiting():
                    return fn(*args, **kwargs)
            except WouldWait:
                pass
        return await self._call(fn, *args, **kwargs)

    def _signal(self) -> None:
        self._state.signalled()
        self._wake.set()
        self._progress.set()

    async def _pause(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    def _send(self, request: HttpRequest) -> Coroutine[Any, Any, tuple[AttemptResult, bytes]]:
        # The coroutine itself, not one awaiting it: a frame less on every attempt.
        assert self._http is not None
        return send_with_deadline(self._http, request, self.clock)

    def _spawn_handshake(self, endpoint: Endpoint) -> None:
        assert self._tg is not None
        self._tg.start_soon(self._handshake, endpoint)

    def _hand_out(self, claims: Sequence[Claimed]) -> None:
        assert self._claims is not None
        for claim in claims:
            self._claims.put(claim)

    def _queue_result(self, delivery: Delivery) -> bool:
        assert self._results is not None
        try:
            self._results.put(delivery)
        except anyio.ClosedResourceError:
            return False
        return True

    async def _sleep_until(self, timeout: float, next_due: float | None) -> None:
        if timeout > 0 and not self._wake.is_set():
            with anyio.move_on_after(timeout):
                await self._wake.wait()
        else:
            await anyio.lowlevel.checkpoint()
        self._wake = anyio.Event()

    async def _wait_for_progress(
        self, seen: int, wait: float | None, deadline: float | None
    ) -> None:
        if deadline is not None:
            left = deadline - anyio.current_time()
            if left <= 0:
                raise TimeoutError("the wait's timeout ran out")
            wait = left if wait is None else min(wait, left)
        if self._state.progress != seen:
            return
        if self._progress.is_set():
            self._progress = anyio.Event()
        with anyio.move_on_after(math.inf if wait is None else wait):
            await self._progress.wait()

    def _deadline_after(self, seconds: float) -> float:
        return anyio.current_time() + seconds

    def _running(self) -> bool:
        return self._tg is not None and not self._state.stopping

    # -- tasks -------------------------------------------------------------------

    async def _dispatcher(self) -> None:
        try:
            await self._dispatch_loop()
        finally:
            self._dispatcher_stopped.set()

    async def _worker(self, claims: WorkQueue[Claimed]) -> None:
        while (claim := await claims.get()) is not None:
            await self._work(claim)

    async def _writer(self, results: WorkQueue[Delivery]) -> None:
        try:
            while batch := await results.get_batch(_WRITE_BATCH):
                with anyio.CancelScope(shield=True):
                    await self._write_batch(batch)
        finally:
            results.close()
