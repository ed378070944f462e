"""SQLite finds due work by walking indexes in time order, whatever the backlog.

With a million waiting deliveries, a claim that sorted every waiting row would
take seconds; these tests read SQLite's query plans for every statement that
``claim`` and ``next_due`` run, and for every kind of listing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from tests.stores.test_store_conformance import CATALOG, endpoint, message
from transports.driving.operations import publish_many
from transports.stores.interface import DeliveryFilter
from transports.stores.sqlite import SQLiteStore
from webhook_core import DeliveryState

DELIVERED = DeliveryState.DELIVERED


def plans_of(store: SQLiteStore, action: Callable[[], object]) -> list[str]:
    statements: list[str] = []
    for connection in (store._db, store._lease_db, store._reader):
        connection.set_trace_callback(statements.append)
    action()
    for connection in (store._db, store._lease_db, store._reader):
        connection.set_trace_callback(None)
    plans = []
    with sqlite3.connect(store.path) as db:
        for sql in statements:
            if sql.lstrip().upper().startswith(("SELECT", "UPDATE")):
                rows = db.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
                plans.append(sql + "\n" + "\n".join(r[-1] for r in rows))
    assert plans, "nothing was traced"
    return plans


@pytest.mark.parametrize("action", ["claim", "next_due"])
def test_due_work_is_found_without_sorting_the_backlog(action: str, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "plans.db")
    run = {
        "claim": lambda: store.claim(1.0, 64, "w", 60.0),
        "next_due": store.next_due,
    }[action]
    for plan in plans_of(store, run):
        if "FROM deliveries" in plan:
            assert "TEMP B-TREE" not in plan, plan
            assert "deliveries_due" in plan or "deliveries_lease" in plan, plan


@pytest.mark.parametrize("action", ["claim", "complete"])
def test_batch_writes_find_each_delivery_by_its_key(action: str, tmp_path: Path) -> None:
    """Leases and results are written by id, 150 at once: SQLite must look each one up
    by the primary key, not walk the in-flight rows for every one."""
    store = SQLiteStore(tmp_path / "plans.db")
    store.save_endpoint(endpoint())
    publish_many(store, CATALOG, [("message.sent", message(i), None) for i in range(150)], 1.0)
    claimed = store.claim(1.0, 150, "w", 60.0)
    done = [attrs.evolve(c.delivery, state=DeliveryState.DELIVERED) for c in claimed]
    run = {
        "claim": lambda: store.claim(100.0, 150, "w2", 160.0),
        "complete": lambda: store.complete(done, "w"),
    }[action]
    updates = [p for p in plans_of(store, run) if p.startswith("UPDATE deliveries")]
    assert updates
    for update in updates:
        assert "SCAN deliveries" not in update, update
        assert "USING INDEX sqlite_autoindex_deliveries_1 (id=?)" in update, update


@pytest.mark.parametrize("state", [None, *DeliveryState])
@pytest.mark.parametrize("by", ["state", "endpoint", "event", "time"])
def test_every_listing_walks_an_index(state: DeliveryState | None, by: str, tmp_path: Path) -> None:
    """No listing reads the whole table, nor does any count but that of delivered rows
    (most of the table: it visits them either way). Waiting and in-flight deliveries
    are found through the due and lease indexes (the working set), not the history;
    an endpoint's or an event's through their own index."""
    store = SQLiteStore(tmp_path / "plans.db")
    where = DeliveryFilter(
        state=state,
        endpoint_id="ep_1" if by == "endpoint" else None,
        event_id="evt_1" if by == "event" else None,
        created_since=1.0 if by == "time" else None,
    )
    plans = plans_of(store, lambda: (store.list_deliveries(where), store.count_deliveries(where)))
    assert len(plans) == 2
    for plan in plans:
        steps = plan.split("\n")[1:]
        whole = plan.startswith("SELECT count") and by == "state" and state is DELIVERED
        assert whole or "SCAN deliveries" not in steps, plan
        if by == "event":
            assert "deliveries_event" in plan, plan
        elif by == "endpoint":
            assert "deliveries_endpoint" in plan, plan
        elif state in (DeliveryState.PENDING, DeliveryState.RETRY_SCHEDULED):
            assert "deliveries_due" in plan, plan
        elif state is DeliveryState.IN_FLIGHT:
            assert "deliveries_lease" in plan, plan


@pytest.mark.parametrize("state", [DeliveryState.DELIVERED, DeliveryState.FAILED])
def test_pruning_walks_an_index_in_time_order(state: DeliveryState, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "plans.db")
    for plan in plans_of(store, lambda: store.prune(state, 10.0, 100)):
        if "FROM deliveries" in plan and plan.startswith("SELECT"):
            assert "SCAN deliveries\n" not in plan + "\n", plan
            assert "TEMP B-TREE" not in plan, plan
