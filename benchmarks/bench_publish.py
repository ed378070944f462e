"""Publish rate: one sequential publisher against 64 concurrent ones, per driver and store.

Run from the repository root::

    PYTHONPATH=src python -m benchmarks.bench_publish [--events 2000] [--publishers 64]
        [--drivers asyncio,trio,threads] [--stores sqlite,sqlite-normal,postgres]
        [--rounds 1] [--markdown FILE]

A web service publishes one event per request, from many requests at once,
each awaiting its own ``publish``. Each row runs a driver on a fresh store
holding 10 active endpoints. Its one worker (``max_in_flight=1``) is held
on its first delivery until the publishers are done, so the dispatcher
claims nothing meanwhile and the rate is the publishing path's own: the
driver, the grouping of concurrent publishes and the store's durable
commits. (``python -m benchmarks`` measures publishing and delivering
together.) Per row:

* ``1 publisher``: one caller publishing ``--events`` events, one ``publish``
  after another (each returns once its event is durable);
* ``N publishers``: ``--publishers`` callers (tasks under asyncio and trio,
  threads for the threaded driver) publishing ``--events`` events between
  them, one event per call.

Rates are events published per second, from the first call until the last
returns; the ratio is concurrent over sequential, in the same row (the target,
5x, is for durable commits: SQLite ``synchronous=NORMAL`` has none). PostgreSQL
rows need the server at ``$WEBHOOKS_TEST_POSTGRES`` (a fresh schema each,
dropped afterwards).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
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


def split(events: int, callers: int) -> list[int]:
    """``events`` shared as evenly as possible between at most ``callers`` callers."""
    callers = max(1, min(callers, events))
    return [events // callers + (n < events % callers) for n in range(callers)]


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


async def _publish_async(store: Store, shares: list[int]) -> float:
    """Events/s of ``len(shares)`` tasks publishing their share, one event per call."""
    import anyio

    from transports.aio.service import WebhookService

    held = _Held()
    async with WebhookService(store, http=held, **_OPTIONS) as hooks:

        async def publisher(count: int) -> None:
            for _ in range(count):
                await hooks.publish(EVENT, DATA)

        began = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for count in shares:
                tg.start_soon(publisher, count)
        elapsed = time.perf_counter() - began
        held.release.set()  # the rest stay in the store, where the service leaves them
    return sum(shares) / elapsed


def _publish_threads(store: Store, shares: list[int]) -> float:
    """Events/s of ``len(shares)`` threads publishing their share, one event per call."""
    from transports.sync.service import ThreadedWebhookService

    held = _HeldSync()
    with ThreadedWebhookService(store, http=held, **_OPTIONS) as hooks:

        def publisher(count: int) -> None:
            for _ in range(count):
                hooks.publish(EVENT, DATA)

        threads = [threading.Thread(target=publisher, args=(n,)) for n in shares]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
        held.release.set()
    return sum(shares) / elapsed


def publish_rate(driver: str, kind: StoreKind, shares: list[int]) -> float:
    """Events/s of ``driver`` on a fresh store of ``kind`` with ``shares`` publishers."""
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as name:
        directory = Path(name)
        urls = [f"http://127.0.0.1:9/hooks/{i}" for i in range(ENDPOINTS)]
        try:
            store = prepared_store(kind, directory, urls, time.time())
            try:
                if driver == "threads":
                    return _publish_threads(store, shares)
                import anyio

                return anyio.run(_publish_async, store, shares, backend=driver)
            finally:
                store.close()
        finally:
            if kind.cleanup is not None:
                kind.cleanup(directory)


def measure(
    drivers: list[str], stores: list[str], events: int, publishers: int, rounds: int
) -> list[tuple[str, str, float, float]]:
    """(driver, store, sequential rate, concurrent rate) per row, best of ``rounds``."""
    rows = []
    for driver in drivers:
        for store in stores:
            kind = STORES[store]
            one = many = 0.0
            for _ in range(rounds):
                one = max(one, publish_rate(driver, kind, [events]))
                many = max(many, publish_rate(driver, kind, split(events, publishers)))
            print(
                f"{driver:<8} {kind.label:<26} 1: {one:8,.0f}/s  {publishers}: {many:8,.0f}/s"
                f"  {many / one:5.1f}x",
                flush=True,
            )
            rows.append((driver, kind.label, one, many))
    return rows


def table(rows: list[tuple[str, str, float, float]], publishers: int) -> str:
    """The rows as a Markdown table, with the target's verdict per row."""
    lines = [
        f"| driver | store | 1 publisher, events/s | {publishers} publishers, events/s "
        f"| ratio | >= {TARGET:g}x |",
        "|---|---|---:|---:|---:|---|",
    ]
    for driver, store, one, many in rows:
        ratio = many / one
        verdict = "met" if ratio >= TARGET else "missed"
        if "NORMAL" in store:
            verdict = "no target (no fsync a commit to share)"
        cells = (driver, store, f"{one:,.0f}", f"{many:,.0f}", f"{ratio:.1f}x", verdict)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="publish rate: 1 publisher against many")
    parser.add_argument("--events", type=int, default=2000, help="events per measurement")
    parser.add_argument("--publishers", type=int, default=64, help="concurrent publishers")
    parser.add_argument("--drivers", default=",".join(DRIVERS))
    parser.add_argument("--stores", default=",".join(PUBLISH_STORES))
    parser.add_argument("--rounds", type=int, default=1, help="best of this many")
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
    if unknown or args.events < 1 or args.publishers < 1 or args.rounds < 1:
        parser.error(
            f"unknown driver(s) or store(s) {sorted(unknown)} (drivers {DRIVERS}, stores "
            f"{sorted(STORES)}), or --events, --publishers, --rounds below 1"
        )
    command = "PYTHONPATH=src python -m benchmarks.bench_publish " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    print(f"command: {command.strip()}")
    rows = measure(drivers, stores, args.events, args.publishers, args.rounds)
    text = table(rows, args.publishers)
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(f"command: `{command.strip()}`\n\n{text}\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
