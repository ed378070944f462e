"""SQLite commits concurrent publishes together, and keeps each caller's outcome its own.

To make a group for certain, another connection holds the file's write lock
while the publishing threads queue up behind the store's first writer; the
tests look at the store's queue (white box) to know when all have arrived,
then let go of the lock, and count the store's commits through its trace.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from transports.stores.interface import DuplicateEvent
from transports.stores.sqlite import SQLiteStore
from webhook_core import Event

T0 = 1_800_000_000.0


def event(event_id: str) -> Event:
    return Event(event_id, "message.sent", T0, b'{"event":"message.sent"}')


@contextmanager
def commits_counted(store: SQLiteStore) -> Iterator[list[str]]:
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    try:
        yield statements
    finally:
        store._db.set_trace_callback(None)


def publish_as_one_group(store: SQLiteStore, batches: list[list[str]]) -> list[Exception | None]:
    """Thread ``n`` stores the events ``batches[n]`` in one ``add_events``; all of them
    queue before the first can begin its transaction. The error each thread met."""
    errors: list[Exception | None] = [None] * len(batches)

    def worker(n: int) -> None:
        try:
            store.add_events([(event(i), []) for i in batches[n]])
        except Exception as exc:
            errors[n] = exc

    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(len(batches))]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(store._queue) < len(batches):
            assert time.monotonic() < deadline, "the publishing threads never queued"
            time.sleep(0.001)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    for t in threads:
        t.join(timeout=60)
    return errors


def stored_events(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT id FROM events")}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "group.db")
    yield opened
    opened.close()


def test_queued_publishes_commit_in_one_transaction(store: SQLiteStore) -> None:
    batches = [[f"evt_{n}_a", f"evt_{n}_b"] for n in range(8)]
    with commits_counted(store) as statements:
        assert publish_as_one_group(store, batches) == [None] * 8
    assert statements.count("COMMIT") == 1
    assert stored_events(store.path) == {i for batch in batches for i in batch}


def test_a_duplicate_in_a_group_fails_only_its_own_batch(store: SQLiteStore) -> None:
    store.add_events([(event("evt_dup"), [])])
    batches = [[f"evt_{n}"] for n in range(8)]
    batches[5] = ["evt_5", "evt_dup"]
    with commits_counted(store) as statements:
        errors = publish_as_one_group(store, batches)
    assert statements.count("COMMIT") == 1
    assert isinstance(errors[5], DuplicateEvent)
    assert errors[:5] + errors[6:] == [None] * 7
    assert stored_events(store.path) == {"evt_dup"} | {f"evt_{n}" for n in range(8) if n != 5}


def test_a_failed_commit_fails_every_publish_of_its_group(store: SQLiteStore) -> None:
    # A deferred foreign key is checked at COMMIT: the event "evt_poison" makes it fail.
    with sqlite3.connect(store.path) as db:
        db.executescript(
            """
            CREATE TABLE nowhere (id TEXT PRIMARY KEY);
            CREATE TABLE poison (id TEXT REFERENCES nowhere (id) DEFERRABLE INITIALLY DEFERRED);
            CREATE TRIGGER poison_commit AFTER INSERT ON events WHEN NEW.id = 'evt_poison'
            BEGIN INSERT INTO poison VALUES (NEW.id); END;
            """
        )
    batches = [[f"evt_{n}"] for n in range(8)]
    batches[2] = ["evt_poison"]
    errors = publish_as_one_group(store, batches)
    assert all(isinstance(e, sqlite3.IntegrityError) for e in errors), errors
    assert len({id(e) for e in errors}) == 8
    assert stored_events(store.path) == set()
    store.add_events([(event("evt_after"), [])])
    assert stored_events(store.path) == {"evt_after"}
