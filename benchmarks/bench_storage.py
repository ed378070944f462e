"""Storage benchmarks: our stores against naive per-row sqlite3 and psycopg code.

Run from the repository root::

    PYTHONPATH=src python -m benchmarks.bench_storage [--events 1000] [--pending 10000]
        [--e2e 2000] [--million] [--only publish,claim,e2e]

Rows, each measured in this run next to its baseline:

* ``publish``: deliveries created per second with fan-out 10 (one event to 10
  active endpoints). Ours: ``operations.publish`` per event (validation,
  canonical JSON, fan-out, one transaction) and ``publish_many`` in batches of
  100 events. Naive: the same rows inserted with one ``INSERT`` per row and a
  commit per event, on the same schema and durability settings (SQLite WAL
  with ``synchronous=FULL``; PostgreSQL defaults).
* ``claim``: claim-and-complete throughput over ``--pending`` due deliveries:
  ours claims 64 at a time and writes 64 results per call; naive takes one row
  at a time (``SELECT ... LIMIT 1`` with ``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL, then ``UPDATE`` to in-flight, commit, ``UPDATE`` to delivered,
  commit).
* ``e2e``: the asyncio driver delivering ``--e2e`` deliveries (fan-out 10),
  with the in-memory store, SQLite and PostgreSQL, through a transport that
  answers at once (the store's cost laid bare) and through httpx to a local
  nginx. Ratio: against the in-memory store with the same transport.
* ``--million``: 1,000,000 pending deliveries in a SQLite file; a dispatcher
  process (asyncio driver, answer-at-once transport) runs over them for
  ``--million-seconds``; its peak RSS is read from ``getrusage``.

PostgreSQL rows need the server at ``$WEBHOOKS_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``); each row uses a fresh schema,
dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from benchmarks.diagnostics import NullTransport
from benchmarks.postgres import PG_URL, drop_postgres, open_postgres, postgres_reachable
from benchmarks.receiver import Receiver, mark_active
from transports.aio.service import WebhookService
from transports.driving import operations
from transports.stores.interface import DeliveryFilter, Store
from transports.stores.memory import MemoryStore
from transports.stores.sqlite import SQLiteStore
from transports.testing import LOOPBACK_NETWORKS
from webhook_core import DeliveryState, platform_catalog

FAN_OUT = 10
CATALOG = platform_catalog()
DATA = {"message_id": "msg_1", "channel": "sms", "to": "+919876543210", "status": "sent"}
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


# -- stores -------------------------------------------------------------------


@contextmanager
def opened(kind: str) -> Iterator[Store]:
    """A fresh store of ``kind``, removed afterwards."""
    if kind == "memory":
        yield MemoryStore()
        return
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        store = (
            SQLiteStore(directory / "bench.db") if kind == "sqlite" else open_postgres(directory)
        )
        try:
            yield store
        finally:
            store.close()
            if kind != "sqlite":
                drop_postgres(directory)


def add_endpoints(store: Store, count: int = FAN_OUT, url: str = "http://127.0.0.1:9/") -> None:
    for n in range(count):
        endpoint = operations.add_endpoint(
            store, f"{url}{n}", time.time(), allow_http=True, allow_duplicate=True
        )
        mark_active(store, endpoint, time.time())


def naive_connection(store: Store) -> tuple[Any, str, str]:
    """A plain connection to the store's database, its placeholder and table prefix."""
    if isinstance(store, SQLiteStore):
        db = sqlite3.connect(store.path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db, "?", ""
    import psycopg

    return psycopg.connect(PG_URL), "%s", f"{store.schema}."  # type: ignore[attr-defined]


def commit(db: Any) -> None:
    if isinstance(db, sqlite3.Connection):
        db.execute("COMMIT")
    else:
        db.commit()


def begin(db: Any, immediate: bool = False) -> None:
    if isinstance(db, sqlite3.Connection):
        db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")


# -- publish ------------------------------------------------------------------


def publish_ours(kind: str, events: int, batch: int) -> float:
    with opened(kind) as store:
        add_endpoints(store)
        start = time.perf_counter()
        if batch == 1:
            for _ in range(events):
                operations.publish(store, CATALOG, "message.sent", DATA, time.time())
        else:
            for _ in range(0, events, batch):
                operations.publish_many(
                    store, CATALOG, [("message.sent", DATA, None)] * batch, time.time()
                )
        elapsed = time.perf_counter() - start
        assert store.count_deliveries() == events * FAN_OUT
    return events * FAN_OUT / elapsed


def publish_naive(kind: str, events: int) -> float:
    with opened(kind) as store:
        db, mark, prefix = naive_connection(store)
        body = json.dumps({"event": "message.sent", "data": DATA}).encode()
        start = time.perf_counter()
        for i in range(events):
            now = time.time()
            begin(db)
            db.execute(
                f"INSERT INTO {prefix}events (id, name, created_at, body) "
                f"VALUES ({mark}, {mark}, {mark}, {mark})",
                (f"evt_{i}", "message.sent", now, body),
            )
            for n in range(FAN_OUT):
                db.execute(
                    f"INSERT INTO {prefix}deliveries (id, event_id, endpoint_id, created_at, "
                    f"state, next_attempt_at) VALUES ({mark}, {mark}, {mark}, {mark}, "
                    f"'pending', {mark})",
                    (f"dlv_{i}_{n}", f"evt_{i}", f"ep_{n}", now, now),
                )
            commit(db)
        elapsed = time.perf_counter() - start
        db.close()
    return events * FAN_OUT / elapsed


# -- claim and complete ----------------------------------------------------------


def filled(store: Store, pending: int) -> None:
    add_endpoints(store)
    for _ in range(0, pending // FAN_OUT, 100):
        operations.publish_many(store, CATALOG, [("message.sent", DATA, None)] * 100, 0.0)


def claim_ours(kind: str, pending: int) -> float:
    import attrs

    with opened(kind) as store:
        filled(store, pending)
        start = time.perf_counter()
        done = 0
        while claimed := store.claim(1.0, 64, "bench", 100.0):
            finished = [
                attrs.evolve(c.delivery, state=DeliveryState.DELIVERED, next_attempt_at=None)
                for c in claimed
            ]
            done += store.complete(finished, "bench")
        elapsed = time.perf_counter() - start
        assert done == store.count_deliveries() >= pending
    return done / elapsed


def claim_naive(kind: str, pending: int) -> float:
    with opened(kind) as store:
        filled(store, pending)
        db, mark, prefix = naive_connection(store)
        lock = "" if isinstance(db, sqlite3.Connection) else " FOR UPDATE SKIP LOCKED"
        start = time.perf_counter()
        done = 0
        while True:
            begin(db, immediate=True)
            row = db.execute(
                f"SELECT id FROM {prefix}deliveries WHERE state = 'pending' "
                f"AND next_attempt_at <= {mark} ORDER BY next_attempt_at LIMIT 1{lock}",
                (1.0,),
            ).fetchone()
            if row is None:
                commit(db)
                break
            db.execute(
                f"UPDATE {prefix}deliveries SET state = 'in_flight', locked_by = 'bench' "
                f"WHERE id = {mark}",
                (row[0],),
            )
            commit(db)
            begin(db, immediate=True)
            db.execute(
                f"UPDATE {prefix}deliveries SET state = 'delivered', locked_by = NULL "
                f"WHERE id = {mark} AND locked_by = 'bench'",
                (row[0],),
            )
            commit(db)
            done += 1
        elapsed = time.perf_counter() - start
        db.close()
    return done / elapsed


# -- end to end -------------------------------------------------------------------


async def e2e(kind: str, deliveries: int, base_url: str | None) -> float:
    http = NullTransport() if base_url is None else None
    with opened(kind) as store:
        add_endpoints(store, url=(base_url or "http://127.0.0.1:9/") + "hook/")
        async with WebhookService(
            store,
            http=http,
            allow_http=True,
            allowed_networks=LOOPBACK_NETWORKS,
            max_in_flight=64,
            poll_interval=0.05,
        ) as hooks:
            await hooks.drain()
            start = time.perf_counter()
            for _ in range(0, deliveries // FAN_OUT, 10):
                await hooks.publish_many([("message.sent", DATA, None)] * 10)
            await hooks.drain()
            elapsed = time.perf_counter() - start
            delivered = store.count_deliveries(DeliveryFilter(state=DeliveryState.DELIVERED))
            assert delivered == deliveries, (delivered, deliveries)
    return deliveries / elapsed


# -- a million pending -------------------------------------------------------------


def million_child(path: str, seconds: float) -> None:
    """Run the dispatcher over the file for ``seconds``; print JSON with RSS figures."""
    store = SQLiteStore(path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    async def run() -> int:
        async with WebhookService(
            store, http=NullTransport(), allow_http=True, max_in_flight=64
        ) as hooks:
            await anyio.sleep(seconds)
            return await anyio.to_thread.run_sync(
                hooks.store.count_deliveries, DeliveryFilter(state=DeliveryState.DELIVERED)
            )

    delivered = anyio.run(run)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rss_before_kib": before, "peak_kib": peak, "delivered": delivered}))


def million(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "million.db")
        store = SQLiteStore(path, synchronous="NORMAL")
        add_endpoints(store)
        start = time.perf_counter()
        for _ in range(0, 100_000, 1000):
            operations.publish_many(store, CATALOG, [("message.sent", DATA, None)] * 1000, 0.0)
        filled_in = time.perf_counter() - start
        assert store.count_deliveries() == 1_000_000
        store.close()
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_storage",
                "--million-child",
                path,
                "--million-seconds",
                str(seconds),
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=seconds + 300,
        )
        if out.returncode:
            raise RuntimeError(f"the dispatcher process failed:\n{out.stderr}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        result["fill_seconds"] = filled_in
        result["db_mib"] = os.path.getsize(path) / 2**20
        return result


# -- the table -------------------------------------------------------------------


def best(fn: Callable[[], float], repeat: int) -> float:
    return max(fn() for _ in range(repeat))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--e2e", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", default="publish,claim,e2e")
    parser.add_argument("--million", action="store_true")
    parser.add_argument("--million-seconds", type=float, default=30.0)
    parser.add_argument("--million-child")
    args = parser.parse_args(argv)
    if args.million_child:
        million_child(args.million_child, args.million_seconds)
        return 0
    kinds = ["memory", "sqlite"] + (["postgres"] if postgres_reachable() else [])
    if "postgres" not in kinds:
        print(f"PostgreSQL at {PG_URL} unreachable: its rows are skipped")
    only = set(args.only.split(","))
    rows: list[tuple[str, str, float, float | None]] = []

    def row(section: str, name: str, rate: float, base: float | None) -> None:
        rows.append((section, name, rate, base))
        ratio = f"{rate / base:6.2f}x" if base else "   --  "
        print(f"{section:8} {name:44} {rate:10,.0f}/s {ratio}", flush=True)

    if "publish" in only:
        for kind in kinds:
            naive = (
                None
                if kind == "memory"
                else best(partial(publish_naive, kind, args.events), args.repeat)
            )
            if naive is not None:
                row("publish", f"{kind}: naive, one INSERT per row", naive, naive)
            row(
                "publish",
                f"{kind}: ours, publish per event",
                best(partial(publish_ours, kind, args.events, 1), args.repeat),
                naive,
            )
            row(
                "publish",
                f"{kind}: ours, publish_many x100",
                best(partial(publish_ours, kind, args.events, 100), args.repeat),
                naive,
            )
    if "claim" in only:
        for kind in kinds:
            naive = (
                None
                if kind == "memory"
                else best(partial(claim_naive, kind, args.pending), args.repeat)
            )
            if naive is not None:
                row("claim", f"{kind}: naive, one row per transaction", naive, naive)
            row(
                "claim",
                f"{kind}: ours, batches of 64",
                best(partial(claim_ours, kind, args.pending), args.repeat),
                naive,
            )
    if "e2e" in only:
        with Receiver() as receiver:
            for label, base_url in (("answer-at-once", None), (receiver.kind, receiver.url("/"))):
                reference = None
                for kind in kinds:
                    rate = best(partial(anyio.run, e2e, kind, args.e2e, base_url), args.repeat)
                    reference = reference or rate
                    row("e2e", f"asyncio, {kind}, {label}", rate, reference)
    if args.million:
        result = million(args.million_seconds)
        print(
            f"million  1,000,000 pending in SQLite (filled in {result['fill_seconds']:.0f} s, "
            f"{result['db_mib']:.0f} MiB): dispatcher peak RSS "
            f"{result['peak_kib'] / 1024:.0f} MiB (at start {result['rss_before_kib'] / 1024:.0f}"
            f" MiB), {result['delivered']:,} delivered in {args.million_seconds:g} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
