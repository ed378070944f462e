"""What a driver tells about its work: logs, metrics, traces and the host's hooks.

Theory of operation
-------------------
The driver body (``transports.aio.driver``, and the threaded driver generated
from it) calls one ``Observer`` at a few points: events published, an attempt
started and ended (or abandoned), a handshake answered, an endpoint disabled,
a delivery failed for good, and a snapshot of the store's counts taken on a
timer (``refresh_interval``). ``observer_for`` composes the observers a
driver's settings ask for into one ``Observers``, which calls each in turn
and never lets one that raises reach the driver: the error is logged (with
its traceback the first time, at DEBUG after that) and the driver goes on.

``LoggingObserver`` is always there: one record per attempt, handshake and
endpoint disabled on the ``transports.driver`` logger (the logger of the
driver's store errors, whose records carry ``store_call``), each with its
fields in ``extra`` (``FIELDS``); until the host configures logging they go
nowhere (a ``NullHandler`` on ``transports``). Successes are DEBUG (a verified endpoint
INFO), failures WARNING, an endpoint disabled ERROR. Secrets, tokens and
bodies are never logged; a failed attempt's error text is the transport's
one-line summary.

``HookObserver`` calls ``on_attempt``, ``on_delivery_failed`` and
``on_endpoint_disabled``. Prometheus metrics (``transports.driving.metrics``)
and OpenTelemetry spans (``transports.driving.tracing``) are observers in
modules of their own, imported only when a driver is given them, so that
``prometheus_client`` and ``opentelemetry`` are needed only by those who use
them. With nothing but logging at WARNING, an attempt costs two level checks.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from transports.stores.interface import Claimed, DeliveryFilter, Store
from webhook_core import (
    Attempt,
    Delivery,
    DeliveryState,
    Endpoint,
    EndpointState,
    HandshakeResult,
    HttpRequest,
    rfc3339,
)
from webhook_core.delivery_machine import SUCCESS

if TYPE_CHECKING:
    from transports.driving.config import DriverSettings
    from transports.driving.operations import PublishResult

log = logging.getLogger("transports.driver")
# A library's records go where the host's logging sends them, and nowhere (not to
# logging's last-resort stderr handler) when the host configures none.
logging.getLogger("transports").addHandler(logging.NullHandler())

FIELDS = (
    "event_id",
    "event",
    "delivery_id",
    "endpoint_id",
    "tenant",
    "attempt",
    "outcome",
    "status",
    "duration_ms",
    "next_attempt_at",
    "store_call",
)
"""The structured fields the driver's log records may carry in ``extra`` (the JSON keys)."""


@attrs.frozen
class StoreSnapshot:
    """The store's counts at ``now``: what the gauges show between two snapshots."""

    now: float
    deliveries: Mapping[DeliveryState, int]
    endpoints: Mapping[EndpointState, int]
    next_due: float | None  # the earliest due time or lease end (``Store.next_due``)

    @property
    def oldest_due_age(self) -> float:
        """Seconds the most overdue delivery has waited past its due time (0: none is late)."""
        if self.next_due is None:
            return 0.0
        return max(self.now - self.next_due, 0.0)


class Observer:
    """Told what a driver does; every method here does nothing (override what you need).

    A driver calls these from its workers, its writer and its dispatcher
    (worker threads in the threaded driver): keep them quick. What they raise
    is logged and otherwise ignored.
    """

    refresh_interval: float | None = None
    """Seconds between store snapshots wanted (``store_snapshot``); None: none."""

    def publishing(self) -> str | None:
        """The trace context to store with events published now (a ``traceparent``), if any."""
        return None

    def published(self, results: Sequence[PublishResult]) -> None:
        """Events were stored, fanned out."""

    def attempt_started(self, claim: Claimed, request: HttpRequest) -> tuple[HttpRequest, Any]:
        """An attempt is about to be sent: the request to send instead, and a token that
        ``attempt_ended`` or ``attempt_abandoned`` is given back."""
        return request, None

    def attempt_ended(self, claim: Claimed, delivery: Delivery, token: Any) -> None:
        """An attempt ended; ``delivery.attempts[-1]`` is it, ``delivery`` the record after it."""

    def attempt_abandoned(self, claim: Claimed, token: Any) -> None:
        """A sent attempt ended without a result (the driver failed or is leaving)."""

    def delivery_failed(self, delivery: Delivery) -> None:
        """A delivery this driver handled was written ``failed``: attempts used up, stopped
        by the receiver (``410 Gone``), or its endpoint no longer active."""

    def handshake_ended(
        self, endpoint: Endpoint, answer: HandshakeResult, saved: Endpoint | None
    ) -> None:
        """A handshake was answered (or not); ``saved`` is None when the answer was stale."""

    def endpoint_disabled(self, endpoint: Endpoint) -> None:
        """The driver disabled ``endpoint`` (its health policy, or a ``410 Gone``)."""

    def store_snapshot(self, snapshot: StoreSnapshot) -> None:
        """The store's counts, every ``refresh_interval`` seconds."""


