"""Publish rate: one sequential publisher against 64 concurrent ones, per driver and store.

Run from the repository root::

    PYTHONPATH=src python -m benchmarks.bench_publish [--seconds 2] [--publishers 64]
        [--drivers asyncio,trio,threads] [--stores sqlite,sqlite-normal,postgres]
        [--rounds 3] [--markdown FILE]

A web service publishes one event per request, from many requests at once,
each awaiting its own ``publish``. Each row runs a driver on a fresh store
holding 10 active endpoints. Its one worker (``max_in_flight=1``) is held
on its first delivery until the publishers are done, so the dispatcher
claims nothing meanwhile and the rate is the publishing path's own: the
driver, the grouping of concurrent publishes and the store's durable
commits. (``python -m benchmarks`` measures publishing and delivering
together.) Per row:

* ``1 publisher``: one caller publishing one event after another (each
  ``publish`` returns once its event is durable) for ``--seconds``;
* ``N publishers``: ``--publishers`` callers (tasks under asyncio and trio,
  threads for the threaded driver) doing the same at once, for as long.

Rates are events published per second, from the first call until the last
returns; the ratio is concurrent over sequential. Both runs last as long, so
that a pause of the machine costs them alike; each round runs both back to
back (the machine may be shared: a round compares runs under the same load),
and a row reports the medians of its rounds' rates and ratios. The target,
5x, is for durable commits (SQLite ``synchronous=NORMAL`` has none).
PostgreSQL rows need the server at ``$WEBHOOKS_TEST_POSTGRES`` (a fresh
schema each, dropped afterwards).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from statistics import median
from typing import Any

from benchmarks.drivers import DRIVERS, STORES, StoreKind, prepared_store, register_store
from benchmarks.postgres import PG_URL, drop_postgres, open_postgres, postgres_reachable
from benchmarks.workload import DATA, EVENT
from transports.http.transport import HttpResponse
from transports.stores.interface import Store
from transports.testing import LOOPBACK_NETWORKS
from webhook_core import HttpRequest

ENDPOINTS = 10
PUBLISH_STORES = ("sqlite", "sqlite-normal", "postgres")
TARGET = 5.0  # concurrent over sequential, every driver on every durable store (issue 19)


_OPTIONS: dict[str, Any] = {
    "allow_http": True,
    "allowed_networks": LOOPBACK_NETWORKS,
    "max_in_flight": 1,
}


class _Held:
    """An async transport that answers 200 once ``release`` is set."""

    def __init__(self) -> None:
        import anyio

        self.release = anyio.Event()

    async def send(self, request: HttpRequest) -> HttpResponse:
        await self.release.wait()
        return HttpResponse(200, (), b"")

    async def aclose(self) -> None:
        """Nothing to close."""


class _HeldSync:
    """A blocking transport that answers 200 once ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def send(self, request: HttpRequest) -> HttpResponse:
        self.release.wait()
        return HttpResponse(200, (), b"")

    def close(self) -> None:
        """Nothing to close."""


async def _publish_async(store: Store, publishers: int, seconds: float) -> float:
    """Events/s of ``publishers`` tasks each publishing one event per call for ``seconds``."""
    import anyio

    from transports.aio.service import WebhookService

    held = _Held()
    published = 0
    async with WebhookService(store, http=held, **_OPTIONS) as hooks:

        async def publisher(until: float) -> None:
            nonlocal published
            while time.perf_counter() < until:
                await hooks.publish(EVENT, DATA)
                published += 1

        began = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(publishers):
                tg.start_soon(publisher, began + seconds)
        elapsed = time.perf_counter() - began
        held.release.set()  # the rest stay in the store, where the service leaves them
    return published / elapsed


