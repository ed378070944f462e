"""Schema migrations, reopening durable stores, and PostgreSQL wake-ups across processes."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import attrs
import psycopg
import pytest

from tests import pg
from tests.conformance.harness import message
from transports.driving import operations
from transports.stores.interface import DeliveryFilter
from transports.stores.sqlite import MIGRATIONS, SQLiteStore
from transports.sync.service import ThreadedWebhookService
from transports.testing import LOOPBACK_NETWORKS, LoopbackReceiver, Respond
from webhook_core import ConfigError, DeliveryState, EndpointState, platform_catalog


def test_sqlite_migrates_a_new_file_and_reopens_with_data(tmp_path: Path) -> None:
    path = tmp_path / "webhooks.db"
    store = SQLiteStore(path)
    assert store.schema_status().version == len(MIGRATIONS)
    operations.publish(store, platform_catalog(), "message.sent", message(), 1.0, event_id="evt_1")
    store.close()
    again = SQLiteStore(path)
    assert again.get_event("evt_1") is not None
    assert again.schema_status().pending == 0
    again.close()


def test_sqlite_upgrades_a_version_1_file_keeping_its_deliveries(tmp_path: Path) -> None:
    """A file made by the first schema (state indexes) moves to the later ones on open:
    every delivery is still there and listings by state, endpoint and time find them."""
    path = tmp_path / "webhooks.db"
    with sqlite3.connect(path, isolation_level=None) as db:
        for statement in MIGRATIONS[0].split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("PRAGMA user_version=1")
        db.execute("INSERT INTO events VALUES ('evt_1', 'message.sent', 1.0, x'7b7d')")
        db.executemany(
            "INSERT INTO deliveries (id, event_id, endpoint_id, created_at, state, "
            "next_attempt_at) VALUES (?, 'evt_1', ?, ?, ?, ?)",
            [
                ("dlv_1", "ep_1", 1.0, "failed", None),
                ("dlv_2", "ep_2", 2.0, "pending", 2.0),
                ("dlv_3", "ep_1", 3.0, "delivered", None),
            ],
        )
    store = SQLiteStore(path)
    assert store.schema_status().version == len(MIGRATIONS) > 1
    assert [d.id for d in store.list_deliveries()] == ["dlv_1", "dlv_2", "dlv_3"]
    failed = store.list_deliveries(DeliveryFilter(state=DeliveryState.FAILED))
    assert [d.id for d in failed] == ["dlv_1"]
    assert store.count_deliveries(DeliveryFilter(state=DeliveryState.PENDING)) == 1
    mine = store.list_deliveries(DeliveryFilter(endpoint_id="ep_1"))
    assert [d.id for d in mine] == ["dlv_1", "dlv_3"]
    with sqlite3.connect(path) as db:
        names = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "deliveries_state" not in names
    assert {"deliveries_created", "deliveries_failed", "deliveries_endpoint"} <= names
    store.close()


def test_sqlite_refuses_a_schema_newer_than_the_library(tmp_path: Path) -> None:
    path = tmp_path / "webhooks.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    with pytest.raises(ConfigError, match="newer than this library knows"):
        SQLiteStore(path)


def test_postgres_workers_starting_together_migrate_once() -> None:
    from transports.stores.postgres import MIGRATIONS as PG_MIGRATIONS
    from transports.stores.postgres import PostgresStore

    url = pg.require_postgres()
    schema = pg.fresh_schema()
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(PostgresStore(url, schema=schema, max_connections=2))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with psycopg.connect(url) as conn:
        versions = conn.execute(f"SELECT version FROM {schema}.schema_migrations").fetchall()
    assert [v for (v,) in versions] == list(range(1, len(PG_MIGRATIONS) + 1))
    for store in opened:
        store.close()


def test_postgres_refuses_a_schema_newer_than_the_library() -> None:
    from transports.stores.postgres import PostgresStore

    url = pg.require_postgres()
    schema = pg.fresh_schema()
    PostgresStore(url, schema=schema).close()
    with psycopg.connect(url) as conn:
        conn.execute(f"INSERT INTO {schema}.schema_migrations (version) VALUES (999)")
    with pytest.raises(ConfigError, match="version 999, newer than this library"):
        PostgresStore(url, schema=schema)


def test_a_publish_elsewhere_wakes_an_idle_postgres_dispatcher() -> None:
    from transports.stores.postgres import PostgresStore

    url = pg.require_postgres()
    schema = pg.fresh_schema()
    dispatcher_store = PostgresStore(url, schema=schema)
    publisher = PostgresStore(url, schema=schema)
    with LoopbackReceiver(default=Respond(200)) as rx:
        endpoint = operations.add_endpoint(publisher, rx.url("/hook"), 0.0, allow_http=True)
        publisher.save_endpoint(
            attrs.evolve(endpoint, state=EndpointState.ACTIVE, verification_token=None)
        )
        with ThreadedWebhookService(
            dispatcher_store,
            allow_http=True,
            allowed_networks=LOOPBACK_NETWORKS,
            poll_interval=600,
        ):
            time.sleep(0.5)  # the dispatcher is asleep, polling only every 10 minutes
            result = operations.publish(
                publisher, platform_catalog(), "message.sent", message(), time.time()
            )
            rx.wait_for(1, timeout=30)
        assert rx.requests[0].header("webhook-id") == result.event.id
    delivered = publisher.count_deliveries(DeliveryFilter(state=DeliveryState.DELIVERED))
    assert delivered == 1
    dispatcher_store.close()
    publisher.close()
