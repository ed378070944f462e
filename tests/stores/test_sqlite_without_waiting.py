"""The SQLite store's calls made without waiting (``SQLiteStore.without_waiting``).

The async drivers make claims and results this way on the event loop's
thread. Inside, a call either does SQLite's own work and nothing more, or
raises ``WouldWait`` having written nothing it cannot write again: these
tests hold a real second connection's write lock, a real durable write and
the write-ahead log's checkpoints against it.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from transports.driving import operations
from transports.driving.config import DEFAULT_HEALTH
from transports.stores import sqlite as sqlite_module
from transports.stores.interface import Claimed, DeliveryFilter, WouldWait
from transports.stores.sqlite import SQLiteStore
from webhook_core import (
    AttemptResult,
    Delivery,
    DeliveryState,
    EndpointState,
    Finish,
    RetryPolicy,
    Start,
    delivery_machine,
    platform_catalog,
)

NOW = 1_000_000.0
MESSAGE = {"message_id": "msg_1", "channel": "sms", "to": "+919876543210", "status": "sent"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path / "hooks.db") as store:
        for n in range(2):
            endpoint = operations.add_endpoint(
                store, f"https://receiver{n}.example/hook", NOW, allow_http=True
            )
            store.save_endpoint(
                attrs.evolve(endpoint, state=EndpointState.ACTIVE, verification_token=None)
            )
        yield store


def publish(store: SQLiteStore, events: int) -> None:
    for _ in range(events):
        operations.publish(store, platform_catalog(), "message.sent", MESSAGE, NOW)


def delivered(claimed: list[Claimed]) -> list[Delivery]:
    """The records of a 200 answer to each claim, as a worker would finish them."""
    policy = RetryPolicy()
    done = []
    for c in claimed:
        started, _ = delivery_machine.apply(c.delivery, Start(NOW + 1), policy)
        result = AttemptResult(NOW + 1, NOW + 1.01, status=200)
        done.append(delivery_machine.apply(started, Finish(result), policy)[0])
    return done


def count(store: SQLiteStore, state: DeliveryState) -> int:
    return store.count_deliveries(DeliveryFilter(state=state))


@pytest.fixture
def other_writer(store: SQLiteStore) -> Iterator[sqlite3.Connection]:
    """Another connection to the file, holding its write lock."""
    other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    yield other
    if other.in_transaction:
        other.execute("ROLLBACK")
    other.close()


def test_claims_results_and_reads_work_as_usual(store: SQLiteStore) -> None:
    publish(store, 3)
    with store.without_waiting():
        claimed = store.claim(NOW + 1, 10, "worker", NOW + 61)
        operations.write_results(store, delivered(claimed), "worker", DEFAULT_HEALTH)
        assert store.next_due() is None
    assert len(claimed) == 6
    assert count(store, DeliveryState.DELIVERED) == 6


def test_a_durable_write_refuses_and_writes_nothing(store: SQLiteStore) -> None:
    (endpoint, _) = store.list_endpoints()
    with store.without_waiting():
        with pytest.raises(WouldWait, match="durable"):
            store.save_endpoint(attrs.evolve(endpoint, description="changed"))
        with pytest.raises(WouldWait, match="durable"):
            publish(store, 1)
    assert store.get_endpoint(endpoint.id) == endpoint
    assert store.count_deliveries() == 0


def test_a_write_refuses_while_another_connection_writes(
    store: SQLiteStore, other_writer: sqlite3.Connection
) -> None:
    other_writer.execute("ROLLBACK")
    publish(store, 1)
    other_writer.execute("BEGIN IMMEDIATE")
    with store.without_waiting(), pytest.raises(WouldWait, match="another connection"):
        store.claim(NOW + 1, 10, "worker", NOW + 61)
    assert count(store, DeliveryState.PENDING) == 2, "nothing was claimed"
    other_writer.execute("ROLLBACK")
    with store.without_waiting():
        assert len(store.claim(NOW + 1, 10, "worker", NOW + 61)) == 2


def test_outside_it_a_write_still_waits_for_another_connection(
    store: SQLiteStore, other_writer: sqlite3.Connection
) -> None:
    other_writer.execute("ROLLBACK")
    publish(store, 1)
    with store.without_waiting():
        pass
    other_writer.execute("BEGIN IMMEDIATE")
    released = threading.Timer(0.3, lambda: other_writer.execute("ROLLBACK"))
    released.start()
    try:
        assert len(store.claim(NOW + 1, 10, "worker", NOW + 61)) == 2
    finally:
        released.join()


def test_it_refuses_at_once_while_another_thread_writes(store: SQLiteStore) -> None:
    holding, done = threading.Event(), threading.Event()

    def writer() -> None:
        with store._lock:  # what a durable commit in another thread holds for its fsync
            holding.set()
            done.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        holding.wait(10)
        with pytest.raises(WouldWait, match="another thread"), store.without_waiting():
            pytest.fail("entered while another thread writes")
    finally:
        done.set()
        thread.join()
    with store.without_waiting():
        assert store.next_due() is None


def main_file(store: SQLiteStore) -> str:
    return hashlib.sha256(store.path.read_bytes()).hexdigest()


def test_checkpoints_are_left_to_writes_made_in_a_thread(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for writer in (store._db, store._lease_db):
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    publish(store, 10)
    monkeypatch.setattr(sqlite_module, "_CHECKPOINT_ROWS", store._written + 5)
    before = main_file(store)
    with store.without_waiting():
        claimed = store.claim(NOW + 1, 10, "worker", NOW + 61)
    assert main_file(store) == before, "the log was checkpointed too soon"
    with pytest.raises(WouldWait, match="checkpoint"), store.without_waiting():
        pytest.fail("entered with a checkpoint due")
    store.complete(delivered(claimed), "worker")
    assert main_file(store) != before, "the write made in a thread did not checkpoint"
    with store.without_waiting():
        store.complete(delivered(store.claim(NOW + 1, 10, "worker", NOW + 61)), "worker")
    assert count(store, DeliveryState.DELIVERED) == 20


def test_results_written_before_a_refusal_are_not_written_twice(store: SQLiteStore) -> None:
    """``write_results`` writes the results, then must save an endpoint's health (a
    durable write): it refuses there, and made again in a thread it changes nothing
    the first call wrote."""
    publish(store, 1)
    claimed = store.claim(NOW + 1, 10, "worker", NOW + 61)
    policy = RetryPolicy(schedule=())
    failed = []
    for c in claimed:
        started, _ = delivery_machine.apply(c.delivery, Start(NOW + 1), policy)
        result = AttemptResult(NOW + 1, NOW + 1.01, status=500)
        failed.append(delivery_machine.apply(started, Finish(result), policy)[0])
    with store.without_waiting(), pytest.raises(WouldWait, match="durable"):
        operations.write_results(store, failed, "worker", DEFAULT_HEALTH)
    assert count(store, DeliveryState.FAILED) == 2
    written = store.list_deliveries()
    operations.write_results(store, failed, "worker", DEFAULT_HEALTH)
    assert store.list_deliveries() == written
    assert [e.failures for e in store.list_endpoints()] == [1, 1]


def test_a_read_under_way_in_another_thread_does_not_hold_it_up(store: SQLiteStore) -> None:
    publish(store, 1)
    answers: list[float | None] = []

    def read_without_waiting() -> None:
        with store.without_waiting():
            answers.append(store.next_due())

    with store._read_lock:  # held by another thread's listing, say
        reader = threading.Thread(target=read_without_waiting, daemon=True)
        reader.start()
        reader.join(5)
        assert not reader.is_alive(), "the read waited for the reader connection's lock"
    assert answers == [NOW]


def test_an_error_inside_leaves_the_store_as_it_was(store: SQLiteStore) -> None:
    with pytest.raises(KeyboardInterrupt), store.without_waiting():
        raise KeyboardInterrupt
    taken = threading.Thread(target=lambda: store.save_endpoint(store.list_endpoints()[0]))
    taken.start()
    taken.join(5)
    assert not taken.is_alive(), "the write lock was not released"
    assert store._lease_db.execute("PRAGMA busy_timeout").fetchone() == (30_000,)
