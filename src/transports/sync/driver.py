"""What both drivers do, written once: the threaded driver's copy.

GENERATED from ``transports/aio/driver.py`` by ``scripts/unasync.py``: edit
that file and run the script; a test fails while this one is stale.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, ParamSpec, TypeVar, assert_never

from transports.clocks import Clock
from transports.driving import operations
from transports.driving.config import DriverConfig
from transports.driving.observe import store_snapshot
from transports.driving.state import ACTIVITIES, COALESCE, DriverState
from transports.ids import new_id
from transports.stores.interface import ALL_DELIVERIES, Claimed, DeliveryFilter
from transports.sync.publishing import ThreadedGroupedPublisher
from webhook_core import (
    DEFAULT_TENANT,
    AttemptResult,
    Delivery,
    DeliveryState,
    DisableEndpoint,
    Endpoint,
    EndpointState,
    HttpRequest,
    handshake_result,
    validate_tenant,
    verification_event,
    verification_request,
)
from webhook_core.delivery_machine import FAILED, DeliveryEffect

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger("transports.driver")

_OPEN_STATES = (DeliveryState.PENDING, DeliveryState.RETRY_SCHEDULED, DeliveryState.IN_FLIGHT)
_UNEXPECTED_PAUSE = 1.0  # seconds the dispatcher waits after an error that is not the store's


class SyncDriver(DriverConfig, abc.ABC):
    """The shared body of a driver; subclasses provide the primitives below."""

    _state: DriverState
    _state_lock: AbstractContextManager[object]
    """Held while asking or telling ``_state``: a lock where threads share it."""
    _publisher: ThreadedGroupedPublisher

    # -- primitives a driver provides ------------------------------------------------

    @property
    @abc.abstractmethod
    def clock(self) -> Clock:
        """The clock the driver reads."""

    @abc.abstractmethod
    def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a store call where the store may block (a worker thread, or under a lock)."""

    @abc.abstractmethod
    def _call_on_loop(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a store call of an ``on_loop`` activity (``ACTIVITIES``): on the event loop's
        thread where the store can make it without waiting, else as ``_call`` does."""

    @abc.abstractmethod
    def _signal(self) -> None:
        """Wake the dispatcher and ``drain``; call without holding ``_state_lock``."""

    @abc.abstractmethod
    def _pause(self, seconds: float) -> None:
        """Wait ``seconds``."""

    @abc.abstractmethod
    def _send(self, request: HttpRequest) -> tuple[AttemptResult, bytes]:
        """Send ``request`` under its total deadline: the core's result, and the body."""

    @abc.abstractmethod
    def _spawn_handshake(self, endpoint: Endpoint) -> None:
        """Run ``_handshake(endpoint)`` beside the rest."""

    @abc.abstractmethod
    def _hand_out(self, claims: Sequence[Claimed]) -> None:
        """Give ``claims`` to the workers (each runs ``_work(claim)``)."""

    @abc.abstractmethod
    def _queue_result(self, delivery: Delivery) -> bool:
        """Hand a finished record to the writer (the caller counts it); False if the writer is
        gone (leaving on an error: the lease brings the claim back)."""

    @abc.abstractmethod
    def _sleep_until(self, timeout: float, next_due: float | None) -> None:
        """Sleep up to ``timeout`` seconds, or until signalled (the dispatcher's wait)."""

    @abc.abstractmethod
    def _wait_for_progress(self, seen: int, wait: float | None, deadline: float | None) -> None:
        """Wait until ``_state.progress`` passes ``seen``, ``wait`` seconds at most; raise
        ``TimeoutError`` past ``deadline`` (the driver's own time base)."""

    @abc.abstractmethod
    def _deadline_after(self, seconds: float) -> float:
        """The deadline ``seconds`` from now, in ``_wait_for_progress``'s time base."""

    @abc.abstractmethod
    def _running(self) -> bool:
        """True while the driver runs and is not stopping."""

    def _new_state(self) -> DriverState:
        """A fresh ``DriverState`` under this driver's settings (at each start)."""
        return DriverState(
            policy=self.policy,
            lease=self.lease,
            max_in_flight=self.max_in_flight,
            poll_interval=self.poll_interval,
            user_agent=self.user_agent,
            retention=self.retention,
            retention_interval=self.retention_interval,
            gate=self.gate,
            refresh_interval=self.observer.refresh_interval,
        )

    # -- the sender's API --------------------------------------------------------

    def add_endpoint(
        self,
        url: str,
        *,
        secret: str | None = None,
        events: Iterable[str] = ("*",),
        headers: Mapping[str, str] | None = None,
        description: str = "",
        allow_duplicate: bool = False,
        tenant: str = DEFAULT_TENANT,
    ) -> Endpoint:
        """Register an endpoint (of ``tenant``) and start its verification handshake.

        Refused (``ConfigError``, naming the rule): an IP-literal host the
        outbound guard refuses, a pattern that selects no catalog event, a
        secret under 24 bytes, a URL another endpoint has (unless ``allow_duplicate``).
        """
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
            outbound=self.outbound,
            catalog=self.catalog,
            allow_duplicate=allow_duplicate,
            tenant=tenant,
        )
        self._start_handshake(endpoint)
        return endpoint

    def ensure_endpoint(
        self,
        url: str,
        *,
        secret: str | None = None,
        events: Iterable[str] = ("*",),
        headers: Mapping[str, str] | None = None,
        description: str = "",
        tenant: str = DEFAULT_TENANT,
    ) -> Endpoint:
        """The endpoint at ``url``, registered (and its handshake started) only if there is none.

        Call it each time your service starts: the same URL gives back the same
        endpoint, never a second one. Events or headers that differ from the
        stored ones are changed to those given; a secret the endpoint does not
        hold is refused (``rotate_secret`` changes it). See
        ``operations.ensure_endpoint``.
        """
        endpoint = self._call(
            operations.ensure_endpoint,
            self.store,
            url,
            self.clock.now(),
            secret=secret,
            events=events,
            headers=headers,
            description=description,
            allow_http=self.allow_http,
            outbound=self.outbound,
            catalog=self.catalog,
            tenant=tenant,
        )
        self._start_handshake(endpoint)
        return endpoint

    def wait_until_verified(
        self, endpoint_id: str, timeout: float | None = None, tenant: str = DEFAULT_TENANT
    ) -> Endpoint:
        """Wait until the endpoint's handshake has finished; return the endpoint.

        It is then ``active`` (verified), or ``unverified`` with the reason in
        ``last_error`` (``verify_endpoint`` sends the handshake again), or
        ``disabled``. Waits on the driver's own progress, re-reading the store
        when something changed (and every ``poll_interval`` for a store other
        processes write). Raises ``TimeoutError`` after ``timeout`` seconds and
        ``NotFound`` if the endpoint is removed. Unlike ``drain`` it does not
        wait for deliveries, so a web application's start-up is not held up by
        retries.
        """
        deadline = None if timeout is None else self._deadline_after(timeout)
        while True:
            with self._state_lock:
                seen = self._state.progress
            endpoint = self._call(operations.find_endpoint, self.store, endpoint_id, tenant)
            if endpoint is None:
                raise operations.NotFound(f"no endpoint with id {endpoint_id!r}")
            if endpoint.state is not EndpointState.VERIFYING:
                return endpoint
            try:
                self._wait_for_progress(seen, self._store_recheck, deadline)
            except TimeoutError:
                raise TimeoutError(
                    f"endpoint {endpoint_id} is still verifying after {timeout:g} s; is the "
                    "driver running, and does the endpoint answer the handshake?"
                ) from None

    def change_endpoint(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        events: Iterable[str] | None = None,
        headers: Mapping[str, str] | None = None,
        tenant: str = DEFAULT_TENANT,
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
            outbound=self.outbound,
            catalog=self.catalog,
            tenant=tenant,
        )
        self._start_handshake(endpoint)
        return endpoint

    def verify_endpoint(self, endpoint_id: str, tenant: str = DEFAULT_TENANT) -> Endpoint:
        """Send the handshake again (after a failed one)."""
        endpoint = self._call(
            operations.request_verification, self.store, endpoint_id, self.clock.now(), tenant
        )
        self._start_handshake(endpoint)
        return endpoint

    def disable_endpoint(
        self, endpoint_id: str, reason: str = "disabled by operator", tenant: str = DEFAULT_TENANT
    ) -> Endpoint:
        """Stop deliveries to an endpoint; its waiting deliveries fail."""
        return self._call(
            operations.disable_endpoint, self.store, endpoint_id, self.clock.now(), reason, tenant
        )

    def enable_endpoint(self, endpoint_id: str, tenant: str = DEFAULT_TENANT) -> Endpoint:
        """Resume a disabled endpoint."""
        endpoint = self._call(
            operations.enable_endpoint, self.store, endpoint_id, self.clock.now(), tenant
        )
        self._start_handshake(endpoint)
        return endpoint

    def rotate_secret(
        self,
        endpoint_id: str,
        *,
        secret: str | None = None,
        grace: float = 86_400,
        tenant: str = DEFAULT_TENANT,
    ) -> Endpoint:
        """Give an endpoint a new secret; the old one signs too for ``grace`` seconds."""
        return self._call(
            operations.rotate_endpoint_secret,
            self.store,
            endpoint_id,
            self.clock.now(),
            secret=secret,
            grace=grace,
            tenant=tenant,
        )

    def remove_endpoint(self, endpoint_id: str, tenant: str = DEFAULT_TENANT) -> None:
        """Delete an endpoint; its waiting deliveries fail."""
        self._call(operations.remove_endpoint, self.store, endpoint_id, self.clock.now(), tenant)

    def publish(
        self,
        event: str,
        data: Any,
        *,
        event_id: str | None = None,
        connection: Any = None,
        tenant: str = DEFAULT_TENANT,
    ) -> operations.PublishResult:
        """Validate and store an event of ``tenant``, fanned out to every subscribed active
        endpoint of that tenant.

        With ``connection`` (your open sqlite3 or psycopg connection to the
        store's database) the event is written in your transaction and is
        delivered only if you commit. The write then runs in the calling
        thread, as your connection requires; the dispatcher finds the event at
        its next poll (PostgreSQL wakes it at once).
        """
        (result,) = self.publish_many(
            [(event, data, event_id)], connection=connection, tenant=tenant
        )
        return result

    def publish_many(
        self,
        events: Iterable[operations.EventSpec],
        *,
        connection: Any = None,
        tenant: str = DEFAULT_TENANT,
    ) -> list[operations.PublishResult]:
        """Publish ``(name, data, event_id or None)`` events in one store transaction.

        Concurrent publishes share one store transaction where the store and
        the driver can group them, each caller getting its own results or errors.
        """
        validate_tenant(tenant)
        results = self._publish_specs(
            list(events), self.clock.now(), connection, tenant, self.observer.publishing()
        )
        self.observer.published(results)
        if any(r.deliveries for r in results):
            self._signal()
        return results

    def _publish_specs(
        self,
        specs: list[operations.EventSpec],
        now: float,
        connection: Any,
        tenant: str,
        trace_context: str | None,
    ) -> list[operations.PublishResult]:
        """Store events, fanned out: in the caller's transaction with ``connection``, directly
        on a store that does not block, else grouped with other callers' (one commit)."""
        if connection is not None or not self.store.blocking:
            return operations.publish_many(
                self.store,
                self.catalog,
                specs,
                now,
                connection=connection,
                tenant=tenant,
                trace_context=trace_context,
            )
        return self._publisher.publish(specs, now, tenant, trace_context)

    def replay(self, delivery_id: str, tenant: str = DEFAULT_TENANT) -> Delivery:
        """Send a delivered or failed delivery's event again, as a new delivery."""
        fresh = self._call(
            operations.replay_delivery, self.store, delivery_id, self.clock.now(), tenant
        )
        self._signal()
        return fresh

    def get_delivery(self, delivery_id: str, tenant: str = DEFAULT_TENANT) -> Delivery | None:
        """A delivery of ``tenant`` with its attempt history."""
        return self._call(operations.find_delivery, self.store, delivery_id, tenant)

    def get_endpoint(self, endpoint_id: str, tenant: str = DEFAULT_TENANT) -> Endpoint | None:
        """An endpoint of ``tenant``."""
        return self._call(operations.find_endpoint, self.store, endpoint_id, tenant)

    def list_endpoints(self, tenant: str = DEFAULT_TENANT) -> list[Endpoint]:
        """The endpoints of ``tenant``, oldest first."""
        return self._call(operations.list_endpoints, self.store, tenant)

    def list_deliveries(
        self,
        where: DeliveryFilter = ALL_DELIVERIES,
        limit: int = 100,
        offset: int = 0,
        tenant: str = DEFAULT_TENANT,
    ) -> list[Delivery]:
        """The deliveries of ``tenant`` matching ``where``, oldest first."""
        return self._call(operations.list_deliveries, self.store, where, limit, offset, tenant)

    @property
    def _store_recheck(self) -> float | None:
        """How long to wait on progress before reading a store other processes write again."""
        return max(self.poll_interval, 0.05) if self.store.blocking else None

    def _drain(self, deadline: float | None) -> None:
        recheck = self._store_recheck
        while True:
            with self._state_lock:
                seen, idle = self._state.progress, self._state.idle
            if idle:
                open_count = 0
                for state in _OPEN_STATES:
                    open_count += self._retrying(
                        "count_deliveries", self.store.count_deliveries, DeliveryFilter(state=state)
                    )
                if not open_count:
                    with self._state_lock:
                        # A claim made and written while counting shows only as progress.
                        if self._state.progress == seen and self._state.idle:
                            return
                    continue
            self._wait_for_progress(seen, recheck, deadline)

    # -- store calls the driver makes on its own ------------------------------------

    def _retrying(self, call: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on the store, tried again after errors, with back-off.

        ``call`` names the activity (``ACTIVITIES``): what it was doing goes in
        one log record per run of failures, with ``store_call`` in its extra
        fields; once it gives up (see ``Patience``) the last error is raised.
        """
        activity = ACTIVITIES[call]
        make = self._call_on_loop if activity.on_loop else self._call
        while True:
            try:
                result = make(fn, *args, **kwargs)
            except Exception as exc:
                with self._state_lock:
                    backoff = self._state.store_failed(call, self.clock.now())
                if backoff.first:
                    log.warning(
                        "store error while %s (%s: %s); trying again with back-off",
                        activity.doing,
                        type(exc).__name__,
                        exc,
                        extra={"store_call": call},
                    )
                if backoff.give_up:
                    raise
                self._pause(backoff.delay)
                continue
            with self._state_lock:
                recovered = self._state.store_answered(call)
            if recovered:
                log.info("store answers again: %s", activity.doing, extra={"store_call": call})
            return result

    # -- handshakes ------------------------------------------------------------

    def _start_handshake(self, endpoint: Endpoint) -> None:
        with self._state_lock:
            wanted = self._running() and self._state.handshake_wanted(endpoint)
        if wanted:
            self._spawn_handshake(endpoint)

    def _handshake(self, endpoint: Endpoint) -> None:
        try:
            token = endpoint.verification_token
            assert token is not None
            now = self.clock.now()
            event = verification_event(token, event_id=new_id("evt"), now=now)
            request = verification_request(
                endpoint, event, now, self.policy.timeout, self.user_agent
            )
            result, body = self._send(request)
            answer = handshake_result(result, body)
            saved = self._retrying(
                "record_handshake",
                operations.record_handshake,
                self.store,
                endpoint.id,
                token,
                answer,
            )
            self.observer.handshake_ended(endpoint, answer, saved)
        except Exception:
            log.exception(
                "handshake with endpoint %s abandoned; it is sent again later", endpoint.id
            )
        finally:
            with self._state_lock:
                self._state.handshake_ended(endpoint)
            self._signal()

    def _first_scan(self) -> list[Endpoint]:
        """At start, before the host can publish: the endpoints, to send the handshakes left
        undone once the driver runs (``_start_handshake``).

        Reading every endpoint once here also fills the decoded-endpoint cache
        of SQL stores, so the first publish to thousands of endpoints does not
        decode them all while the dispatcher, on another thread, does the same.
        One try: after an error the dispatcher's next scan retries, with back-off.
        """
        with self._state_lock:
            self._state.scan_due(self.clock.now())
        try:
            return self._call(self.store.list_endpoints)
        except Exception:
            return []

    # -- delivery --------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while self._running():
            try:
                self._dispatch_once()
            except Exception:
                if not self._running():
                    return
                log.exception(
                    "dispatcher: unexpected error; trying again in %g s", _UNEXPECTED_PAUSE
                )
                self._pause(_UNEXPECTED_PAUSE)

    def _dispatch_once(self) -> None:
        """Claim what is due and hand it to the workers; if nothing more is due now,
        sleep until it may be."""
        now = self.clock.now()
        with self._state_lock:
            scan = self._state.scan_due(now)
            retention = self._state.prune_due(now)
            refresh = self._state.refresh_due(now)
        if refresh:
            snapshot = self._retrying("snapshot", store_snapshot, self.store, now)
            self.observer.store_snapshot(snapshot)
        if scan:
            for endpoint in self._retrying("list_endpoints", self.store.list_endpoints):
                self._start_handshake(endpoint)
        if retention is not None:
            self._retrying("prune", operations.apply_retention, self.store, retention, now)
        with self._state_lock:
            wanted = self._state.claims_wanted()
            coalesce = self._state.coalesce(wanted)
        if coalesce:
            self._pause(COALESCE)
            with self._state_lock:
                wanted = self._state.claims_wanted()
        if wanted > 0:
            now = self.clock.now()
            claimed = self._retrying(
                "claim", self.store.claim, now, wanted, self.worker_id, now + self.lease
            )
            with self._state_lock:
                self._state.claimed(len(claimed))
            self._hand_out(claimed)
            if len(claimed) == wanted:
                return
        next_due = None
        if wanted > 0:
            next_due = self._retrying("next_due", self.store.next_due)
        with self._state_lock:
            timeout = self._state.timer(self.clock.now(), next_due)
        if self._running():
            self._sleep_until(timeout, next_due)

    def _work(self, claim: Claimed) -> None:
        """A worker's turn with one claim: send it (or write it back unsent, as the core
        decides), or keep it for release once stopping."""
        queued = False
        try:
            if not self._running():
                with self._state_lock:
                    self._state.unsent([claim])
                return
            clock = self.clock
            now = clock.now()
            with self._state_lock:
                delivery, request = self._state.begin(claim, now)
            effects: tuple[DeliveryEffect, ...] = ()
            if request is not None:
                request, token = self.observer.attempt_started(claim, request)
                try:
                    result, _ = self._send(request)
                except BaseException:
                    with self._state_lock:
                        self._state.abandoned(claim, clock.now(), now)
                    self.observer.attempt_abandoned(claim, token)
                    raise
                with self._state_lock:
                    self._state.attempt_ended(claim, result, now)
                delivery, effects = self._state.finish(delivery, result)
                self.observer.attempt_ended(claim, delivery, token)
            if not self._queue_result(delivery):
                return
            queued = True
            for effect in effects:
                self._carry_out(effect)
        except Exception:
            log.exception(
                "attempt of delivery %s failed; it is retried when its lease ends",
                claim.delivery.id,
            )
        finally:
            with self._state_lock:
                self._state.ended(queued=queued)
            self._signal()

    def _carry_out(self, effect: DeliveryEffect) -> None:
        if isinstance(effect, DisableEndpoint):
            disabled = self._retrying(
                "disable_endpoint",
                operations.disable_if_enabled,
                self.store,
                effect.endpoint_id,
                self.clock.now(),
                effect.reason,
            )
            if disabled is not None:
                self.observer.endpoint_disabled(disabled)
        else:
            assert_never(effect)

    def _write_batch(self, batch: Sequence[Delivery]) -> None:
        """Write finished records (retried while their leases last), tell the observer of
        failed deliveries and disabled endpoints, then signal."""
        try:
            disabled = self._retrying(
                "complete",
                operations.write_results,
                self.store,
                batch,
                self.worker_id,
                self.health,
            )
        except Exception:
            log.error(
                "gave up writing %d results; they are retried when their leases end", len(batch)
            )
        else:
            for delivery in batch:
                if delivery.state is FAILED:
                    self.observer.delivery_failed(delivery)
            for endpoint in disabled:
                self.observer.endpoint_disabled(endpoint)
        finally:
            with self._state_lock:
                self._state.written(len(batch))
            self._signal()

    def _release_unstarted(self) -> None:
        """Give the claims no worker started back to the store, in one call (at exit)."""
        with self._state_lock:
            ids, self._state.unstarted = self._state.unstarted, []
        if ids:
            try:
                self._retrying("release", self.store.release, ids, self.worker_id)
            except Exception:
                log.warning("%d unsent claims are due again when their leases end", len(ids))
