"""Draw docs/operations-dashboard.png: the Grafana dashboard's panels from a real run.

Run from the repository root (about two minutes)::

    PYTHONPATH=src python scripts/dashboard_screenshot.py [--seconds 100] [--out FILE]

A threaded driver delivers to a loopback receiver with healthy endpoints, one
that answers 500, one that times out and one that starts answering
``410 Gone`` part way (and is disabled), under a publishing rate that rises
and falls, with a burst that the driver's small ``max_in_flight`` turns into a
backlog. ``/metrics`` is scraped over HTTP every second, as Prometheus would;
each panel of ``docs/grafana-dashboard.json`` is then drawn with matplotlib
from those samples, its PromQL evaluated here (``EVALUATORS``: rates over
``WINDOW`` seconds, quantiles interpolated in the buckets as
``histogram_quantile`` does). A panel whose expression has no evaluator
stops the script, so the picture cannot drift from the dashboard.
"""

from __future__ import annotations

import argparse
import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from transports.driving.metrics import WebhookMetrics, serve_metrics
from transports.stores.memory import MemoryStore
from transports.sync.service import ThreadedWebhookService
from transports.testing import (
    LOOPBACK_NETWORKS,
    Delay,
    Handler,
    Hang,
    LoopbackReceiver,
    ReceivedRequest,
    Respond,
)
from webhook_core import EndpointState, RetryPolicy

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
WINDOW = 10.0  # seconds: the $__rate_interval of this short run
Sample = dict[tuple[str, tuple[tuple[str, str], ...]], float]
Series = dict[str, list[tuple[float, float]]]


def scrape(url: str) -> Sample:
    """The ``webhooks_*`` samples at ``url`` by name and labels."""
    text = httpx.get(url, timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("webhooks_")
    }


def verifying(then: Respond | Delay | Hang | Handler) -> Handler:
    """Answer handshakes with their token and everything else with ``then``."""

    def handle(request: ReceivedRequest) -> object:
        body = request.json()
        if body.get("event") == "webhook.verification":
            return Respond(200, body["data"]["verification_token"].encode())
        return then.fn(request) if isinstance(then, Handler) else then

    return Handler(handle)


def run(seconds: float) -> list[tuple[float, Sample]]:
    """Drive traffic for ``seconds`` and scrape every second: ``(t, samples)`` pairs."""
    registry = CollectorRegistry()
    server = serve_metrics("127.0.0.1:0", registry)
    scrapes: list[tuple[float, Sample]] = []
    gone_after = seconds * 0.4
    start = time.monotonic()

    def gone_later(request: ReceivedRequest) -> object:
        return Respond(410) if time.monotonic() - start > gone_after else Respond(200)

    behaviours: dict[str, Respond | Delay | Hang | Handler] = {
        f"/ok{i}": Delay(0.01 * (i + 1), Respond(200)) for i in range(5)
    }
    behaviours |= {"/flaky": Respond(500), "/slow": Hang(30), "/gone": Handler(gone_later)}
    try:
        with (
            LoopbackReceiver() as rx,
            ThreadedWebhookService(
                MemoryStore(),
                allow_http=True,
                allowed_networks=LOOPBACK_NETWORKS,
                max_in_flight=48,
                policy=RetryPolicy(schedule=(3, 6, 12), timeout=1.0),
                gate=None,
                metrics=WebhookMetrics(registry, refresh_interval=1.0),
            ) as service,
        ):
            for path, behaviour in behaviours.items():
                rx.route(path, verifying(behaviour))
                service.add_endpoint(rx.url(path))
            while any(e.state is not EndpointState.ACTIVE for e in service.list_endpoints()):
                time.sleep(0.05)
            start = time.monotonic()
            stop = threading.Event()

            def publish() -> None:
                credit, sent = 0.0, 0
                while not stop.is_set():
                    t = time.monotonic() - start
                    rate = 2.5 + 2 * math.sin(t / seconds * 2 * math.pi)
                    if abs(t - seconds * 0.65) < 0.5:
                        rate = 60  # a burst: a backlog builds behind max_in_flight
                    credit += rate * 0.1
                    while credit >= 1:
                        service.publish("message.sent", message(sent))
                        credit -= 1
                        sent += 1
                    time.sleep(0.1)

            publisher = threading.Thread(target=publish, daemon=True)
            publisher.start()
            while (now := time.monotonic() - start) < seconds:
                scrapes.append((now, scrape(server.url)))
                time.sleep(max(0.0, len(scrapes) - (time.monotonic() - start)))
            stop.set()
            publisher.join()
    finally:
        server.close()
    return scrapes


def message(i: int) -> dict[str, str]:
    return {"message_id": f"m{i}", "channel": "sms", "to": "+919876543210", "status": "sent"}


# -- PromQL, evaluated over the scrapes ----------------------------------------------------


def _value(sample: Sample, name: str, **labels: str) -> float:
    return sum(
        v
        for (n, ls), v in sample.items()
        if n == name and all(dict(ls).get(k) == want for k, want in labels.items())
    )


def _label_values(scrapes: list[tuple[float, Sample]], name: str, label: str) -> list[str]:
    return sorted({dict(ls)[label] for _, s in scrapes for (n, ls) in s if n == name})


def _rate(
    scrapes: list[tuple[float, Sample]], value: Callable[[Sample], float]
) -> list[tuple[float, float]]:
    points = []
    for i, (t, sample) in enumerate(scrapes):
        j = next((k for k in range(i, -1, -1) if t - scrapes[k][0] >= WINDOW), None)
        if j is not None:
            points.append((t, (value(sample) - value(scrapes[j][1])) / (t - scrapes[j][0])))
    return points


