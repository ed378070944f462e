"""What a driver tells: Prometheus metrics scraped over HTTP, JSON log lines, the host's
hooks and OpenTelemetry spans, on every driver against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tests.conformance.harness import (
    BACKENDS,
    DRIVERS,
    make_store,
    message,
    running,
    verifying,
    wait_endpoint,
)
from transports.aio.service import WebhookService
from transports.cli.logs import JsonFormatter
from transports.driving.metrics import WebhookMetrics, serve_metrics
from transports.sync.service import ThreadedWebhookService
from transports.testing import Hang, LoopbackReceiver, Respond
from webhook_core import (
    Attempt,
    ConfigError,
    Delivery,
    Endpoint,
    EndpointState,
    RetryPolicy,
    rfc3339,
)

FAST = RetryPolicy(schedule=(0.2, 0.2), timeout=0.5)  # three attempts at most
LOOPBACK = ("127.0.0.0/8", "::1/128")


def until(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the ``webhooks_*`` metrics at ``url``, by name and labels."""
    text = httpx.get(url, timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("webhooks_")
    }


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The driver's records at DEBUG as JSON lines, as ``webhooks serve --log-format json``."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("transports.driver")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield out
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.parametrize("driver", DRIVERS)
def test_metrics_logs_and_hooks_after_successes_500s_timeouts_and_a_disabled_endpoint(
    driver: str, json_log: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    metrics = WebhookMetrics(registry, refresh_interval=0.05)
    server = serve_metrics("127.0.0.1:0", registry)
    told: dict[str, list[Any]] = {"attempt": [], "failed": [], "disabled": []}
    lock = threading.Lock()

    def on_attempt(delivery: Delivery, attempt: Attempt) -> None:
        with lock:
            told["attempt"].append((delivery.endpoint_id, attempt.outcome.value))
        raise RuntimeError("a hook that always raises")

    def on_delivery_failed(delivery: Delivery) -> None:
        with lock:
            told["failed"].append(delivery.endpoint_id)

    def on_endpoint_disabled(endpoint: Endpoint) -> None:
        with lock:
            told["disabled"].append(endpoint.id)
        raise RuntimeError("this one raises too")

    try:
        with (
            LoopbackReceiver(default=verifying()) as rx,
            running(
                driver,
                policy=FAST,
                gate=None,
                health=None,
                metrics=metrics,
                on_attempt=on_attempt,
                on_delivery_failed=on_delivery_failed,
                on_endpoint_disabled=on_endpoint_disabled,
            ) as hooks,
        ):
            routes: dict[str, Respond | Hang] = {"/ok": Respond(200), "/fail": Respond(500)}
            routes |= {"/slow": Hang(30), "/gone": Respond(410)}
            endpoints = {}
            for path in routes:
                endpoints[path] = hooks.add_endpoint(rx.url(path))
                wait_endpoint(hooks, endpoints[path].id, EndpointState.ACTIVE)
            for path, behaviour in routes.items():
                rx.route(path, behaviour)
            assert hooks.publish("message.sent", message(1)).deliveries == 4
            hooks.drain(timeout=30)
            wait_endpoint(hooks, endpoints["/gone"].id, EndpointState.DISABLED)
            assert hooks.publish("message.sent", message(2)).deliveries == 3
            hooks.drain(timeout=30)

            def counted() -> bool:
                return scrape(server.url).get(("webhooks_deliveries", (("state", "failed"),))) == 5

            until(counted, "the store's gauges to be refreshed")
            samples = scrape(server.url)
    finally:
        server.close()

    def sample(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    # ok: 2 successes; fail: 2 events x 3 attempts of 500; slow: 2 x 3 timeouts; gone: one 410
    assert sample("webhooks_published_events_total") == 2
    assert sample("webhooks_attempts_total", outcome="success") == 2
    assert sample("webhooks_attempts_total", outcome="http_error") == 7
    assert sample("webhooks_attempts_total", outcome="timeout") == 6
    assert sample("webhooks_attempts_total", outcome="connect_error") == 0
    assert sample("webhooks_attempt_duration_seconds_count") == 15
    assert sample("webhooks_attempt_duration_seconds_bucket", le="0.25") == 9  # all but timeouts
    assert sample("webhooks_in_flight") == 0
    assert sample("webhooks_deliveries", state="delivered") == 2
    assert sample("webhooks_deliveries", state="pending") == 0
    assert sample("webhooks_endpoints", state="active") == 3
    assert sample("webhooks_endpoints", state="disabled") == 1
    assert sample("webhooks_oldest_due_age_seconds") == 0

    ids = {path: e.id for path, e in endpoints.items()}
    assert sorted(told["attempt"]) == sorted(
        [(ids["/ok"], "success")] * 2
        + [(ids["/fail"], "http_error")] * 6
        + [(ids["/slow"], "timeout")] * 6
        + [(ids["/gone"], "http_error")]
    )
    assert sorted(told["failed"]) == sorted([ids["/fail"], ids["/slow"]] * 2 + [ids["/gone"]])
    assert told["disabled"] == [ids["/gone"]]
    hook_errors = [r for r in caplog.records if "raised; the driver goes on" in r.getMessage()]
    assert [r.levelname for r in hook_errors].count("ERROR") == 2  # once per hook, then DEBUG

    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    attempts = [line for line in lines if "attempt" in line and "status" in line]
    assert len(attempts) == 15
    for line in attempts:
        assert {"event_id", "event", "delivery_id", "endpoint_id", "outcome"} <= line.keys()
        assert {"duration_ms", "next_attempt_at", "time", "level", "message"} <= line.keys()
        assert line["event"] == "message.sent"
        assert "secret" not in json.dumps(line).lower()
    success = next(line for line in attempts if line["outcome"] == "success")
    assert (success["level"], success["status"], success["next_attempt_at"]) == ("debug", 200, None)
    retried = next(line for line in attempts if line["status"] == 500 and line["attempt"] == 1)
    assert retried["level"] == "warning" and retried["next_attempt_at"].endswith("Z")
    timeout = next(line for line in attempts if line["outcome"] == "timeout")
    assert timeout["status"] is None and timeout["endpoint_id"] == ids["/slow"]
    [disabled] = [line for line in lines if line.get("outcome") == "disabled"]
    assert (disabled["level"], disabled["endpoint_id"]) == ("error", ids["/gone"])
    verified = [line for line in lines if line.get("outcome") == "verified"]
    assert sorted(line["endpoint_id"] for line in verified) == sorted(ids.values())
    assert all(line["level"] == "info" for line in verified)
    failed = [line for line in lines if line.get("outcome") == "failed"]
    assert len(failed) == 5 and all(line["level"] == "warning" for line in failed)


def test_a_failed_handshake_is_logged_as_a_warning_with_its_status(json_log: io.StringIO) -> None:
    with (
        LoopbackReceiver(default=Respond(404)) as rx,
        running("threads", policy=FAST) as hooks,
    ):
        endpoint = hooks.add_endpoint(rx.url("/nope"))
        wait_endpoint(hooks, endpoint.id, EndpointState.UNVERIFIED)
        hooks.drain(timeout=30)
    [line] = [json.loads(x) for x in json_log.getvalue().splitlines() if "handshake" in x]
    assert line["level"] == "warning"
    assert (line["endpoint_id"], line["status"], line["outcome"]) == (endpoint.id, 404, "failed")


def test_per_endpoint_series_are_opt_in_and_bounded() -> None:
    plain = CollectorRegistry()
    WebhookMetrics(plain)
    assert "webhooks_endpoint_attempts" not in {m.name for m in plain.collect()}
    bounded = WebhookMetrics(CollectorRegistry(), endpoint_labels=2)
    labels = [bounded._endpoint_label(f"ep_{i}") for i in (1, 2, 3, 1, 4)]
    assert labels == ["ep_1", "ep_2", "other", "ep_1", "other"]


def test_counts_from_many_threads_add_up_and_in_flight_stays_within_the_workers() -> None:
    registry = CollectorRegistry()
    metrics = WebhookMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated"):
        WebhookMetrics(registry)  # the same names twice on one registry
    seen: list[float] = []
    stop = threading.Event()

    def scraping() -> None:
        while not stop.is_set():
            seen.append(registry.get_sample_value("webhooks_in_flight") or 0.0)

    scraper = threading.Thread(target=scraping)
    with (
        LoopbackReceiver(default=verifying()) as rx,
        running("threads", policy=FAST, metrics=metrics, max_in_flight=8) as hooks,
    ):
        endpoints = [hooks.add_endpoint(rx.url(f"/{n}")) for n in range(4)]
        for endpoint in endpoints:
            wait_endpoint(hooks, endpoint.id, EndpointState.ACTIVE)
        scraper.start()
        try:
            for i in range(100):
                hooks.publish("message.sent", message(i))
            hooks.drain(timeout=60)
        finally:
            stop.set()
            scraper.join()

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("webhooks_published_events_total") == 100
    assert sample("webhooks_attempts_total", outcome="success") == 400
    assert sample("webhooks_attempt_duration_seconds_count") == 400
    assert sample("webhooks_attempt_duration_seconds_bucket", le="+Inf") == 400
    assert sample("webhooks_in_flight") == 0
    assert seen and all(0 <= n <= 8 for n in seen)


def test_json_lines_carry_each_records_own_second() -> None:
    formatter = JsonFormatter()
    for created in (1704067199.999, 1704067200.0, 1704067200.5, 1704067199.0, time.time()):
        record = logging.LogRecord("transports.driver", logging.INFO, "", 0, "x", None, None)
        record.created = created
        assert json.loads(formatter.format(record))["time"] == rfc3339(created)


# -- traces ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def active(endpoint: Endpoint | None) -> bool:
    return endpoint is not None and endpoint.state is EndpointState.ACTIVE


def publish_in_a_span(driver: str, store_kind: str, url: str, directory: Path) -> str:
    """Publish one event inside a ``checkout`` span and deliver it; the span's trace id."""
    tracer = trace.get_tracer("test")
    options: dict[str, Any] = {
        "allow_http": True,
        "allowed_networks": LOOPBACK,
        "tracing": True,
        "traceparent": True,
    }
    store = make_store(store_kind, directory)
    if driver == "threads":
        with ThreadedWebhookService(store, **options) as service:
            endpoint = service.add_endpoint(url)
            until(lambda: active(service.get_endpoint(endpoint.id)), "the handshake")
            with tracer.start_as_current_span("checkout") as span:
                service.publish("message.sent", message(1))
            service.drain(timeout=30)
        return format(span.get_span_context().trace_id, "032x")

    async def main() -> str:
        async with WebhookService(store, **options) as service:
            endpoint = await service.add_endpoint(url)
            while True:
                current = await service.get_endpoint(endpoint.id)
                if current is not None and current.state is EndpointState.ACTIVE:
                    break
                await anyio.sleep(0.02)
            with tracer.start_as_current_span("checkout") as span:
                await service.publish("message.sent", message(1))
            with anyio.fail_after(30):
                await service.drain()
        return format(span.get_span_context().trace_id, "032x")

    backend, backend_options = BACKENDS[driver]
    return anyio.run(main, backend=backend, backend_options=backend_options)


@pytest.mark.parametrize(
    ("driver", "store_kind"),
    [("trio", "sqlite"), ("asyncio", "memory"), ("threads", "sqlite"), ("threads", "postgres")],
)
def test_an_attempt_span_links_to_the_publishing_span_and_goes_out_as_traceparent(
    driver: str, store_kind: str, spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    spans.clear()
    with LoopbackReceiver(default=verifying()) as rx:
        publishing_trace = publish_in_a_span(driver, store_kind, rx.url("/hook"), tmp_path)
        [request] = [r for r in rx.requests if r.json()["event"] == "message.sent"]
    attempts: list[ReadableSpan] = [
        s for s in spans.get_finished_spans() if s.name == "webhook.attempt"
    ]
    [span] = attempts
    assert span.kind is trace.SpanKind.CLIENT
    [link] = span.links
    assert format(link.context.trace_id, "032x") == publishing_trace
    assert span.attributes is not None
    assert span.attributes["webhook.event"] == "message.sent"
    assert span.attributes["webhook.attempt"] == 1
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["webhook.outcome"] == "success"
    context = span.get_span_context()
    assert context is not None
    traceparent = request.header("traceparent")
    assert traceparent is not None
    assert traceparent.startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")
    assert set(request.json()) == {"event", "timestamp", "data", "id"}  # the body is unchanged


def test_without_traceparent_receivers_get_no_trace_header(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    with (
        LoopbackReceiver(default=verifying()) as rx,
        running("threads", tracing=True) as hooks,
    ):
        endpoint = hooks.add_endpoint(rx.url("/hook"))
        wait_endpoint(hooks, endpoint.id, EndpointState.ACTIVE)
        hooks.publish("message.sent", message(1))
        hooks.drain(timeout=30)
        [request] = [r for r in rx.requests if r.json()["event"] == "message.sent"]
    assert request.header("traceparent") is None


def test_traceparent_without_tracing_is_refused() -> None:
    with pytest.raises(ConfigError, match="set tracing=True"):
        ThreadedWebhookService(make_store("memory", Path()), traceparent=True)
