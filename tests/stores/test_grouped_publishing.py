"""Concurrent publishes of the async driver share store writes; each caller keeps its own outcome.

To make a group for certain, another connection holds the SQLite file's write
lock: the first publish's write waits for it in a worker thread while the
other publishers queue in the service; the tests let go of the lock once all
have queued (white box: the publisher's queue) and count the commits.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from transports.aio.service import WebhookService
from transports.driving import operations
from transports.stores.interface import DuplicateEvent, Store
from transports.stores.memory import MemoryStore
from transports.stores.sqlite import SQLiteStore
from transports.testing import LOOPBACK_NETWORKS, LoopbackReceiver
from webhook_core import (
    DEFAULT_TENANT,
    Endpoint,
    EndpointSecret,
    EndpointState,
    PayloadError,
    platform_catalog,
)

CATALOG = platform_catalog()
T0 = 1_800_000_000.0
BACKENDS = ["asyncio", "trio"]


def message(i: int) -> dict[str, Any]:
    return {"message_id": f"msg_{i}", "channel": "sms", "to": "+919876543210", "status": "sent"}


def with_endpoints(store: Store, count: int = 2, base: str = "https://example.com") -> Store:
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
    return store


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_publish_groups_keeps_each_groups_outcome_its_own(kind: str, tmp_path: Path) -> None:
    store = with_endpoints(MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "g.db"))
    operations.publish(store, CATALOG, "message.sent", message(0), T0, event_id="evt_taken")
    outcomes = operations.publish_groups(
        store,
        CATALOG,
        [
            ([("message.sent", message(1), "evt_a")], T0, DEFAULT_TENANT),
            ([("message.sent", {"channel": "sms"}, "evt_bad")], T0, DEFAULT_TENANT),
            (
                [("message.sent", message(2), "evt_b"), ("message.sent", message(3), "evt_taken")],
                T0,
                DEFAULT_TENANT,
            ),
            ([("message.sent", message(4), "evt_c")], T0 + 1, DEFAULT_TENANT),
        ],
    )
    first, invalid, duplicate, last = outcomes
    assert isinstance(first, list) and [r.deliveries for r in first] == [2]
    assert isinstance(invalid, PayloadError) and "message_id" in str(invalid)
    assert isinstance(duplicate, DuplicateEvent) and "evt_taken" in str(duplicate)
    assert isinstance(last, list) and last[0].event.created_at == T0 + 1
    for stored in ("evt_a", "evt_c", "evt_taken"):
        assert store.get_event(stored) is not None
    for absent in ("evt_bad", "evt_b"):
        assert store.get_event(absent) is None
    assert store.count_deliveries() == 6


def locked(path: Path) -> sqlite3.Connection:
    """Another connection holding ``path``'s write lock until it commits."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def commits_of(store: SQLiteStore) -> list[str]:
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    return statements


async def queued(hooks: WebhookService, count: int) -> None:
    with anyio.fail_after(10):
        while len(hooks._publisher._queue) != count:
            await anyio.sleep(0.01)


def run_grouped(
    store: SQLiteStore, backend: str, ids: list[str], cancel: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Publish ``ids[0]`` while the file is locked, then the rest while that write
    waits; cancel those in ``cancel`` while queued; let go of the lock; the outcomes."""
    outcomes: dict[str, Any] = {}

    async def main() -> None:
        async with WebhookService(store) as hooks:

            async def publish(event_id: str, scope: anyio.CancelScope) -> None:
                with scope:
                    try:
                        outcomes[event_id] = await hooks.publish(
                            "message.sent", message(0), event_id=event_id
                        )
                    except Exception as exc:
                        outcomes[event_id] = exc
                if scope.cancelled_caught:
                    outcomes[event_id] = "cancelled"

            other = locked(store.path)
            try:
                async with anyio.create_task_group() as tg:
                    scopes = {i: anyio.CancelScope() for i in ids}
                    tg.start_soon(publish, ids[0], scopes[ids[0]])
                    await anyio.sleep(0.2)  # its write now waits for the file lock
                    for event_id in ids[1:]:
                        tg.start_soon(publish, event_id, scopes[event_id])
                    await queued(hooks, len(ids) - 1)
                    for event_id in cancel:
                        scopes[event_id].cancel()
                    await queued(hooks, len(ids) - 1 - len(cancel))
                    other.execute("COMMIT")
            finally:
                other.close()

    anyio.run(main, backend=backend)
    return outcomes


@pytest.mark.parametrize("backend", BACKENDS)
def test_publishes_that_arrive_during_a_write_share_the_next_commit(
    backend: str, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "g.db")
    with_endpoints(store)
    commits = commits_of(store)
    ids = [f"evt_{i}" for i in range(9)]
    outcomes = run_grouped(store, backend, ids)
    assert [outcomes[i].event.id for i in ids] == ids
    assert store.count_deliveries() == 18
    assert commits.count("COMMIT") == 2, commits


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_duplicate_in_a_shared_write_fails_only_its_caller(backend: str, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "g.db")
    with_endpoints(store)
    operations.publish(store, CATALOG, "message.sent", message(0), T0, event_id="evt_taken")
    ids = ["evt_0", "evt_1", "evt_taken", "evt_2"]
    outcomes = run_grouped(store, backend, ids)
    assert isinstance(outcomes["evt_taken"], DuplicateEvent)
    assert all(outcomes[i].event.id == i for i in ("evt_0", "evt_1", "evt_2"))
    assert store.count_deliveries() == 8


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_publish_cancelled_while_queued_is_not_stored(backend: str, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "g.db")
    with_endpoints(store)
    outcomes = run_grouped(store, backend, ["evt_0", "evt_1", "evt_2"], cancel=frozenset({"evt_1"}))
    assert outcomes["evt_1"] == "cancelled"
    assert store.get_event("evt_1") is None
    assert outcomes["evt_2"].event.id == "evt_2" and store.get_event("evt_2") is not None


@pytest.mark.parametrize("backend", BACKENDS)
def test_callers_publishing_in_a_loop_share_every_write(backend: str, tmp_path: Path) -> None:
    """Callers whose write just ended publish again at once; the next write waits for
    them, so four callers of five events each make five writes, not ten (two halves
    taking turns)."""
    store = SQLiteStore(tmp_path / "g.db")

    async def main() -> None:
        async with WebhookService(
            store, allow_http=True, allowed_networks=LOOPBACK_NETWORKS
        ) as hooks:

            async def publisher(n: int) -> None:
                for i in range(5):
                    await hooks.publish("message.sent", message(i), event_id=f"evt_{n}_{i}")

            async with anyio.create_task_group() as tg:
                for n in range(4):
                    tg.start_soon(publisher, n)

    with LoopbackReceiver() as rx:
        with_endpoints(store, base=rx.url("/hook"))
        statements = commits_of(store)
        anyio.run(main, backend=backend)
    assert store.count_deliveries() == 40
    writes = [s for s in statements if s.startswith("INSERT INTO events")]
    assert len(writes) == 5, statements