def attempts_by_outcome(scrapes: list[tuple[float, Sample]]) -> Series:
    outcomes = _label_values(scrapes, "webhooks_attempts_total", "outcome")
    series = {
        o: _rate(scrapes, lambda s, o=o: _value(s, "webhooks_attempts_total", outcome=o))  # type: ignore[misc]
        for o in outcomes
    }
    return {o: points for o, points in series.items() if any(v for _, v in points)}


def failed_share(scrapes: list[tuple[float, Sample]]) -> Series:
    total = _rate(scrapes, lambda s: _value(s, "webhooks_attempts_total"))
    ok = _rate(scrapes, lambda s: _value(s, "webhooks_attempts_total", outcome="success"))
    return {
        "failed": [
            (t, (all_ - good) / all_)
            for (t, all_), (_, good) in zip(total, ok, strict=True)
            if all_
        ]
    }


def _quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """``histogram_quantile``: linear interpolation inside the bucket that holds rank q."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return None


def duration_quantiles(scrapes: list[tuple[float, Sample]]) -> Series:
    name = "webhooks_attempt_duration_seconds_bucket"
    bounds = sorted(float(b) for b in _label_values(scrapes, name, "le"))
    rates = {
        b: _rate(scrapes, lambda s, b=b: _value(s, name, le=_le(b)))  # type: ignore[misc]
        for b in bounds
    }
    series: Series = {"p50": [], "p99": []}
    for i in range(len(rates[bounds[0]])):
        t = rates[bounds[0]][i][0]
        buckets = [(b, rates[b][i][1]) for b in bounds]
        for label, q in (("p50", 0.5), ("p99", 0.99)):
            value = _quantile(q, buckets)
            if value is not None:
                series[label].append((t, value))
    return series


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else str(bound)


def gauge(name: str, label: str | None = None, only: tuple[str, ...] = ()) -> Callable[..., Series]:
    def evaluate(scrapes: list[tuple[float, Sample]]) -> Series:
        if label is None:
            return {name: [(t, _value(s, name)) for t, s in scrapes]}
        values = [v for v in _label_values(scrapes, name, label) if not only or v in only]
        return {v: [(t, _value(s, name, **{label: v})) for t, s in scrapes] for v in values}

    return evaluate


EVALUATORS: dict[str, Callable[[list[tuple[float, Sample]]], Series]] = {
    "sum by (outcome) (rate(webhooks_attempts_total[$__rate_interval]))": attempts_by_outcome,
    'sum(rate(webhooks_attempts_total{outcome!="success"}[$__rate_interval])) / '
    "sum(rate(webhooks_attempts_total[$__rate_interval]))": failed_share,
    "histogram_quantile(0.5, sum by (le) "
    "(rate(webhooks_attempt_duration_seconds_bucket[$__rate_interval])))": duration_quantiles,
    "max(webhooks_oldest_due_age_seconds)": gauge("webhooks_oldest_due_age_seconds"),
    'sum by (state) (webhooks_deliveries{state=~"pending|retry_scheduled|in_flight"})': gauge(
        "webhooks_deliveries", "state", ("pending", "retry_scheduled", "in_flight")
    ),
    "sum(rate(webhooks_published_events_total[$__rate_interval]))": lambda scrapes: {
        "published": _rate(scrapes, lambda s: _value(s, "webhooks_published_events_total"))
    },
    "sum(webhooks_in_flight)": gauge("webhooks_in_flight"),
    "sum by (state) (webhooks_endpoints)": gauge("webhooks_endpoints", "state"),
}
"""Each panel's first expression (the p99 panel's quantiles come with its p50)."""


def draw(scrapes: list[tuple[float, Sample]], out: Path) -> None:
    """The dashboard's panels in its grid, Grafana's dark theme roughly."""
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    missing = [p["targets"][0]["expr"] for p in panels if p["targets"][0]["expr"] not in EVALUATORS]
    if missing:
        raise SystemExit(f"no evaluator for the dashboard's expression(s): {missing}")
    rows = max(p["gridPos"]["y"] // 8 for p in panels) + 1
    plt.style.use("dark_background")
    fig, axes = plt.subplots(rows, 2, figsize=(16, 3.4 * rows), facecolor="#111217")
    fig.suptitle(
        "Webhooks delivery (docs/grafana-dashboard.json)", color="#ccccdc", x=0.02, ha="left"
    )
    for panel in panels:
        ax = axes[panel["gridPos"]["y"] // 8][panel["gridPos"]["x"] // 12]
        ax.set_facecolor("#181b1f")
        ax.set_title(panel["title"], loc="left", color="#ccccdc", fontsize=11)
        for legend, points in EVALUATORS[panel["targets"][0]["expr"]](scrapes).items():
            if points:
                ax.plot([t for t, _ in points], [v for _, v in points], label=legend, lw=1.6)
        unit = panel["fieldConfig"]["defaults"]["unit"]
        if unit == "percentunit":
            ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.set_ylim(bottom=0)
        ax.set_xlabel("seconds into the run", color="#8e8e8e", fontsize=8)
        ax.grid(color="#2c3235", lw=0.6)
        ax.tick_params(colors="#8e8e8e", labelsize=8)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.legend(loc="upper left", fontsize=8, frameon=False, ncols=4)
    fig.tight_layout()
    fig.savefig(out, dpi=80, facecolor=fig.get_facecolor())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=100.0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "operations-dashboard.png")
    args = parser.parse_args()
    scrapes = run(args.seconds)
    draw(scrapes, args.out)
    print(f"{len(scrapes)} scrapes drawn into {args.out}")


if __name__ == "__main__":
    main()
