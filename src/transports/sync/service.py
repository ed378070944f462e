"""The threaded webhook service: the driver for applications without an event loop.

Theory of operation
-------------------
``with ThreadedWebhookService(...) as hooks:`` (or ``start()`` ... ``stop()``)
runs these threads beside the application's own:

* the dispatcher claims due deliveries from the store in batches (up to the
  free share of ``max_in_flight``) and hands each claim to the attempt pool,
  then sleeps until the store's next due time, a wake-up (publish, replay, a
  finished attempt, a written batch) or, for stores other processes may
  write, the poll interval. Under ``VirtualClock(autojump=True)`` it jumps the
  clock to the next due time instead, once nothing is in flight, unwritten or
  being verified, so hours of back-off pass in no wall time;
* the attempt pool (``max_in_flight`` threads) runs each attempt: ``Abandon``
  for a claim whose earlier lease expired, ``Start``, the signed request sent
  through the blocking transport, ``Finish``, and ``DisableEndpoint`` effects;
* the writer stores finished records a batch at a time (one
  ``store.complete`` per batch);
* handshakes run on a small pool of their own, for endpoints in ``verifying``.

Each attempt has a total deadline (``policy.timeout``): the transport bounds
every socket wait by the time left (``HttpxSyncTransport``), and an exchange
that outlasted the deadline is recorded as a timeout whatever came back.

Every decision (state, retry time, disabling) is made by ``webhook_core``;
this module only executes effects and reports results. ``stop()`` stops
claiming, lets attempts in flight finish within their deadline, flushes the
writer, gives claims no worker started back to the store (``release``) and
joins every thread. Nothing is lost: a claim never written back is reclaimed
when its lease ends.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from transports.clocks import Clock, SystemClock, VirtualClock
from transports.driving import operations
from transports.driving.config import DEFAULT_GATE, DEFAULT_HEALTH, DriverConfig
from transports.http.httpx_transport import HttpxSyncTransport
from transports.http.lean import Http1SyncTransport
from transports.http.transport import (
    HttpResponse,
    SyncHttpTransport,
    TransportError,
    attempt_result,
    timeout_result,
)
from transports.ids import new_id
from transports.stores.interface import ALL_DELIVERIES, Claimed, DeliveryFilter, Store
from webhook_core import (
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
log = logging.getLogger(__name__)

_OPEN_STATES = (DeliveryState.PENDING, DeliveryState.RETRY_SCHEDULED, DeliveryState.IN_FLIGHT)
_WRITE_BATCH = 512
_HANDSHAKE_WORKERS = 4
_VIRTUAL_TICK = 0.01  # real seconds between looks at a VirtualClock advanced by hand
_ERROR_PAUSE = 1.0  # real seconds the dispatcher waits after a store error


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


class ThreadedWebhookService(DriverConfig):
    """Sends webhooks from a program without an event loop, on threads.

    ``store`` defaults to the SQLite file ``webhooks.db`` (or ``$WEBHOOKS_DB``);
    ``http`` to an ``HttpxSyncTransport`` (``http="http1"``: ``Http1SyncTransport``;
    either made with the service's outbound policy, while a transport you pass
    keeps its own); ``clock`` to the system clock (``VirtualClock`` in
    tests). The sender's methods mirror ``WebhookService``'s, synchronously.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        http: SyncHttpTransport | str | None = None,
        clock: Clock | None = None,
        policy: RetryPolicy | None = None,
        catalog: EventCatalog | None = None,
        allow_http: bool = False,
        max_in_flight: int = 32,
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
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._http_choice = http if isinstance(http, str) else "httpx"
        if self._http_choice not in ("httpx", "http1"):
            raise ConfigError(f"http must be a transport, 'httpx' or 'http1', not {http!r}")
        self._http = None if isinstance(http, str) else http
        self._owns_http = self._http is None
        self._store_lock = threading.Lock()
        self._gate_lock = threading.Lock()
        self._stop_lock = threading.Lock()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # Guarded by _lock:
        self._running = False
        self._stopping = False
        self._wake = False
        self._unsubscribe: Callable[[], None] | None = None
        self._progress = 0
        self._in_flight = 0
        self._unwritten = 0
        self._verifying: set[tuple[str, str | None]] = set()  # (endpoint id, token)
        self._unstarted: list[str] = []
        # Owned by the dispatcher thread:
        self._next_scan = -math.inf
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
            endpoints = self._call(self.store.list_endpoints)
            with self._lock:
                if self._running:
                    raise RuntimeError("the service is already running")
                if self._http is None:
                    self._http = (
                        Http1SyncTransport(policy=self.outbound)
                        if self._http_choice == "http1"
                        else HttpxSyncTransport(policy=self.outbound)
                    )
                self._stopping = self._wake = self._writer_told = False
                self._next_scan = self.clock.now() + self.poll_interval
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
                    target=self._dispatch_loop, name="webhooks-dispatcher", daemon=True
                )
                self._running = True
            for endpoint in endpoints:
                self._start_handshake(endpoint)
            self._writer.start()
            self._dispatcher.start()
            subscribe = getattr(self.store, "subscribe", None)
            if subscribe is not None:
                self._unsubscribe = subscribe(self._notify)

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
                if not self._running:
                    return
                self._stopping = True
                self._signal_locked()
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
            assert self._dispatcher and self._writer and self._attempts and self._handshakes
            self._dispatcher.join(left())
            with self._changed:
                if self._dispatcher.is_alive() or not self._changed.wait_for(
                    lambda: not (self._in_flight or self._verifying), left()
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
            if self._unstarted:
                self._call(self.store.release, self._unstarted, self.worker_id)
                self._unstarted = []
            if self._owns_http and self._http is not None:
                self._http.close()
                self._http = None
            with self._lock:
                self._running = False
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

    # -- store access and signalling --------------------------------------------

    def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if not self.store.blocking:
            return fn(*args, **kwargs)
        with self._store_lock:
            return fn(*args, **kwargs)

    def _signal_locked(self) -> None:
        """Wake the dispatcher and ``drain``; the caller holds ``_lock``."""
        self._wake = True
        self._progress += 1
        self._changed.notify_all()

    def _notify(self) -> None:
        with self._lock:
            self._signal_locked()

    def _idle_locked(self) -> bool:
        return not (self._in_flight or self._unwritten or self._verifying)

    # -- the sender's API --------------------------------------------------------

    def add_endpoint(
        self,
        url: str,
        *,
        secret: str | None = None,
        events: Iterable[str] = ("*",),
        headers: Mapping[str, str] | None = None,
        description: str = "",
    ) -> Endpoint:
        """Register an endpoint and start its verification handshake."""
        endpoint = self._call(
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

    def change_endpoint(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        events: Iterable[str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Endpoint:
        """Change an endpoint; a new URL is verified again before it receives events."""
        endpoint = self._call(
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

    def verify_endpoint(self, endpoint_id: str) -> Endpoint:
        """Send the handshake again (after a failed one)."""
        endpoint = self._call(
            operations.request_verification, self.store, endpoint_id, self.clock.now()
        )
        self._start_handshake(endpoint)
        return endpoint

    def disable_endpoint(self, endpoint_id: str, reason: str = "disabled by operator") -> Endpoint:
        """Stop deliveries to an endpoint; its waiting deliveries fail."""
        return self._call(
            operations.disable_endpoint, self.store, endpoint_id, self.clock.now(), reason
        )

    def enable_endpoint(self, endpoint_id: str) -> Endpoint:
        """Resume a disabled endpoint."""
        endpoint = self._call(operations.enable_endpoint, self.store, endpoint_id, self.clock.now())
        self._start_handshake(endpoint)
        return endpoint

    def rotate_secret(
        self, endpoint_id: str, *, secret: str | None = None, grace: float = 86_400
    ) -> Endpoint:
        """Give an endpoint a new secret; the old one signs too for ``grace`` seconds."""
        return self._call(
            operations.rotate_endpoint_secret,
            self.store,
            endpoint_id,
            self.clock.now(),
            secret=secret,
            grace=grace,
        )

    def remove_endpoint(self, endpoint_id: str) -> None:
        """Delete an endpoint; its waiting deliveries fail."""
        self._call(operations.remove_endpoint, self.store, endpoint_id, self.clock.now())

    def publish(
        self, event: str, data: Any, *, event_id: str | None = None, connection: Any = None
    ) -> operations.PublishResult:
        """Validate and store an event, fanned out to every subscribed active endpoint.

        With ``connection`` (your open sqlite3 or psycopg connection to the
        store's database) the event is written in your transaction and is
        delivered only if you commit; the dispatcher finds it at its next poll
        (PostgreSQL wakes it at once).
        """
        (result,) = self.publish_many([(event, data, event_id)], connection=connection)
        return result

    def publish_many(
        self, events: Iterable[operations.EventSpec], *, connection: Any = None
    ) -> list[operations.PublishResult]:
        """Publish ``(name, data, event_id or None)`` events in one store transaction.

        Threads publishing at once are not serialised by the service: a store
        that groups commits (SQLite) makes one commit of many.
        """
        args = (self.store, self.catalog, list(events), self.clock.now())
        results = operations.publish_many(*args, connection=connection)
        if any(r.deliveries for r in results):
            self._notify()
        return results

    def replay(self, delivery_id: str) -> Delivery:
        """Send a delivered or failed delivery's event again, as a new delivery."""
        fresh = self._call(operations.replay_delivery, self.store, delivery_id, self.clock.now())
        self._notify()
        return fresh

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        """A delivery with its attempt history."""
        return self._call(self.store.get_delivery, delivery_id)

    def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        """An endpoint."""
        return self._call(self.store.get_endpoint, endpoint_id)

    def list_deliveries(
        self, where: DeliveryFilter = ALL_DELIVERIES, limit: int = 100, offset: int = 0
    ) -> list[Delivery]:
        """Deliveries matching ``where``, oldest first."""
        return self._call(self.store.list_deliveries, where, limit, offset)

    def drain(self, timeout: float | None = None) -> None:
        """Block until no delivery is waiting or in flight and no handshake is running.

        Under ``VirtualClock(autojump=True)`` this runs the whole retry schedule
        in next to no wall time. Raises ``TimeoutError`` after ``timeout``
        seconds, and ``RuntimeError`` if the service is not running.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        recheck = max(self.poll_interval, 0.05) if self.store.blocking else None
        while True:
            with self._lock:
                if not self._running:
                    raise RuntimeError("the service is not running; start() it first")
                seen = self._progress
                idle = self._idle_locked()
            if idle and not self._open_deliveries():
                with self._lock:
                    # Counting takes a store call per state: a claim made and
                    # written meanwhile shows only as progress.
                    if self._progress == seen and self._idle_locked():
                        return
                continue
            with self._changed:
                wait = recheck
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"deliveries still open after {timeout:g} s")
                    wait = left if wait is None else min(wait, left)
                if self._progress == seen:
                    self._changed.wait(wait)

    def _open_deliveries(self) -> int:
        return sum(
            self._call(self.store.count_deliveries, DeliveryFilter(state=state))
            for state in _OPEN_STATES
        )

    # -- handshakes ------------------------------------------------------------

    def _start_handshake(self, endpoint: Endpoint) -> None:
        """Send the handshake for ``endpoint``'s current token, unless one is on its way.

        A new token (a changed URL, a retried verification) gets a handshake at
        once; the answer to the old one is then stale and ignored.
        """
        if endpoint.state is not EndpointState.VERIFYING:
            return
        key = (endpoint.id, endpoint.verification_token)
        with self._lock:
            if not self._running or self._stopping or key in self._verifying:
                return
            assert self._handshakes is not None
            self._verifying.add(key)
            self._handshakes.submit(self._handshake, endpoint)

    def _handshake(self, endpoint: Endpoint) -> None:
        try:
            assert self._http is not None
            now = self.clock.now()
            token = endpoint.verification_token
            assert token is not None
            event = verification_event(token, event_id=new_id("evt"), now=now)
            request = verification_request(
                endpoint, event, now, self.policy.timeout, self.user_agent
            )
            result, body = send_with_deadline(self._http, request, self.clock)
            current = self._call(self.store.get_endpoint, endpoint.id)
            if (
                current is None
                or current.state is not EndpointState.VERIFYING
                or current.verification_token != token
            ):
                return  # changed meanwhile: this answer is stale
            answer = handshake_result(result, body)
            self._call(self.store.save_endpoint, endpoint_machine.apply(current, answer))
        except Exception:
            log.exception("handshake with endpoint %s failed", endpoint.id)
        finally:
            with self._lock:
                self._verifying.discard((endpoint.id, endpoint.verification_token))
                self._signal_locked()

    def _scan_endpoints(self) -> None:
        now = self.clock.now()
        if now < self._next_scan:
            return
        self._next_scan = now + self.poll_interval
        for endpoint in self._call(self.store.list_endpoints):
            self._start_handshake(endpoint)

    # -- delivery --------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        assert self._attempts is not None
        while True:
            with self._lock:
                if self._stopping:
                    return
                self._wake = False
                free = self.max_in_flight - self._in_flight
            try:
                self._scan_endpoints()
                retention = self._prune_due(self.clock.now())
                if retention is not None:
                    self._call(operations.apply_retention, self.store, retention, self.clock.now())
                if free > 0:
                    now = self.clock.now()
                    claimed = self._call(
                        self.store.claim, now, free, self.worker_id, now + self.lease
                    )
                    if claimed:
                        with self._lock:
                            self._in_flight += len(claimed)
                        for claim in claimed:
                            self._attempts.submit(self._attempt, claim)
                        if len(claimed) == free:
                            continue
                self._sleep_until(self._call(self.store.next_due) if free > 0 else None)
            except Exception:
                log.exception("dispatcher: store error; trying again in %g s", _ERROR_PAUSE)
                with self._changed:
                    self._changed.wait(_ERROR_PAUSE)

    def _sleep_until(self, due: float | None) -> None:
        """Wait for a wake-up, the poll interval or the clock time ``due``.

        A ``VirtualClock`` with autojump is moved to ``due`` instead, when
        nothing is in flight, unwritten or being verified; with work in flight
        the wait lasts until that work reports.
        """
        clock = self.clock
        with self._changed:
            if self._wake:
                return
            timeout = min(self.poll_interval, self._until_prune(clock.now()))
            if due is not None:
                if not isinstance(clock, VirtualClock):
                    timeout = min(timeout, due - clock.now())
                elif not clock.autojump:
                    timeout = min(timeout, _VIRTUAL_TICK)
                elif self._idle_locked():
                    clock.jump_to(due)
                    return
            if timeout > 0:
                self._changed.wait(None if math.isinf(timeout) else timeout)

    def _attempt(self, claim: Claimed) -> None:
        try:
            if self._stopping:
                with self._lock:
                    self._unstarted.append(claim.delivery.id)
                return
            self._run_attempt(claim)
        except Exception:
            log.exception(
                "attempt of delivery %s failed; it is retried when its lease ends",
                claim.delivery.id,
            )
        finally:
            with self._lock:
                self._in_flight -= 1
                self._signal_locked()

    def _run_attempt(self, claim: Claimed) -> None:
        assert self._http is not None
        started = self.clock.now()
        with self._gate_lock:
            delivery, request = self._begin(claim, started)
        effects: tuple[object, ...] = ()
        if request is not None:
            ok = False
            try:
                result, _ = send_with_deadline(self._http, request, self.clock)
                ok = result.status is not None and 200 <= result.status <= 299
            finally:
                if self.gate is not None:
                    with self._gate_lock:
                        self.gate.finished(claim.endpoint.id, self.clock.now(), ok, started)
            delivery, effects = delivery_machine.apply(delivery, Finish(result), self.policy)
        self._write(delivery)
        for effect in effects:
            if isinstance(effect, DisableEndpoint):
                self._disable_for(effect)

    def _disable_for(self, effect: DisableEndpoint) -> None:
        self._call(
            operations.disable_if_enabled,
            self.store,
            effect.endpoint_id,
            self.clock.now(),
            effect.reason,
        )

    def _write(self, delivery: Delivery) -> None:
        with self._lock:
            self._unwritten += 1
        self._results.put(delivery)

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
            try:
                self._call(self._write_results, batch)
            except Exception:
                log.exception(
                    "writing %d results failed; they are retried when their leases end",
                    len(batch),
                )
            finally:
                with self._lock:
                    self._unwritten -= len(batch)
                    self._signal_locked()
            if last:
                return