def _publish_threads(store: Store, publishers: int, seconds: float) -> float:
    """Events/s of ``publishers`` threads each publishing one event per call for ``seconds``."""
    from transports.sync.service import ThreadedWebhookService

    held = _HeldSync()
    counts = [0] * publishers
    with ThreadedWebhookService(store, http=held, **_OPTIONS) as hooks:

        def publisher(index: int, until: float) -> None:
            while time.perf_counter() < until:
                hooks.publish(EVENT, DATA)
                counts[index] += 1

        began = time.perf_counter()
        threads = [
            threading.Thread(target=publisher, args=(n, began + seconds)) for n in range(publishers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
        held.release.set()
    return sum(counts) / elapsed


def publish_rate(driver: str, kind: StoreKind, publishers: int, seconds: float) -> float:
    """Events/s of ``driver`` on a fresh store of ``kind`` with ``publishers`` publishing for
    ``seconds``."""
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as name:
        directory = Path(name)
        urls = [f"http://127.0.0.1:9/hooks/{i}" for i in range(ENDPOINTS)]
        try:
            store = prepared_store(kind, directory, urls, time.time())
            try:
                if driver == "threads":
                    return _publish_threads(store, publishers, seconds)
                import anyio

                return anyio.run(_publish_async, store, publishers, seconds, backend=driver)
            finally:
                store.close()
        finally:
            if kind.cleanup is not None:
                kind.cleanup(directory)


def measure(
    drivers: list[str], stores: list[str], seconds: float, publishers: int, rounds: int
) -> list[tuple[str, str, float, float, float]]:
    """(driver, store, sequential rate, concurrent rate, ratio) per row, medians of ``rounds``.

    Each round measures one sequential and one concurrent run back to back, so
    that its ratio compares runs under the same load on a shared machine; the
    row's ratio is the median of the rounds' ratios.
    """
    rows = []
    for driver in drivers:
        for store in stores:
            kind = STORES[store]
            ones, manys, ratios = [], [], []
            for _ in range(rounds):
                ones.append(publish_rate(driver, kind, 1, seconds))
                manys.append(publish_rate(driver, kind, publishers, seconds))
                ratios.append(manys[-1] / ones[-1])
            one, many, ratio = median(ones), median(manys), median(ratios)
            each = " ".join(f"{r:.1f}" for r in ratios)
            print(
                f"{driver:<8} {kind.label:<26} 1: {one:8,.0f}/s  {publishers}: {many:8,.0f}/s"
                f"  {ratio:5.1f}x  (rounds: {each})",
                flush=True,
            )
            rows.append((driver, kind.label, one, many, ratio))
    return rows


def table(rows: list[tuple[str, str, float, float, float]], publishers: int) -> str:
    """The rows as a Markdown table, with the target's verdict per row."""
    lines = [
        f"| driver | store | 1 publisher, events/s | {publishers} publishers, events/s "
        f"| ratio | >= {TARGET:g}x |",
        "|---|---|---:|---:|---:|---|",
    ]
    for driver, store, one, many, ratio in rows:
        verdict = "met" if ratio >= TARGET else "missed"
        if "NORMAL" in store:
            verdict = "no target (no fsync a commit to share)"
        cells = (driver, store, f"{one:,.0f}", f"{many:,.0f}", f"{ratio:.1f}x", verdict)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="publish rate: 1 publisher against many")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each run")
    parser.add_argument("--publishers", type=int, default=64, help="concurrent publishers")
    parser.add_argument("--drivers", default=",".join(DRIVERS))
    parser.add_argument("--stores", default=",".join(PUBLISH_STORES))
    parser.add_argument("--rounds", type=int, default=3, help="median of this many")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    stores = args.stores.split(",")
    if "postgres" in stores:
        if postgres_reachable():
            kind = StoreKind("PostgreSQL", open_postgres, cleanup=drop_postgres)
            register_store("postgres", kind)
        else:
            print(f"PostgreSQL is not reachable at {PG_URL}: left out", file=sys.stderr)
            stores.remove("postgres")
    drivers = args.drivers.split(",")
    unknown = (set(drivers) - set(DRIVERS)) | (set(stores) - set(STORES))
    if unknown or args.seconds <= 0 or args.publishers < 1 or args.rounds < 1:
        parser.error(
            f"unknown driver(s) or store(s) {sorted(unknown)} (drivers {DRIVERS}, stores "
            f"{sorted(STORES)}), or --seconds not positive, or --publishers, --rounds below 1"
        )
    command = "PYTHONPATH=src python -m benchmarks.bench_publish " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    print(f"command: {command.strip()}")
    rows = measure(drivers, stores, args.seconds, args.publishers, args.rounds)
    text = table(rows, args.publishers)
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(f"command: `{command.strip()}`\n\n{text}\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
