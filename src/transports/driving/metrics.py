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

import bisect
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client import exposition as _exposition
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from transports.driving.observe import Observer, StoreSnapshot
from transports.driving.operations import PublishResult
from transports.stores.interface import Claimed
from webhook_core import Delivery, DeliveryState, EndpointState, HttpRequest, Outcome

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds; up to the default 30 s attempt deadline."""

OTHER_ENDPOINTS = "other"

_PUBLISHED = ("webhooks_published_events", "Events published (stored and fanned out).")
_ATTEMPTS = ("webhooks_attempts", "Delivery attempts that ended, by outcome.")
_DURATION = ("webhooks_attempt_duration_seconds", "Time from the start of an attempt to its end.")
_IN_FLIGHT = ("webhooks_in_flight", "Attempts being sent now.")
_DELIVERIES = (
    "webhooks_deliveries",
    "Deliveries in the store, by state (counted every refresh interval).",
)
_ENDPOINTS = (
    "webhooks_endpoints",
    "Endpoints in the store, by state (counted every refresh interval).",
)
_OLDEST = (
    "webhooks_oldest_due_age_seconds",
    "How long past its due time the most overdue delivery (or lease) is; 0 if none.",
)
_ENDPOINT_ATTEMPTS = "webhooks_endpoint_attempts"


class WebhookMetrics(Observer):
    """The ``webhooks_*`` metrics, a collector registered on ``registry`` (see the module).

    An attempt moves plain numbers under one lock; they become metric
    families only when the registry is scraped, so counting costs a few
    additions rather than a locked update per counter, gauge and bucket.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = REGISTRY,
        *,
        refresh_interval: float = 15.0,
        endpoint_labels: int = 0,
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> None:
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds) or not bounds:
            raise ValueError(f"buckets must be ascending and not empty, not {buckets!r}")
        if bounds[-1] != float("inf"):
            bounds.append(float("inf"))
        self.registry = registry
        self.refresh_interval = refresh_interval
        self.endpoint_labels = endpoint_labels
        self._bounds = tuple(bounds)
        self._le = tuple(floatToGoString(b) for b in bounds)  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        self._created = time.time()
        self._published = 0
        self._started = 0
        self._settled = 0  # attempts ended or abandoned: in flight = started - settled
        self._outcomes = dict.fromkeys(Outcome, 0)
        self._buckets = [0] * len(bounds)
        self._sum = 0.0
        self._endpoint_names: set[str] = set()
        self._by_endpoint: dict[tuple[str, Outcome], list[float]] = {}  # [count, created]
        self._snapshot: StoreSnapshot | None = None
        if registry is not None:
            registry.register(self)

    def published(self, results: Sequence[PublishResult]) -> None:
        with self._lock:
            self._published += len(results)

    def attempt_started(self, claim: Claimed, request: HttpRequest) -> tuple[HttpRequest, Any]:
        with self._lock:
            self._started += 1
        return request, None

    def attempt_ended(self, claim: Claimed, delivery: Delivery, token: Any) -> None:
        attempt = delivery.attempts[-1]
        latency = attempt.latency
        bucket = bisect.bisect_left(self._bounds, latency)
        with self._lock:
            self._settled += 1
            self._outcomes[attempt.outcome] += 1
            self._buckets[bucket] += 1
            self._sum += latency
            if self.endpoint_labels:
                key = (self._endpoint_label(delivery.endpoint_id), attempt.outcome)
                counted = self._by_endpoint.get(key)
                if counted is None:
                    counted = self._by_endpoint[key] = [0, time.time()]
                counted[0] += 1

    def attempt_abandoned(self, claim: Claimed, token: Any) -> None:
        with self._lock:
            self._settled += 1

    def _endpoint_label(self, endpoint_id: str) -> str:
        names = self._endpoint_names
        if endpoint_id in names:
            return endpoint_id
        if len(names) < self.endpoint_labels:
            names.add(endpoint_id)
            return endpoint_id
        return OTHER_ENDPOINTS

    def store_snapshot(self, snapshot: StoreSnapshot) -> None:
        self._snapshot = snapshot

    def describe(self) -> list[Metric]:
        """The metric families, without samples (the registry's check for clashing names)."""
        families = [
            CounterMetricFamily(*_PUBLISHED),
            CounterMetricFamily(*_ATTEMPTS, labels=["outcome"]),
            HistogramMetricFamily(*_DURATION),
            GaugeMetricFamily(*_IN_FLIGHT),
            GaugeMetricFamily(*_DELIVERIES, labels=["state"]),
            GaugeMetricFamily(*_ENDPOINTS, labels=["state"]),
            GaugeMetricFamily(*_OLDEST),
        ]
        if self.endpoint_labels:
            families.append(self._endpoint_family())
        return families

    def collect(self) -> Iterator[Metric]:
        """The metrics' samples now (the registry calls this when scraped)."""
        with self._lock:
            published, in_flight = self._published, self._started - self._settled
            outcomes, buckets, total = dict(self._outcomes), list(self._buckets), self._sum
            by_endpoint = [(key, n, created) for key, (n, created) in self._by_endpoint.items()]
        yield CounterMetricFamily(*_PUBLISHED, value=published, created=self._created)
        attempts = CounterMetricFamily(*_ATTEMPTS, labels=["outcome"])
        for outcome, count in outcomes.items():
            attempts.add_metric([outcome.value], count, created=self._created)
        yield attempts
        yield self._duration_family(buckets, total)
        yield GaugeMetricFamily(*_IN_FLIGHT, value=in_flight)
        yield from self._store_families(self._snapshot)
        if self.endpoint_labels:
            family = self._endpoint_family()
            for (endpoint, outcome), n, created in by_endpoint:
                family.add_metric([endpoint, outcome.value], n, created=created)
            yield family

    def _duration_family(self, buckets: list[int], total: float) -> HistogramMetricFamily:
        cumulative: list[tuple[str, float]] = []
        below = 0
        for le, count in zip(self._le, buckets, strict=True):
            below += count
            cumulative.append((le, float(below)))
        family = HistogramMetricFamily(*_DURATION, buckets=cumulative, sum_value=total)
        family.samples.append(Sample(f"{_DURATION[0]}_created", {}, self._created))
        return family

    @staticmethod
    def _store_families(snapshot: StoreSnapshot | None) -> Iterator[Metric]:
        """The store's gauges as of the last snapshot (none by state before the first)."""
        deliveries = GaugeMetricFamily(*_DELIVERIES, labels=["state"])
        endpoints = GaugeMetricFamily(*_ENDPOINTS, labels=["state"])
        if snapshot is not None:
            for state in DeliveryState:
                deliveries.add_metric([state.value], snapshot.deliveries.get(state, 0))
            for endpoint_state in EndpointState:
                count = snapshot.endpoints.get(endpoint_state, 0)
                endpoints.add_metric([endpoint_state.value], count)
        yield deliveries
        yield endpoints
        age = 0.0 if snapshot is None else snapshot.oldest_due_age
        yield GaugeMetricFamily(*_OLDEST, value=age)

    def _endpoint_family(self) -> CounterMetricFamily:
        return CounterMetricFamily(
            _ENDPOINT_ATTEMPTS,
            f"Attempts by endpoint (the first {self.endpoint_labels} seen; the rest "
            f"as {OTHER_ENDPOINTS!r}) and outcome.",
            labels=["endpoint", "outcome"],
        )


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
