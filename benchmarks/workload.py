"""What every benchmark row sends, the shapes of the runs, and how a row's figures are summed up.

Every row, ours or naive, POSTs the same ~180-byte canonical JSON body with
Standard Webhooks headers to URLs of one local receiver: ``/hooks/N`` answers
200, ``/fail/N`` answers 500 (a failing endpoint), and a blackhole port never
answers (an endpoint timing out). Each delivery gets one attempt (ours run
with a retry policy of no retries, like the naive clients) within
``Shape.timeout`` seconds.
"""

from __future__ import annotations

import base64
import hmac
import math
import time
from dataclasses import dataclass, replace
from typing import Any

EVENT = "message.sent"
DATA = {"message_id": "msg_42", "channel": "sms", "to": "+919876543210", "status": "sent"}
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
_KEY = base64.b64decode(SECRET.removeprefix("whsec_"))


@dataclass(frozen=True)
class Shape:
    """``events`` events, each sent to every endpoint: healthy, failing (500) and dead ones."""

    name: str
    label: str
    events: int
    healthy: int
    failing: int = 0
    dead: int = 0
    timeout: float = 30.0

    @property
    def deliveries(self) -> int:
        return self.events * (self.healthy + self.failing + self.dead)

    @property
    def expected_ok(self) -> int:
        return self.events * self.healthy

    def urls(self, base_url: str, dead_url: str) -> list[str]:
        """One URL per endpoint: healthy, then failing, then dead."""
        return (
            [f"{base_url}/hooks/{i}" for i in range(self.healthy)]
            + [f"{base_url}/fail/{i}" for i in range(self.failing)]
            + [f"{dead_url}/{i}" for i in range(self.dead)]
        )


SHAPES = (
    Shape("fanout", "1 event to 10,000 endpoints", events=1, healthy=10_000),
    Shape("events", "100,000 events to 10 endpoints", events=100_000, healthy=10),
    Shape("failing", "1,000 events to 100 endpoints, 10 failing", 1_000, healthy=90, failing=10),
    Shape("dead", "500 events to 100 healthy + 1 timing out (1 s)", 500, 100, dead=1, timeout=1.0),
)
SHAPE_NAMES = tuple(s.name for s in SHAPES)


def scaled(shape: Shape, scale: float, quick: bool) -> Shape:
    """``shape`` with its event count times ``scale``; ``quick`` also shrinks the fan-out."""
    events = max(1, math.ceil(shape.events * scale))
    healthy = shape.healthy
    if quick and shape.events == 1:
        healthy = max(10, healthy // 20)
    label = (
        shape.label
        if (events, healthy) == (shape.events, shape.healthy)
        else (
            f"{events:,} event(s) to {healthy + shape.failing + shape.dead:,} endpoints"
            + (f", {shape.failing} failing" if shape.failing else "")
            + (f", {shape.dead} timing out ({shape.timeout:g} s)" if shape.dead else "")
        )
    )
    return replace(shape, events=events, healthy=healthy, label=label)


def body() -> bytes:
    """The body every naive client sends: what the service sends for one event."""
    from webhook_core import build_event, platform_catalog

    event = build_event(
        platform_catalog(), EVENT, DATA, event_id="evt_01J9Z6Y8K3QF7W2R5T8X4N6B0C", now=time.time()
    )
    return event.body


def naive_headers(msg_id: str, payload: bytes) -> dict[str, str]:
    """Standard Webhooks headers, the way a user would compute them by hand."""
    stamp = str(int(time.time()))
    mac = hmac.digest(_KEY, f"{msg_id}.{stamp}.".encode() + payload, "sha256")
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def summary(
    ok_times: list[float],
    latencies: list[float],
    total: int,
    cpu_seconds: float,
    *,
    publish_seconds: float | None = None,
) -> dict[str, Any]:
    """A row's figures from each successful delivery's finish time and latency.

    ``ok_times`` are seconds from the first publish (or the first request)
    to each 2xx; the rate is successful deliveries over the time to the last
    one, so waiting for failing or dead endpoints after that is not counted.
    ``cpu_seconds`` is the process's CPU time (all threads) over the timed
    part: per delivery it is steadier than the rate on a busy machine.
    """
    latencies = sorted(latencies)
    span = max(ok_times) if ok_times else math.nan
    return {
        "ok": len(ok_times),
        "total": total,
        "rate": len(ok_times) / span if ok_times and span > 0 else None,
        "p50": percentile(latencies, 0.50),
        "p99": percentile(latencies, 0.99),
        "publish": publish_seconds,
        "cpu_us": cpu_seconds / total * 1e6 if total else None,
    }


def percentile(ordered: list[float], fraction: float) -> float | None:
    """The ``fraction`` quantile of sorted values (nearest rank), or None if there are none."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]
