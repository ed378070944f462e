"""How long a SQLite dispatcher takes to notice a publish: same process, and another process.

Run from the repository root::

    PYTHONPATH=src python -m benchmarks.bench_wakeup [--events 20] [--poll-interval 1.0]
        [--drivers asyncio,trio,threads]

Each driver runs on a fresh SQLite file with one endpoint on a local
receiver that answers at once (``transports.testing.LoopbackReceiver``).
Events are published one at a time, at random moments 50-250 ms apart
(so none lands on the dispatcher's poll schedule): first by the service
itself (``publish`` wakes its dispatcher), then by another process writing
the same file (nothing wakes the dispatcher: it finds the event at its next
poll). Each latency is from the event's creation to the end of its 2xx
attempt, as stored.

The targets: a publish in the same process adds no poll interval (its worst
latency stays under one); one from another process waits for the next poll,
so its latency is at most one poll interval plus the delivery itself.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.drivers import DRIVERS
from benchmarks.workload import DATA, EVENT, percentile
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
_DELIVERED = DeliveryFilter(state=DeliveryState.DELIVERED)
_OPTIONS: dict[str, Any] = {"allow_http": True, "allowed_networks": LOOPBACK_NETWORKS}
# The delivery itself, over the target of one poll interval across processes.
_MARGIN = 0.1


def _other_process(path: Path, events: int) -> list[str]:
    return [sys.executable, "-c", _PUBLISHER, str(path), str(events)]


async def _run_async(store: SQLiteStore, events: int, poll: float) -> None:
    import anyio

    from transports.aio.service import WebhookService

    async with WebhookService(store, poll_interval=poll, **_OPTIONS) as hooks:
        for _ in range(events):
            await anyio.sleep(random.uniform(0.05, 0.25))
            await hooks.publish(EVENT, DATA)
        await hooks.drain()
        await anyio.run_process(_other_process(store.path, events))
        while store.count_deliveries(_DELIVERED) < 2 * events:
            await anyio.sleep(0.05)


def _run_threads(store: SQLiteStore, events: int, poll: float) -> None:
    from transports.sync.service import ThreadedWebhookService

    with ThreadedWebhookService(store, poll_interval=poll, **_OPTIONS) as hooks:
        for _ in range(events):
            time.sleep(random.uniform(0.05, 0.25))
            hooks.publish(EVENT, DATA)
        hooks.drain()
        subprocess.run(_other_process(store.path, events), check=True)
        while store.count_deliveries(_DELIVERED) < 2 * events:
            time.sleep(0.05)


def measure(driver: str, path: Path, url: str, events: int, poll: float) -> tuple[list[float], ...]:
    """Sorted latencies of the events published by the service, then by another process."""
    from benchmarks.receiver import mark_active

    store = SQLiteStore(path)
    endpoint = operations.add_endpoint(store, url, time.time(), allow_http=True)
    mark_active(store, endpoint, time.time())
    if driver == "threads":
        _run_threads(store, events, poll)
    else:
        import anyio

        anyio.run(_run_async, store, events, poll, backend=driver)
    done = store.list_deliveries(_DELIVERED, limit=2 * events)  # oldest first
    store.close()
    times = [d.attempts[-1].ended_at - d.created_at for d in done]
    return sorted(times[:events]), sorted(times[events:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="dispatcher wake-up latency on SQLite")
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--drivers", default=",".join(DRIVERS))
    args = parser.parse_args(argv)
    drivers = args.drivers.split(",")
    if set(drivers) - set(DRIVERS) or args.events < 1:
        parser.error(f"drivers are {DRIVERS}; --events must be at least 1")
    platform_catalog()
    poll = args.poll_interval
    print(f"poll interval {poll:g} s, {args.events} events per publisher")
    print("| driver | publisher | p50 ms | p99 ms | max ms | target | met |")
    print("|---|---|---:|---:|---:|---|---|")
    for driver in drivers:
        with LoopbackReceiver() as rx, tempfile.TemporaryDirectory() as directory:
            same, other = measure(
                driver, Path(directory) / "webhooks.db", rx.url("/hook"), args.events, poll
            )
        rows = (
            ("same process", same, poll, f"max < {poll:g} s"),
            ("other process", other, poll + _MARGIN, f"max < {poll + _MARGIN:g} s"),
        )
        for label, values, limit, target in rows:
            p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
            assert p50 is not None and p99 is not None
            cells = (
                driver,
                label,
                f"{p50 * 1000:,.1f}",
                f"{p99 * 1000:,.1f}",
                f"{max(values) * 1000:,.1f}",
                target,
                "yes" if max(values) < limit else "no",
            )
            print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
