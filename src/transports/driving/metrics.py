"""Prometheus metrics of a driver (the ``metrics`` extra: ``prometheus_client``).

Give a driver a ``WebhookMetrics`` (``metrics=``) and it counts into it::

    from prometheus_client import CollectorRegistry
    from transports.driving.metrics import WebhookMetrics

    registry = CollectorRegistry()          # or leave it out: the default registry
    metrics = WebhookMetrics(registry)
    service = WebhookService(store, metrics=metrics)

Counters and the histogram move as the driver works; the gauges of the
store (deliveries and endpoints by state, how late the most overdue delivery
is) are counted every ``refresh_interval`` seconds by the driver's
dispatcher, never per scrape or per request. ``serve_metrics`` serves
``/metrics`` from a thread; ``metrics_app`` is the same as an ASGI app to
mount. Per-endpoint series are off unless ``endpoint_labels`` is given: then
the first that many endpoints seen get their own ``endpoint`` label and the
rest share ``endpoint="other"``, so the series stay bounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import exposition as _exposition

from transports.driving.observe import Observer, StoreSnapshot
from transports.driving.operations import PublishResult
from transports.stores.interface import Claimed
from webhook_core import Delivery, DeliveryState, EndpointState, HttpRequest, Outcome

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds; up to the default 30 s attempt deadline."""

OTHER_ENDPOINTS = "other"


class WebhookMetrics(Observer):
    """The ``webhooks_*`` metrics, registered on ``registry`` (see the module)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = REGISTRY,
        *,
        refresh_interval: float = 15.0,
        endpoint_labels: int = 0,
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> None:
        self.registry = registry
        self.refresh_interval = refresh_interval
        self.endpoint_labels = endpoint_labels
        self.published_events = Counter(
            "webhooks_published_events",
            "Events published (stored and fanned out).",
            registry=registry,
        )
        self.attempts = Counter(
            "webhooks_attempts",
            "Delivery attempts that ended, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.attempt_duration = Histogram(
            "webhooks_attempt_duration_seconds",
            "Time from the start of an attempt to its end.",
            buckets=buckets,
            registry=registry,
        )
        self.in_flight = Gauge("webhooks_in_flight", "Attempts being sent now.", registry=registry)
        self.deliveries = Gauge(
            "webhooks_deliveries",
            "Deliveries in the store, by state (counted every refresh interval).",
            ["state"],
            registry=registry,
        )
        self.endpoints = Gauge(
            "webhooks_endpoints",
            "Endpoints in the store, by state (counted every refresh interval).",
            ["state"],
            registry=registry,
        )
        self.oldest_due_age = Gauge(
            "webhooks_oldest_due_age_seconds",
            "How long past its due time the most overdue delivery (or lease) is; 0 if none.",
            registry=registry,
        )
        self._by_outcome = {o: self.attempts.labels(o.value) for o in Outcome}
        self._endpoint_attempts: Counter | None = None
        self._endpoint_names: set[str] = set()
        if endpoint_labels:
            self._endpoint_attempts = Counter(
                "webhooks_endpoint_attempts",
                f"Attempts by endpoint (the first {endpoint_labels} seen; the rest "
                f"as {OTHER_ENDPOINTS!r}) and outcome.",
                ["endpoint", "outcome"],
                registry=registry,
            )

    def published(self, results: Sequence[PublishResult]) -> None:
        self.published_events.inc(len(results))

    def attempt_started(self, claim: Claimed, request: HttpRequest) -> tuple[HttpRequest, Any]:
        self.in_flight.inc()
        return request, None

    def attempt_ended(self, claim: Claimed, delivery: Delivery, token: Any) -> None:
        self.in_flight.dec()
        attempt = delivery.attempts[-1]
        self._by_outcome[attempt.outcome].inc()
        self.attempt_duration.observe(attempt.latency)
        if self._endpoint_attempts is not None:
            self._endpoint_attempts.labels(
                self._endpoint_label(delivery.endpoint_id), attempt.outcome.value
            ).inc()

    def attempt_abandoned(self, claim: Claimed, token: Any) -> None:
        self.in_flight.dec()

    def _endpoint_label(self, endpoint_id: str) -> str:
        names = self._endpoint_names
        if endpoint_id in names:
            return endpoint_id
        if len(names) < self.endpoint_labels:
            names.add(endpoint_id)
            return endpoint_id
        return OTHER_ENDPOINTS

    def store_snapshot(self, snapshot: StoreSnapshot) -> None:
        for state in DeliveryState:
            self.deliveries.labels(state.value).set(snapshot.deliveries.get(state, 0))
        for endpoint_state in EndpointState:
            self.endpoints.labels(endpoint_state.value).set(
                snapshot.endpoints.get(endpoint_state, 0)
            )
        self.oldest_due_age.set(snapshot.oldest_due_age)


class MetricsServer:
    """``registry`` served at ``url`` from a daemon thread until ``close``."""

    def __init__(self, address: str, registry: CollectorRegistry = REGISTRY) -> None:
        host, port = parse_address(address)
        self._server, self._thread = _exposition.start_http_server(port, host, registry)
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self._server.server_port}/metrics"

    def close(self) -> None:
        """Stop serving and wait for the thread to end."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def serve_metrics(address: str, registry: CollectorRegistry = REGISTRY) -> MetricsServer:
    """Serve ``registry`` at ``http://address/metrics`` (``host:port``: ``127.0.0.1:9464``,
    ``[::1]:9464``; port 0 picks a free one, see ``MetricsServer.url``)."""
    return MetricsServer(address, registry)


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` as a pair, or a ``ValueError`` that says what is expected."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port (for example 127.0.0.1:9464)")
    return host.strip("[]"), int(port)


def metrics_app(registry: CollectorRegistry = REGISTRY) -> Any:
    """An ASGI app answering with ``registry``'s metrics (mount it at ``/metrics``)."""
    return _exposition.make_asgi_app(registry)
