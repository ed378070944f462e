"""The async webhook service: one implementation on anyio for trio and asyncio.

Theory of operation
-------------------
The host application enters ``async with WebhookService(...) as hooks:`` in
its own event loop (trio or asyncio). Inside, three kinds of task run in the
service's task group:

* the dispatcher claims due deliveries from the store in batches, holding
  more claims than it has workers (so that workers finishing an attempt find
  the next claim queued instead of waiting for a store round trip, which for
  a blocking store can take several attempts' time behind a write of
  results): up to three times ``max_in_flight``, but no more than the
  workers, at their recent pace, can start while the claims' leases still
  cover their deadline and ``LEASE_MARGIN``. The pace is a moving average of
  attempt times that starts at the deadline (at the default 30 s deadline
  and 60 s lease: 1.83 times ``max_in_flight`` until attempts prove
  quicker, and back towards it when endpoints hang). When only a
  few claims are wanted it first waits 2 ms for more, so a busy service
  claims a batch at a time rather than one delivery per finished attempt. It
  queues the claims for the workers (``transports.claim_queue``), then
  sleeps until the store's next due time, a wake-up (publish, a finished
  attempt) or, for stores other processes may write, the poll interval;
* ``max_in_flight`` worker tasks take claims from that queue; for each, a
  worker applies the core's ``Start``, sends the signed request under a total
  deadline (one cancel scope: connect, send, headers and body together),
  applies ``Finish`` and hands the record to the writer;
* the writer drains finished records and stores them a batch at a time.

Handshakes run as tasks of their own, for endpoints in ``verifying``. Every decision
(state, retry time, disabling) is made by ``webhook_core``; this module only
executes effects and reports results. On exit the dispatcher stops claiming,
attempts in flight finish within their deadline, queued claims are released
in one store call (due again at once), and the writer flushes; nothing is
lost: a claim never written back is reclaimed when its lease ends.

A queued claim whose lease no longer covers its deadline and the margin is
written back unsent by the worker that takes it (the core decides), and the
dispatcher claims it again later. Its lease has not run out by then: claims
queue oldest first, so stale ones are at the head, and a worker whose
attempt ends (within the deadline, so well before the margin is used up)
writes back every stale claim at the head without yielding, before the
dispatcher, which claims only after an attempt has ended, can run.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from transports.aio.claim_queue import ClaimQueue
from transports.aio.clock import AnyioClock
from transports.aio.publishing import GroupedPublisher
from transports.clocks import Clock
from transports.driving import operations
from transports.driving.config import DEFAULT_GATE, DEFAULT_HEALTH, DriverConfig
from transports.http.httpx_transport import HttpxTransport
from transports.http.lean_async import Http1Transport
from transports.http.transport import (
    AsyncHttpTransport,
    HttpResponse,
    TransportError,
    attempt_result,
    timeout_result,
)
from transports.ids import new_id
from transports.stores.interface import ALL_DELIVERIES, Claimed, DeliveryFilter, Store
from webhook_core import (
    LEASE_MARGIN,
    USER_AGENT,
    AttemptResult,
    ConfigError,
    Delivery,
    DeliveryState,
    DisableEndpoint,
    Endpoint,
    EndpointState,
    EventCatalog,
    Finish,
    GatePolicy,
    HealthPolicy,
    HttpRequest,
    RetryPolicy,
    delivery_machine,
    endpoint_machine,
    handshake_result,
    verification_event,
    verification_request,
)
from webhook_core.addresses import Network

P = ParamSpec("P")
T = TypeVar("T")
_OPEN_STATES = (DeliveryState.PENDING, DeliveryState.RETRY_SCHEDULED, DeliveryState.IN_FLIGHT)
_WRITE_BATCH = 512
_ERROR_PAUSE = 1.0  # seconds the dispatcher waits after a store error
log = logging.getLogger(__name__)
_COALESCE = 0.002  # seconds a nearly busy dispatcher waits for more free workers
_PACE_WEIGHT = 0.05  # of the latest attempt in the moving average of attempt times


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


class WebhookService(DriverConfig):
    """Sends webhooks from inside a trio or asyncio application.

    ``store`` defaults to the SQLite file ``webhooks.db`` (or ``$WEBHOOKS_DB``);
    ``http`` to an httpx transport (``http="http1"`` picks the lean HTTP/1.1
    transport; either is made with the service's outbound policy, while a
    transport you pass keeps its own);
    ``clock`` to the event loop's clock anchored at the real time (virtual under
    trio's ``MockClock`` or ``looptime``).
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        http: AsyncHttpTransport | str | None = None,
        clock: Clock | None = None,
        policy: RetryPolicy | None = None,
        catalog: EventCatalog | None = None,
        allow_http: bool = False,
        max_in_flight: int = 64,
        lease: float | None = None,
        poll_interval: float | None = None,
        worker_id: str | None = None,
        user_agent: str = USER_AGENT,
        retention: operations.Retention | None = None,
        retention_interval: float = 3600.0,
        allowed_networks: str | Iterable[str | Network] = (),
        ca_file: str | None = None,
        gate: GatePolicy | None = DEFAULT_GATE,
        health: HealthPolicy | None = DEFAULT_HEALTH,
        on_endpoint_disabled: Callable[[Endpoint], object] | None = None,
    ) -> None:
        super().__init__(
            store,
            policy=policy,
            catalog=catalog,
            allow_http=allow_http,
            max_in_flight=max_in_flight,
            lease=lease,
            poll_interval=poll_interval,
            worker_id=worker_id,
            user_agent=user_agent,
            retention=retention,
            retention_interval=retention_interval,
            allowed_networks=allowed_networks,
            ca_file=ca_file,
            gate=gate,
            health=health,
            on_endpoint_disabled=on_endpoint_disabled,
        )
        self._http_choice = http if isinstance(http, str) else "httpx"
        if self._http_choice not in ("httpx", "http1"):
            raise ConfigError(f"http must be a transport, 'httpx' or 'http1', not {http!r}")
        self._http = None if isinstance(http, str) else http
        self._owns_http = self._http is None
        self._clock = clock
        self._tg: anyio.abc.TaskGroup | None = None
        self._wake = anyio.Event()
        self._progress = anyio.Event()
        self._stopping = False
        self._in_flight = 0
        self._unwritten = 0
        self._writes = 0
        self._verifying: set[tuple[str, str | None]] = set()
        self._next_scan = -math.inf
        self._send_results: MemoryObjectSendStream[Delivery] | None = None
        self._claims: ClaimQueue | None = None
        self._attempts_done = anyio.Event()
        self._limiter = anyio.CapacityLimiter(1)
        self._publisher = GroupedPublisher(self.store, self.catalog)
        self._unsubscribe: Callable[[], None] | None = None
        self._dispatcher_stopped = anyio.Event()
        self._claim_batch = max(1, self.max_in_flight // 8)
        self._attempt_time = self.policy.timeout

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
        self._stopping = False
        send, receive = anyio.create_memory_object_stream[Delivery](math.inf)
        self._send_results = send
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._writer, receive)
        self._claims = ClaimQueue()
        for _ in range(self.max_in_flight):
            self._tg.start_soon(self._worker, self._claims)
        await self._scan_endpoints()
        self._dispatcher_stopped = anyio.Event()
        self._tg.start_soon(self._dispatcher)
        subscribe = getattr(self.store, "subscribe", None)
        if subscribe is not None:
            self._unsubscribe = subscribe(self._wake_from_thread())
        return self

    def _set_wake(self) -> None:
        self._wake.set()

    def _wake_from_thread(self) -> Callable[[], None]:
        token = anyio.lowlevel.current_token()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):
                anyio.from_thread.run_sync(self._set_wake, token=token)

        return wake

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None and self._send_results is not None
        assert self._claims is not None
        self._stopping = True
        self._wake.set()
        if self._unsubscribe is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._unsubscribe)
            self._unsubscribe = None
        try:
            if exc_type is None:
                with anyio.CancelScope(shield=True):
                    await self._dispatcher_stopped.wait()
                    await self._release_queued()
                    while self._in_flight or self._verifying:
                        self._attempts_done = anyio.Event()
                        await self._attempts_done.wait()
                self._claims.close()
                await self._send_results.aclose()
            else:
                # Leaving on an error: attempts stop where they are (their leases
                # bring them back); the claim queue and the results stream close
                # once every task has ended.
                self._tg.cancel_scope.cancel()
        finally:
            result = await self._tg.__aexit__(exc_type, exc, tb)
            self._claims.close()
            self._send_results.close()
            self._tg = None
            if self._owns_http and self._http is not None:
                with anyio.CancelScope(shield=True):
                    await self._http.aclose()
                self._http = None
        return result

    async def serve(self) -> None:
        """Run until cancelled (for a dedicated dispatcher process)."""
        async with self:
            await anyio.sleep_forever()

    # -- store access ------------------------------------------------------------

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if not self.store.blocking:
            return fn(*args, **kwargs)
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=self._limiter)

    # -- the sender's API --------------------------------------------------------

    async def add_endpoint(
        self,
        url: str,
        *,
        secret: str | None = None,
        events: Iterable[str] = ("*",),
        headers: Mapping[str, str] | None = None,
        description: str = "",
    ) -> Endpoint:
        """Register an endpoint and start its verification handshake."""
        endpoint = await self._call(
            operations.add_endpoint,
            self.store,
            url,
            self.clock.now(),
            secret=secret,
            events=events,
            headers=headers,
            description=description,
            allow_http=self.allow_http,
        )
        self._start_handshake(endpoint)
        return endpoint

    async def change_endpoint(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        events: Iterable[str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Endpoint:
        """Change an endpoint; a new URL is verified again before it receives events."""
        endpoint = await self._call(
            operations.change_endpoint,
            self.store,
            endpoint_id,
            self.clock.now(),
            url=url,
            events=events,
            headers=headers,
            allow_http=self.allow_http,
        )
        self._start_handshake(endpoint)
        return endpoint

    async def verify_endpoint(self, endpoint_id: str) -> Endpoint:
        """Send the handshake again (after a failed one)."""
        endpoint = await self._call(
            operations.request_verification, self.store, endpoint_id, self.clock.now()
        )
        self._start_handshake(endpoint)
        return endpoint

    async def disable_endpoint(
        self, endpoint_id: str, reason: str = "disabled by operator"
    ) -> Endpoint:
        """Stop deliveries to an endpoint; its waiting deliveries fail."""
        return await self._call(
            operations.disable_endpoint, self.store, endpoint_id, self.clock.now(), reason
        )

    async def enable_endpoint(self, endpoint_id: str) -> Endpoint:
        """Resume a disabled endpoint."""
        endpoint = await self._call(
            operations.enable_endpoint, self.store, endpoint_id, self.clock.now()
        )
        self._start_handshake(endpoint)
        return endpoint

    async def rotate_secret(
        self, endpoint_id: str, *, secret: str | None = None, grace: float = 86_400
    ) -> Endpoint:
        """Give an endpoint a new secret; the old one signs too for ``grace`` seconds."""
        return await self._call(
            operations.rotate_endpoint_secret,
            self.store,
            endpoint_id,
            self.clock.now(),
            secret=secret,
            grace=grace,
        )

    async def remove_endpoint(self, endpoint_id: str) -> None:
        """Delete an endpoint; its waiting deliveries fail."""
        await self._call(operations.remove_endpoint, self.store, endpoint_id, self.clock.now())

    async def publish(
        self, event: str, data: Any, *, event_id: str | None = None, connection: Any = None
    ) -> operations.PublishResult:
        """Validate and store an event, fanned out to every subscribed active endpoint.

        With ``connection`` (your open sqlite3 or psycopg connection to the
        store's database) the event is written in your transaction and is
        delivered only if you commit. The write then runs in the calling
        thread, as your connection requires; the dispatcher finds the event at
        its next poll (PostgreSQL wakes it at once).
        """
        (result,) = await self.publish_many([(event, data, event_id)], connection=connection)
        return result

    async def publish_many(
        self, events: Iterable[operations.EventSpec], *, connection: Any = None
    ) -> list[operations.PublishResult]:
        """Publish ``(name, data, event_id or None)`` events in one store transaction.

        Concurrent publishes to a blocking store share one worker-thread call
        and one transaction (see ``transports.publishing``), each caller
        getting its own results or errors.
        """
        specs, now = list(events), self.clock.now()
        if connection is not None or not self.store.blocking:
            results = operations.publish_many(
                self.store, self.catalog, specs, now, connection=connection
            )
        else:
            results = await self._publisher.publish(specs, now)
        if any(r.deliveries for r in results):
            self._wake.set()
        return results

    async def replay(self, delivery_id: str) -> Delivery:
        """Send a delivered or failed delivery's event again, as a new delivery."""
        fresh = await self._call(
            operations.replay_delivery, self.store, delivery_id, self.clock.now()
        )
        self._wake.set()
        return fresh

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        """A delivery with its attempt history."""
        return await self._call(self.store.get_delivery, delivery_id)

    async def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        """An endpoint."""
        return await self._call(self.store.get_endpoint, endpoint_id)

    async def list_deliveries(
        self, where: DeliveryFilter = ALL_DELIVERIES, limit: int = 100, offset: int = 0
    ) -> list[Delivery]:
        """Deliveries matching ``where``, oldest first."""
        return await self._call(self.store.list_deliveries, where, limit, offset)

    async def drain(self) -> None:
        """Wait until no delivery is waiting or in flight and no handshake is running.

        Under a virtual clock this runs the whole retry schedule in no wall time.
        """
        while True:
            if not (self._in_flight or self._unwritten or self._verifying):
                writes = self._writes
                open_count = 0
                for state in _OPEN_STATES:
                    open_count += await self._call(
                        self.store.count_deliveries, DeliveryFilter(state=state)
                    )
                settled = writes == self._writes and not (
                    self._in_flight or self._unwritten or self._verifying
                )
                if settled and not open_count:
                    return
            self._progress = anyio.Event()
            wait = max(self.poll_interval, 0.05) if self.store.blocking else math.inf
            with anyio.move_on_after(wait):
                await self._progress.wait()

    # -- handshakes ------------------------------------------------------------

    def _start_handshake(self, endpoint: Endpoint) -> None:
        if (
            endpoint.state is EndpointState.VERIFYING
            and (endpoint.id, endpoint.verification_token) not in self._verifying
            and self._tg is not None
            and not self._stopping
        ):
            self._verifying.add((endpoint.id, endpoint.verification_token))
            self._tg.start_soon(self._handshake, endpoint)

    async def _handshake(self, endpoint: Endpoint) -> None:
        try:
            assert self._http is not None
            now = self.clock.now()
            token = endpoint.verification_token
            assert token is not None
            event = verification_event(token, event_id=new_id("evt"), now=now)
            request = verification_request(
                endpoint, event, now, self.policy.timeout, self.user_agent
            )
            result, body = await send_with_deadline(self._http, request, self.clock)
            current = await self._call(self.store.get_endpoint, endpoint.id)
            if (
                current is None
                or current.state is not EndpointState.VERIFYING
                or current.verification_token != token
            ):
                return
            answer = handshake_result(result, body)
            await self._call(self.store.save_endpoint, endpoint_machine.apply(current, answer))
        finally:
            self._verifying.discard((endpoint.id, endpoint.verification_token))
            self._attempts_done.set()
            self._progress.set()

    async def _scan_endpoints(self) -> None:
        now = self.clock.now()
        if now < self._next_scan:
            return
        self._next_scan = now + self.poll_interval
        for endpoint in await self._call(self.store.list_endpoints):
            self._start_handshake(endpoint)

    # -- delivery --------------------------------------------------------------

    async def _dispatcher(self) -> None:
        try:
            while not self._stopping:
                try:
                    await self._dispatch_once()
                except Exception:
                    log.exception("dispatcher: store error; trying again in %g s", _ERROR_PAUSE)
                    with anyio.move_on_after(_ERROR_PAUSE):
                        await self._wake.wait()
        finally:
            self._dispatcher_stopped.set()

    async def _dispatch_once(self) -> None:
        """Claim what is due and queue it for the workers; if nothing more is due now,
        sleep until it may be."""
        self._wake = anyio.Event()
        await self._scan_endpoints()
        retention = self._prune_due(self.clock.now())
        if retention is not None:
            await self._call(operations.apply_retention, self.store, retention, self.clock.now())
        free = self._claim_limit() - self._in_flight
        if 0 < free < self._claim_batch and self._in_flight:
            await anyio.sleep(_COALESCE)
            free = self._claim_limit() - self._in_flight
        if free > 0:
            now = self.clock.now()
            claimed = await self._call(
                self.store.claim, now, free, self.worker_id, now + self.lease
            )
            if self._stopping:
                ids = [c.delivery.id for c in claimed]
                await self._call(self.store.release, ids, self.worker_id)
                return
            assert self._claims is not None
            self._in_flight += len(claimed)
            for claim in claimed:
                self._claims.put(claim)
            if len(claimed) == free:
                await anyio.sleep(0)
                return
        if self._stopping:
            return
        timeout = min(self.poll_interval, self._until_prune(self.clock.now()))
        if free > 0:
            next_due = await self._call(self.store.next_due)
            if next_due is not None:
                timeout = min(timeout, max(next_due - self.clock.now(), 0.0))
        if timeout > 0:
            with anyio.move_on_after(timeout):
                await self._wake.wait()

    def _claim_limit(self) -> int:
        """How many claims to hold, sent and queued (see the module)."""
        budget = self.lease - self.policy.timeout - LEASE_MARGIN
        rounds = min(2.0, budget / max(self._attempt_time, 0.001))
        return self.max_in_flight + int(self.max_in_flight * rounds)

    async def _release_queued(self) -> None:
        """Give the claims no worker has taken back to the store, in one call."""
        assert self._claims is not None
        queued = self._claims.take_all()
        try:
            if queued:
                await self._call(
                    self.store.release, [c.delivery.id for c in queued], self.worker_id
                )
        finally:
            self._in_flight -= len(queued)
            self._attempts_done.set()

    async def _worker(self, claims: ClaimQueue) -> None:
        while (claim := await claims.get()) is not None:
            await self._attempt(claim)

    async def _attempt(self, claim: Claimed) -> None:
        try:
            if self._stopping:
                await self._call(self.store.release, [claim.delivery.id], self.worker_id)
            else:
                await self._run_attempt(claim)
        finally:
            self._in_flight -= 1
            self._wake.set()
            self._attempts_done.set()

    async def _run_attempt(self, claim: Claimed) -> None:
        assert self._http is not None and self._send_results is not None
        started = self.clock.now()
        delivery, request = self._begin(claim, started)
        effects: tuple[object, ...] = ()
        if request is not None:
            ok = False
            try:
                result, _ = await send_with_deadline(self._http, request, self.clock)
                ok = result.status is not None and 200 <= result.status <= 299
                took = result.ended_at - result.started_at
                self._attempt_time += _PACE_WEIGHT * (took - self._attempt_time)
            finally:
                if self.gate is not None:
                    self.gate.finished(claim.endpoint.id, self.clock.now(), ok, started)
            delivery, effects = delivery_machine.apply(delivery, Finish(result), self.policy)
        try:
            self._send_results.send_nowait(delivery)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return  # the service is leaving on an error; the lease brings this claim back
        self._unwritten += 1
        for effect in effects:
            if isinstance(effect, DisableEndpoint):
                await self._disable_for(effect)

    async def _disable_for(self, effect: DisableEndpoint) -> None:
        await self._call(
            operations.disable_if_enabled,
            self.store,
            effect.endpoint_id,
            self.clock.now(),
            effect.reason,
        )

    async def _writer(self, receive: MemoryObjectReceiveStream[Delivery]) -> None:
        async with receive:
            async for first in receive:
                batch = [first]
                while len(batch) < _WRITE_BATCH:
                    try:
                        batch.append(receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                with anyio.CancelScope(shield=True):
                    try:
                        await self._call(self._write_results, batch)
                    except Exception:
                        log.exception(
                            "writing %d results failed; they are retried when their leases end",
                            len(batch),
                        )
                self._unwritten -= len(batch)
                self._writes += 1
                self._wake.set()
                self._progress.set()
