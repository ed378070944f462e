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
from tests.stores.test_store_conformance import endpoint
from transports.driving import operations
from transports.stores.interface import DeliveryFilter, Store
from transports.stores.records import endpoint_to_json
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


# Rows written by an older schema: one delivery leased then (no token), with the
# endpoints and the event a claim needs.
OLD_ENDPOINTS = [(e.id, e.created_at, endpoint_to_json(e)) for e in (endpoint(1), endpoint(2))]
OLD_DELIVERIES = [
    ("dlv_1", "ep_1", 1.0, "failed", None, None, None),
    ("dlv_2", "ep_2", 2.0, "pending", 2.0, None, None),
    ("dlv_3", "ep_1", 3.0, "delivered", None, None, None),
    ("dlv_4", "ep_2", 4.0, "in_flight", None, "w_old", 60.0),
]
OLD_DELIVERY_COLUMNS = (
    "id, endpoint_id, created_at, state, next_attempt_at, locked_by, lease_expires_at"
)


def check_upgraded(store: Store) -> None:
    """The old rows are all there and listed as before; the row leased before the
    upgrade (no token) takes no result until it is claimed again, under a token."""
    assert [d.id for d in store.list_deliveries()] == ["dlv_1", "dlv_2", "dlv_3", "dlv_4"]
    failed = store.list_deliveries(DeliveryFilter(state=DeliveryState.FAILED))
    assert [d.id for d in failed] == ["dlv_1"]
    assert store.count_deliveries(DeliveryFilter(state=DeliveryState.PENDING)) == 1
    mine = store.list_deliveries(DeliveryFilter(endpoint_id="ep_1"))
    assert [d.id for d in mine] == ["dlv_1", "dlv_3"]
    leased_before = store.get_delivery("dlv_4")
    assert leased_before is not None and leased_before.state is DeliveryState.IN_FLIGHT
    gave_up = attrs.evolve(leased_before, state=DeliveryState.FAILED, reason="old worker")
    assert store.complete([gave_up], "w_old") == 0
    claimed = store.claim(60.0, 10, "w_new", 120.0)
    assert sorted(c.delivery.id for c in claimed) == ["dlv_2", "dlv_4"]
    assert all(c.delivery.lease_token for c in claimed)
    done = [attrs.evolve(c.delivery, state=DeliveryState.DELIVERED) for c in claimed]
    assert store.complete(done, "w_new") == 2
    assert store.count_deliveries(DeliveryFilter(state=DeliveryState.DELIVERED)) == 3


@pytest.mark.parametrize("version", [1, 2])
def test_sqlite_upgrades_an_older_file_keeping_its_deliveries(version: int, tmp_path: Path) -> None:
    """A file made by an older schema (state indexes in 1; no lease tokens before 3)
    moves to the latest on open, keeping its deliveries (see ``check_upgraded``)."""
    path = tmp_path / "webhooks.db"
    with sqlite3.connect(path, isolation_level=None) as db:
        for statement in ";".join(MIGRATIONS[:version]).split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA user_version={version}")
        db.execute("INSERT INTO events VALUES ('evt_1', 'message.sent', 1.0, x'7b7d')")
        db.executemany("INSERT INTO endpoints VALUES (?, ?, ?)", OLD_ENDPOINTS)
        db.executemany(
            f"INSERT INTO deliveries (event_id, {OLD_DELIVERY_COLUMNS}) "
            "VALUES ('evt_1', ?, ?, ?, ?, ?, ?, ?)",
            OLD_DELIVERIES,
        )
    store = SQLiteStore(path)
    assert store.schema_status().version == len(MIGRATIONS) > version
    with sqlite3.connect(path) as db:
        names = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        columns = {c[1] for c in db.execute("PRAGMA table_info(deliveries)")}
    assert "deliveries_state" not in names
    assert {"deliveries_created", "deliveries_failed", "deliveries_endpoint"} <= names
    assert "lease_token" in columns
    check_upgraded(store)
    store.close()


def test_postgres_upgrades_a_version_1_schema_keeping_its_deliveries() -> None:
    """A schema made by the first migration (no lease tokens) moves to the latest on
    open, keeping its deliveries (see ``check_upgraded``)."""
    from transports.stores.postgres import MIGRATIONS as PG_MIGRATIONS
    from transports.stores.postgres import PostgresStore

    url = pg.require_postgres()
    schema = pg.fresh_schema()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.schema_migrations (version integer PRIMARY KEY)")
        conn.execute(PG_MIGRATIONS[0].replace("{s}", schema))
        conn.execute(f"INSERT INTO {schema}.schema_migrations VALUES (1)")
        conn.execute(f"INSERT INTO {schema}.events VALUES ('evt_1', 'message.sent', 1.0, '{{}}')")
        with conn.cursor() as cursor:
            cursor.executemany(f"INSERT INTO {schema}.endpoints VALUES (%s, %s, %s)", OLD_ENDPOINTS)
            cursor.executemany(
                f"INSERT INTO {schema}.deliveries (event_id, {OLD_DELIVERY_COLUMNS}) "
                "VALUES ('evt_1', %s, %s, %s, %s, %s, %s, %s)",
                OLD_DELIVERIES,
            )
    store = PostgresStore(url, schema=schema)
    assert store.schema_status().version == len(PG_MIGRATIONS) > 1
    check_upgraded(store)
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
