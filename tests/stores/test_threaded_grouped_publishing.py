"""Threads publishing at once through the threaded driver share store writes; each keeps
its own outcome.

To make a group for certain, another connection holds the SQLite file's write
lock: the first thread's write waits for it while the other threads queue in
the driver's publisher (white box: its queue); the tests let go of the lock
once all have queued and count the commits through the store's trace.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from transports.driving import operations
from transports.stores.interface import DuplicateEvent, EventBatch
from transports.stores.sqlite import SQLiteStore
from transports.sync import publishing
from transports.sync.service import ThreadedWebhookService
from transports.testing import LOOPBACK_NETWORKS, LoopbackReceiver
from webhook_core import Endpoint, EndpointSecret, EndpointState, platform_catalog

T0 = 1_800_000_000.0


def message(i: int) -> dict[str, Any]:
    return {"message_id": f"msg_{i}", "channel": "sms", "to": "+919876543210", "status": "sent"}


def add_endpoints(store: Any, base: str, count: int = 2) -> None:
    for n in range(count):
        store.save_endpoint(
            Endpoint(
                id=f"ep_{n}",
                url=f"{base}/{n}",
                secrets=(EndpointSecret("whsec_" + "A" * 32, T0),),
                created_at=T0 + n,
                state=EndpointState.ACTIVE,
            )
        )


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def publish_grouped(
    hooks: ThreadedWebhookService, ids: list[str], release: Callable[[], None]
) -> dict[str, Any]:
    """Publish ``ids[0]``, whose write waits until ``release``, then the rest while it
    waits; call ``release`` once they have queued; each thread's outcome."""
    outcomes: dict[str, Any] = {}

    def publish(event_id: str) -> None:
        try:
            outcomes[event_id] = hooks.publish("message.sent", message(0), event_id=event_id)
        except Exception as exc:
            outcomes[event_id] = exc

    threads = [threading.Thread(target=publish, args=(i,)) for i in ids]
    try:
        threads[0].start()
        wait_for(lambda: hooks._publisher._writing, "the first write never began")
        for thread in threads[1:]:
            thread.start()
        wait_for(lambda: len(hooks._publisher._queue) == len(ids) - 1, "threads never queued")
    finally:
        release()
        for thread in threads:
            thread.join(30)
    return outcomes


def file_locked(path: Path) -> Callable[[], None]:
    """Hold ``path``'s write lock from another connection; the function that lets go."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    def release() -> None:
        holder.execute("COMMIT")
        holder.close()

    return release


@pytest.fixture
def rx() -> Any:
    with LoopbackReceiver() as receiver:
        yield receiver


def running(store: Any) -> ThreadedWebhookService:
    return ThreadedWebhookService(store, allow_http=True, allowed_networks=LOOPBACK_NETWORKS)


def test_threads_that_publish_during_a_write_share_the_next_commit(
    tmp_path: Path, rx: LoopbackReceiver
) -> None:
    store = SQLiteStore(tmp_path / "g.db")
    add_endpoints(store, rx.url("/hook"))
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    ids = [f"evt_{i}" for i in range(9)]
    with running(store) as hooks:
        outcomes = publish_grouped(hooks, ids, file_locked(store.path))
        hooks.drain()
    assert [outcomes[i].event.id for i in ids] == ids
    assert statements.count("COMMIT") == 2, statements
    assert store.count_deliveries() == 18


def test_a_duplicate_in_a_shared_write_fails_only_its_thread(
    tmp_path: Path, rx: LoopbackReceiver
) -> None:
    store = SQLiteStore(tmp_path / "g.db")
    add_endpoints(store, rx.url("/hook"))
    operations.publish(
        store, platform_catalog(), "message.sent", message(0), time.time(), event_id="evt_taken"
    )
    with running(store) as hooks:
        ids = ["evt_0", "evt_1", "evt_taken", "evt_2"]
        outcomes = publish_grouped(hooks, ids, file_locked(store.path))
        hooks.drain()
    assert isinstance(outcomes["evt_taken"], DuplicateEvent)
    assert all(outcomes[i].event.id == i for i in ("evt_0", "evt_1", "evt_2"))
    assert store.count_deliveries() == 8  # evt_taken's two, and two for each of the others


class FailingWrites(SQLiteStore):
    """A SQLite store whose ``add_events`` fails once ``go`` is set."""

    go = threading.Event()

    def add_events(self, batch: Sequence[EventBatch], *, connection: Any = None) -> None:
        self.go.wait(30)
        raise sqlite3.OperationalError("disk I/O error")


def test_a_failed_shared_write_reaches_every_thread_of_its_group(
    tmp_path: Path, rx: LoopbackReceiver
) -> None:
    store = FailingWrites(tmp_path / "g.db")
    add_endpoints(store, rx.url("/hook"))
    with running(store) as hooks:
        outcomes = publish_grouped(hooks, ["evt_0", "evt_1", "evt_2"], store.go.set)
    errors = [outcomes[i] for i in ("evt_0", "evt_1", "evt_2")]
    assert all(isinstance(e, sqlite3.OperationalError) for e in errors), errors
    assert len({id(e) for e in errors}) == 3  # each thread raises an error of its own
    assert store.count_deliveries() == 0


def test_threads_back_from_a_shared_write_are_gathered_into_the_next(
    tmp_path: Path, rx: LoopbackReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A gather as long as it takes: the next leader waits for as many threads as the
    # last write carried, however slowly they come back.
    monkeypatch.setattr(publishing, "_GATHER_SHARE", 1e6)
    store = SQLiteStore(tmp_path / "g.db")
    add_endpoints(store, rx.url("/hook"))
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    first = [f"evt_a{i}" for i in range(6)]
    with running(store) as hooks:
        publish_grouped(hooks, first, file_locked(store.path))
        assert hooks._publisher._expected == len(first) - 1
        commits = statements.count("COMMIT")
        again = [f"evt_b{i}" for i in range(len(first) - 1)]
        threads = [
            threading.Thread(
                target=hooks.publish, args=("message.sent", message(0)), kwargs={"event_id": i}
            )
            for i in again
        ]
        for thread in threads:
            thread.start()
            time.sleep(0.02)
        for thread in threads:
            thread.join(30)
        hooks.drain()
    assert statements.count("COMMIT") == commits + 1, statements
    assert store.count_deliveries() == 2 * (len(first) + len(again))


class Interrupted:
    """A stand-in for the publisher's arrival condition whose wait is interrupted."""

    def notify(self) -> None:
        """No leader waits."""

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        raise KeyboardInterrupt


def test_a_leader_interrupted_while_gathering_withdraws_and_hands_on(
    tmp_path: Path, rx: LoopbackReceiver
) -> None:
    store = SQLiteStore(tmp_path / "g.db")
    add_endpoints(store, rx.url("/hook"))
    with running(store) as hooks:
        arrived = hooks._publisher._arrived
        hooks._publisher._arrived = Interrupted()  # type: ignore[assignment]
        with pytest.raises(KeyboardInterrupt):
            hooks.publish("message.sent", message(0), event_id="evt_lost")
        assert hooks._publisher._queue == []
        hooks._publisher._arrived = arrived
        assert hooks.publish("message.sent", message(1), event_id="evt_kept").deliveries == 2
        hooks.drain()
    assert store.get_event("evt_lost") is None
    assert store.count_deliveries() == 2