@functools.lru_cache(maxsize=256)
def _second(whole: int) -> str:
    return rfc3339(whole)


def timestamp(epoch_seconds: float) -> str:
    """``rfc3339`` of ``epoch_seconds`` (whole seconds), remembered for the recent seconds
    that log records and retries fall on."""
    return _second(int(epoch_seconds // 1))


def attempt_fields(claim: Claimed, delivery: Delivery, attempt: Attempt) -> dict[str, Any]:
    """What an attempt is about and what it did: the ``extra`` of its log record."""
    due = delivery.next_attempt_at
    return {
        "event_id": delivery.event_id,
        "event": claim.event.name,
        "delivery_id": delivery.id,
        "endpoint_id": delivery.endpoint_id,
        "tenant": claim.event.tenant,
        "attempt": attempt.number,
        "outcome": attempt.outcome.value,
        "status": attempt.status,
        "duration_ms": round(attempt.latency * 1000, 1),
        "next_attempt_at": None if due is None else timestamp(due),
    }


class LoggingObserver(Observer):
    """One record per attempt, handshake and endpoint disabled (see the module)."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self.log = logger

    def attempt_ended(self, claim: Claimed, delivery: Delivery, token: Any) -> None:
        attempt = delivery.attempts[-1]
        ok = attempt.outcome is SUCCESS
        level = logging.DEBUG if ok else logging.WARNING
        if not self.log.isEnabledFor(level):
            return
        fields = attempt_fields(claim, delivery, attempt)
        what = f"{attempt.outcome.value} {attempt.status}" if attempt.status else attempt.error
        then = (
            f"retry at {fields['next_attempt_at']}"
            if delivery.next_attempt_at is not None
            else delivery.state.value
        )
        self.log.log(
            level,
            "%s %s attempt %d to %s: %s (%.0f ms); %s",
            claim.event.name,
            delivery.id,
            attempt.number,
            delivery.endpoint_id,
            what or attempt.outcome.value,
            fields["duration_ms"],
            then,
            extra=fields,
        )

    def delivery_failed(self, delivery: Delivery) -> None:
        self.log.warning(
            "delivery %s to %s failed: %s",
            delivery.id,
            delivery.endpoint_id,
            delivery.reason,
            extra={
                "event_id": delivery.event_id,
                "delivery_id": delivery.id,
                "endpoint_id": delivery.endpoint_id,
                "attempt": len(delivery.attempts),
                "outcome": "failed",
            },
        )

    def handshake_ended(
        self, endpoint: Endpoint, answer: HandshakeResult, saved: Endpoint | None
    ) -> None:
        fields = {
            "endpoint_id": endpoint.id,
            "event": "webhook.verification",
            "status": answer.status,
        }
        if saved is None:
            self.log.debug("handshake answer for %s is stale; ignored", endpoint.id, extra=fields)
        elif saved.state is EndpointState.ACTIVE:
            fields["outcome"] = "verified"
            self.log.info("endpoint %s verified", endpoint.id, extra=fields)
        else:
            fields["outcome"] = "failed"
            self.log.warning(
                "endpoint %s failed its handshake: %s", endpoint.id, saved.last_error, extra=fields
            )

    def endpoint_disabled(self, endpoint: Endpoint) -> None:
        self.log.error(
            "endpoint %s disabled: %s",
            endpoint.id,
            endpoint.disabled_reason,
            extra={"endpoint_id": endpoint.id, "outcome": "disabled"},
        )


class HookObserver(Observer):
    """Calls the host's ``on_attempt``, ``on_delivery_failed`` and ``on_endpoint_disabled``."""

    def __init__(
        self,
        on_attempt: Callable[[Delivery, Attempt], object] | None,
        on_delivery_failed: Callable[[Delivery], object] | None,
        on_endpoint_disabled: Callable[[Endpoint], object] | None,
    ) -> None:
        self.on_attempt = on_attempt
        self.on_delivery_failed = on_delivery_failed
        self.on_endpoint_disabled = on_endpoint_disabled

    def attempt_ended(self, claim: Claimed, delivery: Delivery, token: Any) -> None:
        if self.on_attempt is not None:
            self.on_attempt(delivery, delivery.attempts[-1])

    def delivery_failed(self, delivery: Delivery) -> None:
        if self.on_delivery_failed is not None:
            self.on_delivery_failed(delivery)

    def endpoint_disabled(self, endpoint: Endpoint) -> None:
        if self.on_endpoint_disabled is not None:
            self.on_endpoint_disabled(endpoint)


def _overriding(observers: Sequence[Observer], method: str) -> tuple[Observer, ...]:
    """The observers whose ``method`` is their own (the others would do nothing)."""
    base = getattr(Observer, method)
    return tuple(o for o in observers if getattr(type(o), method) is not base)


class Observers(Observer):
    """Several observers as one; one that raises is logged and cannot break the driver.

    Each call goes only to the observers that override it, and an attempt's
    tokens only to those that made one, so what nobody watches costs a loop
    over an empty tuple.
    """

    def __init__(self, observers: Iterable[Observer]) -> None:
        self.observers = tuple(observers)
        intervals = [o.refresh_interval for o in self.observers if o.refresh_interval]
        self.refresh_interval = min(intervals) if intervals else None
        self._failed: set[tuple[str, type[Observer]]] = set()
        self._starting = _overriding(self.observers, "attempt_started")
        takers = {id(o): i for i, o in enumerate(self._starting)}
        self._ending = tuple(
            (o, takers.get(id(o), -1)) for o in _overriding(self.observers, "attempt_ended")
        )
        self._abandoning = tuple(
            (o, takers.get(id(o), -1)) for o in _overriding(self.observers, "attempt_abandoned")
        )

    def _raised(self, where: str, observer: Observer) -> None:
        key = (where, type(observer))
        first = key not in self._failed
        self._failed.add(key)
        log.log(
            logging.ERROR if first else logging.DEBUG,
            "%s.%s raised; the driver goes on without it%s",
            type(observer).__name__,
            where,
            "" if first else " (again)",
            exc_info=True,
        )

    def publishing(self) -> str | None:
        for o in self.observers:
            try:
                context = o.publishing()
            except Exception:
                self._raised("publishing", o)
                continue
            if context is not None:
                return context
        return None

    def published(self, results: Sequence[PublishResult]) -> None:
        for o in self.observers:
            try:
                o.published(results)
            except Exception:
                self._raised("published", o)

    def attempt_started(self, claim: Claimed, request: HttpRequest) -> tuple[HttpRequest, Any]:
        if not self._starting:
            return request, None
        tokens = []
        for o in self._starting:
            try:
                request, token = o.attempt_started(claim, request)
            except Exception:
                self._raised("attempt_started", o)
                token = None
            tokens.append(token)
        return request, tokens

    def attempt_ended(self, claim: Claimed, delivery: Delivery, token: Any) -> None:
        for o, index in self._ending:
            try:
                o.attempt_ended(claim, delivery, None if index < 0 else token[index])
            except Exception:
                self._raised("attempt_ended", o)

    def attempt_abandoned(self, claim: Claimed, token: Any) -> None:
        for o, index in self._abandoning:
            try:
                o.attempt_abandoned(claim, None if index < 0 else token[index])
            except Exception:
                self._raised("attempt_abandoned", o)

    def delivery_failed(self, delivery: Delivery) -> None:
        for o in self.observers:
            try:
                o.delivery_failed(delivery)
            except Exception:
                self._raised("delivery_failed", o)

    def handshake_ended(
        self, endpoint: Endpoint, answer: HandshakeResult, saved: Endpoint | None
    ) -> None:
        for o in self.observers:
            try:
                o.handshake_ended(endpoint, answer, saved)
            except Exception:
                self._raised("handshake_ended", o)

    def endpoint_disabled(self, endpoint: Endpoint) -> None:
        for o in self.observers:
            try:
                o.endpoint_disabled(endpoint)
            except Exception:
                self._raised("endpoint_disabled", o)

    def store_snapshot(self, snapshot: StoreSnapshot) -> None:
        for o in self.observers:
            try:
                o.store_snapshot(snapshot)
            except Exception:
                self._raised("store_snapshot", o)


def observer_for(settings: DriverSettings) -> Observers:
    """Logging, and the metrics, tracing and hooks ``settings`` ask for, as one observer."""
    observers: list[Observer] = [LoggingObserver()]
    if settings.metrics is not None:
        observers.append(settings.metrics)
    if settings.tracing:
        from transports.driving.tracing import Tracing  # noqa: PLC0415 - the otel extra

        observers.append(Tracing(traceparent=settings.traceparent))
    hooks = (settings.on_attempt, settings.on_delivery_failed, settings.on_endpoint_disabled)
    if any(hook is not None for hook in hooks):
        observers.append(HookObserver(*hooks))
    return Observers(observers)


def store_snapshot(store: Store, now: float) -> StoreSnapshot:
    """Count the store's deliveries and endpoints by state, and read its next due time."""
    deliveries = {s: store.count_deliveries(DeliveryFilter(state=s)) for s in DeliveryState}
    endpoints = dict.fromkeys(EndpointState, 0)
    for endpoint in store.list_endpoints():
        endpoints[endpoint.state] += 1
    return StoreSnapshot(now, deliveries, endpoints, store.next_due())
