"""SQLite finds due work by walking indexes in time order, whatever the backlog.

With a million waiting deliveries, a claim that sorted every waiting row would
take seconds; these tests read SQLite's query plans for every statement that
``claim`` and ``next_due`` run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from transports.sqlite import SQLiteStore
from webhook_core import Delivery, DeliveryState


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


def test_batch_writes_find_each_delivery_by_its_key(tmp_path: Path) -> None:
    """Results are written by id: SQLite must look each one up by the primary key, not
    walk the in-flight rows of the state index for every result."""
    store = SQLiteStore(tmp_path / "plans.db")
    delivery = Delivery("dlv_1", "evt_1", "ep_1", 1.0, DeliveryState.DELIVERED, None, (), None)
    plans = plans_of(store, lambda: store.complete([delivery], "w"))
    (update,) = [p for p in plans if p.startswith("UPDATE deliveries")]
    assert "SCAN deliveries" not in update, update
    assert "SEARCH deliveries USING INDEX sqlite_autoindex_deliveries_1 (id=?)" in update, update
