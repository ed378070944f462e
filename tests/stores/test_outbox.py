"""Transactional publish: the event exists exactly when the caller's transaction commits."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import pg
from tests.conformance.harness import DRIVERS, message, running, verifying, wait_endpoint
from transports.driving.operations import publish
from transports.stores.interface import Store
from transports.stores.memory import MemoryStore
from transports.stores.sqlite import SQLiteStore
from transports.testing import LoopbackReceiver
from webhook_core import ConfigError, Endpoint, EndpointSecret, EndpointState, platform_catalog


@contextmanager
def sqlite_pair(tmp_path: Path) -> Iterator[tuple[Store, Any]]:
    store = SQLiteStore(tmp_path / "app.db")
    # The async drivers are called through a portal thread in these tests.
    conn = sqlite3.connect(tmp_path / "app.db", check_same_thread=False)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)")
    conn.commit()
    try:
        yield store, conn
    finally:
        conn.close()


@contextmanager
def postgres_pair(tmp_path: Path) -> Iterator[tuple[Store, Any]]:
    from transports.stores.postgres import PostgresStore

    url = pg.require_postgres()
    schema = pg.fresh_schema()
    store = PostgresStore(url, schema=schema)
    conn = psycopg.connect(url)
    conn.execute(f"CREATE TABLE {schema}.orders (id serial PRIMARY KEY, note text)")
    conn.commit()
    conn.execute(f"SET search_path TO {schema}")
    conn.commit()
    try:
        yield store, conn
    finally:
        conn.close()
        store.close()


PAIRS: dict[str, Callable[[Path], AbstractContextManager[tuple[Store, Any]]]] = {
    "sqlite": sqlite_pair,
    "postgres": postgres_pair,
}


def delivered_ids(rx: LoopbackReceiver) -> set[str | None]:
    return {
        r.header("webhook-id")
        for r in rx.requests_for("/hook")
        if r.header("X-Netasampark-Event") != "webhook.verification"
    }


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("kind", PAIRS)
def test_rolled_back_publish_sends_nothing_and_committed_publish_sends(
    driver: str, kind: str, tmp_path: Path
) -> None:
    with (
        PAIRS[kind](tmp_path) as (store, conn),
        LoopbackReceiver(default=verifying()) as rx,
        running(driver, store=store, poll_interval=0.1) as hooks,
    ):
        endpoint = hooks.add_endpoint(rx.url("/hook"))
        wait_endpoint(hooks, endpoint.id, EndpointState.ACTIVE)

        conn.execute("INSERT INTO orders (note) VALUES ('abandoned')")
        lost = hooks.publish("message.sent", message(1), connection=conn)
        assert store.get_event(lost.event.id) is None, "visible before the commit"
        conn.rollback()

        conn.execute("INSERT INTO orders (note) VALUES ('kept')")
        kept = hooks.publish("message.sent", message(2), connection=conn)
        assert store.get_event(kept.event.id) is None, "visible before the commit"
        conn.commit()

        deadline = time.monotonic() + 10
        while kept.event.id not in delivered_ids(rx) and time.monotonic() < deadline:
            time.sleep(0.02)
        hooks.drain()
        assert delivered_ids(rx) == {kept.event.id}
        assert store.get_event(lost.event.id) is None
        assert store.get_event(kept.event.id) is not None
        notes = [r[0] for r in conn.execute("SELECT note FROM orders").fetchall()]
        assert notes == ["kept"]


@pytest.mark.parametrize("kind", PAIRS)
def test_a_failed_publish_leaves_the_callers_transaction_usable(kind: str, tmp_path: Path) -> None:
    catalog = platform_catalog()
    with PAIRS[kind](tmp_path) as (store, conn):
        publish(store, catalog, "message.sent", message(), 1.0, event_id="evt_taken")
        conn.execute("INSERT INTO orders (note) VALUES ('mine')")
        with pytest.raises(ValueError, match="evt_taken"):
            publish(
                store,
                catalog,
                "message.sent",
                message(),
                2.0,
                event_id="evt_taken",
                connection=conn,
            )
        conn.commit()
        assert [r[0] for r in conn.execute("SELECT note FROM orders").fetchall()] == ["mine"]
        assert store.count_deliveries() == 0


def test_a_connection_to_another_sqlite_file_is_refused(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "webhooks.db")
    other = sqlite3.connect(tmp_path / "other.db")
    with pytest.raises(ConfigError, match=r"other\.db.*webhooks\.db"):
        publish(store, platform_catalog(), "message.sent", message(), 1.0, connection=other)
    memory = sqlite3.connect(":memory:")
    with pytest.raises(ConfigError, match="in-memory database"):
        publish(store, platform_catalog(), "message.sent", message(), 1.0, connection=memory)
    with pytest.raises(ConfigError, match=r"sqlite3\.Connection.*not str"):
        publish(store, platform_catalog(), "message.sent", message(), 1.0, connection="db")


def test_the_postgres_store_refuses_a_foreign_connection(tmp_path: Path) -> None:
    from transports.stores.postgres import PostgresStore

    url = pg.require_postgres()
    store = PostgresStore(url, schema=pg.fresh_schema())
    try:
        elsewhere = psycopg.connect(url.rsplit("/", 1)[0] + "/postgres")
        with pytest.raises(ConfigError, match=r"'postgres'.*'test'"):
            publish(store, platform_catalog(), "message.sent", message(), 1.0, connection=elsewhere)
        elsewhere.close()
        with sqlite3.connect(":memory:") as lite, pytest.raises(ConfigError, match="psycopg"):
            publish(store, platform_catalog(), "message.sent", message(), 1.0, connection=lite)
    finally:
        store.close()


def test_the_memory_store_cannot_join_a_transaction() -> None:
    with pytest.raises(ConfigError, match="in-memory store cannot join"):
        publish(
            MemoryStore(), platform_catalog(), "message.sent", message(), 1.0, connection=object()
        )


def test_a_postgres_connection_in_pipeline_mode_can_publish(tmp_path: Path) -> None:
    catalog = platform_catalog()
    with postgres_pair(tmp_path) as (store, conn):
        store.save_endpoint(
            Endpoint(
                id="ep_0",
                url="https://example.com/hook",
                secrets=(EndpointSecret("whsec_" + "A" * 32, 0.0),),
                created_at=0.0,
                state=EndpointState.ACTIVE,
            )
        )
        with conn.pipeline():
            conn.execute("INSERT INTO orders (note) VALUES ('piped')")
            result = publish(store, catalog, "message.sent", message(), 1.0, connection=conn)
        conn.commit()
        assert store.get_event(result.event.id) is not None
        assert [d.endpoint_id for d in store.list_deliveries()] == ["ep_0"]
