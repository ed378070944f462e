"""Settings every driver takes, declared and checked once for all of them."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, Unpack

import attrs

from transports.driving.observe import observer_for
from transports.driving.operations import Retention
from transports.http.guard import OutboundPolicy
from transports.ids import new_id
from transports.stores.interface import Store
from transports.stores.url import open_store
from webhook_core import (
    LEASE_MARGIN,
    USER_AGENT,
    Attempt,
    ConfigError,
    Delivery,
    Endpoint,
    EndpointGate,
    EventCatalog,
    GatePolicy,
    HealthPolicy,
    RetryPolicy,
    platform_catalog,
)
from webhook_core.addresses import Network

T = TypeVar("T")

if TYPE_CHECKING:
    from transports.driving.metrics import WebhookMetrics

DEFAULT_GATE = GatePolicy()
DEFAULT_HEALTH = HealthPolicy()


@attrs.frozen(kw_only=True)
class DriverSettings:
    """What a driver runs with; every field is also a keyword argument of the drivers.

    ``policy``: the retry schedule, attempt cap and the attempt's total deadline.
    ``catalog``: the events that may be published and subscribed to; its
    ``max_body`` refuses larger events at publish (default 1 MiB, what the
    library's receiver accepts).
    ``max_in_flight``: attempts under way at once (None: the driver's default).
    ``lease``: how long a claim is held; defaults to the deadline plus at least
    30 s and must outlive the deadline by more than ``LEASE_MARGIN`` (a shorter
    lease lets two workers send the same attempt at once).
    ``poll_interval``: how often a store other processes write is polled
    (None: every second for such stores, never for the memory store).
    ``retention``: finished deliveries older than it allows are pruned every
    ``retention_interval`` seconds (none are pruned without it).
    ``allowed_networks``, ``allow_http`` and ``ca_file`` make the
    ``OutboundPolicy`` that the transports a driver makes and its handshakes use.
    ``gate`` limits each endpoint (concurrency, rate, circuit breaker; None: no
    limits) so one bad endpoint cannot take the capacity all share; ``health``
    disables an endpoint after a run of failed deliveries (None: never) and then
    calls ``on_endpoint_disabled`` with it, from the writer (a worker thread when
    the store blocks).
    ``on_attempt(delivery, attempt)`` is called after every attempt (``delivery``
    as it is after ``attempt``, its last) and ``on_delivery_failed(delivery)``
    when a delivery the driver handles is ``failed``; none of the three hooks
    can break the driver: what they raise is logged.
    ``metrics``: a ``WebhookMetrics`` (``transports.driving.metrics``, the
    ``metrics`` extra) the driver counts into and refreshes from the store.
    ``tracing``: a ``webhook.attempt`` OpenTelemetry span per attempt, linked
    to the span current when the event was published (the ``otel`` extra);
    ``traceparent`` also sends the attempt's span to receivers in a
    ``traceparent`` header (off by default: receivers see it).
    """

    policy: RetryPolicy = attrs.field(factory=RetryPolicy)
    catalog: EventCatalog = attrs.field(factory=platform_catalog)
    allow_http: bool = False
    max_in_flight: int | None = None
    lease: float | None = None
    poll_interval: float | None = None
    worker_id: str | None = None
    user_agent: str = USER_AGENT
    retention: Retention | None = None
    retention_interval: float = 3600.0
    allowed_networks: str | Iterable[str | Network] = ()
    ca_file: str | None = None
    gate: GatePolicy | None = DEFAULT_GATE
    health: HealthPolicy | None = DEFAULT_HEALTH
    on_endpoint_disabled: Callable[[Endpoint], object] | None = None
    on_attempt: Callable[[Delivery, Attempt], object] | None = None
    on_delivery_failed: Callable[[Delivery], object] | None = None
    metrics: WebhookMetrics | None = None
    tracing: bool = False
    traceparent: bool = False

    def __attrs_post_init__(self) -> None:
        if self.traceparent and not self.tracing:
            raise ConfigError("traceparent=True sends the attempt's span: set tracing=True too")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ConfigError("max_in_flight must be at least 1")
        if not self.retention_interval > 0:
            raise ConfigError("retention_interval must be a positive number of seconds")
        timeout = self.policy.timeout
        if self.lease is not None and self.lease <= timeout + LEASE_MARGIN:
            raise ConfigError(
                f"lease ({self.lease:g} s) must outlive the attempt deadline "
                f"({timeout:g} s) by more than {LEASE_MARGIN:g} s"
            )


class DriverOptions(TypedDict, total=False):
    """``DriverSettings``' fields as keyword arguments (a test keeps the two in step)."""

    policy: RetryPolicy | None
    catalog: EventCatalog | None
    allow_http: bool
    max_in_flight: int | None
    lease: float | None
    poll_interval: float | None
    worker_id: str | None
    user_agent: str
    retention: Retention | None
    retention_interval: float
    allowed_networks: str | Iterable[str | Network]
    ca_file: str | None
    gate: GatePolicy | None
    health: HealthPolicy | None
    on_endpoint_disabled: Callable[[Endpoint], object] | None
    on_attempt: Callable[[Delivery, Attempt], object] | None
    on_delivery_failed: Callable[[Delivery], object] | None
    metrics: WebhookMetrics | None
    tracing: bool
    traceparent: bool


def settings_from(settings: DriverSettings | None, options: DriverOptions) -> DriverSettings:
    """``settings`` (or the defaults) with ``options`` given as keyword arguments on top.

    ``policy=None`` and ``catalog=None`` mean the defaults, as they always have.
    """
    changes: dict[str, Any] = {
        k: v for k, v in options.items() if v is not None or k not in ("policy", "catalog")
    }
    base = settings if settings is not None else DriverSettings()
    try:
        return attrs.evolve(base, **changes)
    except TypeError as exc:
        raise ConfigError(f"{exc}; the driver settings are {_FIELD_NAMES}") from None


_FIELD_NAMES = ", ".join(f.name for f in attrs.fields(DriverSettings))


def transport_choice(http: T | str | None) -> tuple[T | None, str]:
    """The transport a driver was given, or none and the name of the one it makes:
    ``"http1"`` (the lean HTTP/1.1 transport, the default) or ``"httpx"``."""
    if http is None:
        return None, "http1"
    if isinstance(http, str):
        if http not in ("http1", "httpx"):
            raise ConfigError(f"http must be a transport, 'http1' or 'httpx', not {http!r}")
        return None, http
    return http, "http1"


class DriverConfig:
    """The store, settings and derived limits a driver runs with.

    ``store`` defaults to the SQLite file named by ``$WEBHOOKS_DB``, else
    ``webhooks.db`` in the working directory (opened once every setting is
    checked, and closed by the driver when it stops; pass a ``MemoryStore`` for
    tests and virtual time). See ``DriverSettings`` for the rest.
    """

    default_max_in_flight = 64

    def __init__(
        self,
        store: Store | None = None,
        settings: DriverSettings | None = None,
        **options: Unpack[DriverOptions],
    ) -> None:
        chosen = settings_from(settings, options)
        self.settings = chosen
        self.policy = chosen.policy
        self.catalog = chosen.catalog
        self.allow_http = chosen.allow_http
        self.outbound = OutboundPolicy(
            chosen.allowed_networks, allow_http=chosen.allow_http, ca_file=chosen.ca_file
        )
        if chosen.ca_file is not None:
            self.outbound.ssl_context()  # a CA file that cannot be loaded fails here, not later
        self.max_in_flight = chosen.max_in_flight or self.default_max_in_flight
        timeout = self.policy.timeout
        self.lease = chosen.lease if chosen.lease is not None else timeout + max(30.0, timeout)
        self.owns_store = store is None
        self.store: Store = store if store is not None else open_store()
        poll_interval = chosen.poll_interval
        if poll_interval is None:
            poll_interval = 1.0 if self.store.blocking else math.inf
        self.poll_interval = poll_interval
        self.worker_id = chosen.worker_id or new_id("wrk")
        self.user_agent = chosen.user_agent
        self.retention = chosen.retention
        self.retention_interval = chosen.retention_interval
        self.gate = None if chosen.gate is None else EndpointGate(chosen.gate)
        self.health = chosen.health
        self.observer = observer_for(chosen)
