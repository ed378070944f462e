"""The least SQLite work a durable delivery needs, next to what our store does.

Run from the repository root::

    PYTHONPATH=src python -m benchmarks.sqlite_floor [--deliveries 20000] [--rounds 3]

Floor: plain ``sqlite3`` in WAL mode with ``synchronous=NORMAL``, one table
with one partial index, batches of 50 in a transaction each: insert a row
per delivery (publish), select and lease a batch (claim), write its result
(complete). No validation, fan-out, records or health. Ours: the SQLite
store doing the same through ``operations.publish_many`` (16 events of 10
deliveries a call), ``claim``, ``complete`` and ``record_outcomes`` (what
the drivers' result writer calls), batches of 50.
Both print CPU time per delivery (``time.process_time``, best of the
rounds); the ratio is ours against the floor measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from benchmarks.receiver import mark_active
from transports.driving import operations
from transports.driving.config import DEFAULT_HEALTH
from transports.stores.sqlite import SQLiteStore
from webhook_core import (
    AttemptResult,
    Finish,
    RetryPolicy,
    begin_attempt,
    delivery_machine,
    platform_catalog,
)

BATCH = 50
ENDPOINTS = 10
DATA = {"message_id": "msg_1", "channel": "sms", "to": "+919876543210", "status": "sent"}
ATTEMPTS = json.dumps([{"number": 1, "started_at": 1.0, "ended_at": 2.0, "outcome": "success"}])


def floor(directory: Path, deliveries: int) -> float:
    """CPU seconds per delivery for the minimal insert, lease and result."""
    db = sqlite3.connect(directory / "floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE deliveries (id TEXT PRIMARY KEY, endpoint_id TEXT, created_at REAL,"
        " state TEXT, due REAL, attempts TEXT, locked_by TEXT, lease REAL)"
    )
    db.execute("CREATE INDEX due ON deliveries (due) WHERE state = 'pending'")
    start = time.process_time()
    for first in range(0, deliveries, BATCH):
        now = time.time()
        rows = [
            (f"dlv_{n:026d}", f"ep_{n % ENDPOINTS}", now, now) for n in range(first, first + BATCH)
        ]
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO deliveries VALUES (?, ?, ?, 'pending', ?, '[]', NULL, NULL)", rows
        )
        db.execute("COMMIT")
    while True:
        db.execute("BEGIN IMMEDIATE")
        claimed = db.execute(
            "SELECT * FROM deliveries WHERE state = 'pending' AND due <= ? ORDER BY due LIMIT ?",
            (time.time(), BATCH),
        ).fetchall()
        db.executemany(
            "UPDATE deliveries SET state = 'in_flight', locked_by = 'w', lease = ? WHERE id = ?",
            [(time.time() + 60, r[0]) for r in claimed],
        )
        db.execute("COMMIT")
        if not claimed:
            break
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "UPDATE deliveries SET state = 'delivered', attempts = ?, locked_by = NULL,"
            " lease = NULL WHERE id = ? AND locked_by = 'w'",
            [(ATTEMPTS, r[0]) for r in claimed],
        )
        db.execute("COMMIT")
    db.close()
    return (time.process_time() - start) / deliveries


def ours(directory: Path, deliveries: int) -> float:
    """CPU seconds per delivery for the same life through the SQLite store."""
    store = SQLiteStore(directory / "ours.db", synchronous="NORMAL")
    for n in range(ENDPOINTS):
        endpoint = operations.add_endpoint(
            store, f"http://127.0.0.1:9/{n}", 0.0, allow_http=True, allow_duplicate=True
        )
        mark_active(store, endpoint, 0.0)
    policy = RetryPolicy(schedule=(), timeout=5)
    catalog = platform_catalog()
    start = time.process_time()
    for _ in range(deliveries // (16 * ENDPOINTS)):
        operations.publish_many(store, catalog, [("message.sent", DATA, None)] * 16, time.time())
    while claimed := store.claim(time.time(), BATCH, "w", time.time() + 60):
        finished = []
        for claim in claimed:
            now = time.time()
            delivery, _ = begin_attempt(
                claim.delivery,
                claim.event,
                claim.endpoint,
                now,
                policy,
                "bench",
                None,
                claim.lease_until,
            )
            result = AttemptResult(now, now + 0.001, 200)
            finished.append(delivery_machine.apply(delivery, Finish(result), policy)[0])
        store.complete(finished, "w")
        operations.record_outcomes(store, finished, DEFAULT_HEALTH)
    store.close()
    return (time.process_time() - start) / deliveries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    best_floor = best_ours = float("inf")
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as name:
            best_floor = min(best_floor, floor(Path(name), args.deliveries))
            best_ours = min(best_ours, ours(Path(name), args.deliveries))
    print(f"floor: {best_floor * 1e6:6.1f} us of CPU a delivery   1.00x")
    print(f"ours:  {best_ours * 1e6:6.1f} us of CPU a delivery   {best_ours / best_floor:.2f}x")
    print("(ours also validates, fans out, signs each request, builds records, tracks health)")


if __name__ == "__main__":
    main()
