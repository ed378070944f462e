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


def plans_of(store: SQLiteStore, action: Callable[[], object]) -> list[str]:
    statements: list[str] = []
    for connection in (store._db, store._reader):
        connection.set_trace_callback(statements.append)
    action()
    for connection in (store._db, store._reader):
        connection.set_trace_callback(None)
    plans = []
    with sqlite3.connect(store.path) as db:
        for sql in statements:
            if sql.lstrip().upper().startswith("SELECT"):
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
