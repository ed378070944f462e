"""How long a SQLite dispatcher takes to notice a publish: same process, and another process.

Run from the repository root::

    PYTHONPATH=src python -m benchmarks.bench_wakeup [--events 20] [--poll-interval 1.0]

The asyncio driver runs on a SQLite file with one endpoint on a local
receiver that answers at once (``transports.testing.LoopbackReceiver``).
Events are published one at a time, at random moments 50-250 ms apart
(so none lands on the dispatcher's poll schedule): first by the service
itself (``publish`` wakes its dispatcher), then by another process writing
the same file (nothing wakes the dispatcher: it finds the event at its next
poll). Each latency is from the event's creation to the end of its 2xx
attempt, as stored.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import anyio

from benchmarks.workload import DATA, EVENT, percentile
from transports.aio.service import WebhookService
from transports.driving import operations
from transports.stores.interface import DeliveryFilter
from transports.stores.sqlite import SQLiteStore
from transports.testing import LOOPBACK_NETWORKS, LoopbackReceiver
from webhook_core import DeliveryState, platform_catalog

_PUBLISHER = """
import random, sys, time
from transports.driving import operations
from transports.stores.sqlite import SQLiteStore
from webhook_core import platform_catalog
from benchmarks.workload import DATA, EVENT
store = SQLiteStore(sys.argv[1])
for _ in range(int(sys.argv[2])):
    time.sleep(random.uniform(0.05, 0.25))
    operations.publish(store, platform_catalog(), EVENT, DATA, time.time())
store.close()
"""


async def measure(path: Path, url: str, events: int, poll: float) -> tuple[list[float], ...]:
    """Sorted latencies of the events published by the service, then by another process."""
    from benchmarks.receiver import mark_active

    store = SQLiteStore(path)
    endpoint = operations.add_endpoint(store, url, time.time(), allow_http=True)
    mark_active(store, endpoint, time.time())
    delivered = DeliveryFilter(state=DeliveryState.DELIVERED)
    async with WebhookService(
        store, allow_http=True, allowed_networks=LOOPBACK_NETWORKS, poll_interval=poll
    ) as hooks:
        for _ in range(events):
            await anyio.sleep(random.uniform(0.05, 0.25))
            await hooks.publish(EVENT, DATA)
        await hooks.drain()
        await anyio.run_process([sys.executable, "-c", _PUBLISHER, str(path), str(events)])
        while store.count_deliveries(delivered) < 2 * events:
            await anyio.sleep(0.05)
    done = store.list_deliveries(delivered, limit=2 * events)  # oldest first
    store.close()
    times = [d.attempts[-1].ended_at - d.created_at for d in done]
    return sorted(times[:events]), sorted(times[events:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="dispatcher wake-up latency on SQLite")
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    platform_catalog()
    with LoopbackReceiver() as rx, tempfile.TemporaryDirectory() as directory:
        same, other = anyio.run(
            measure,
            Path(directory) / "webhooks.db",
            rx.url("/hook"),
            args.events,
            args.poll_interval,
        )
    for label, values in (("same process", same), ("other process", other)):
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        assert p50 is not None and p99 is not None
        print(
            f"{label:<14} publish to 2xx: p50 {p50 * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  "
            f"max {max(values) * 1000:7.1f} ms  (poll interval {args.poll_interval:g} s, "
            f"{len(values)} events)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
