"""Tenants: no operation, with any argument, reaches another tenant's records.

A hypothesis test runs random sequences of every sender operation for two
tenants, with ids drawn from both tenants (and unknown ones) as arguments. After
each call it checks that the other tenant's endpoints, deliveries and events are
exactly as before, and that nothing the call returned or raised names another
tenant's endpoint, delivery, event or secret (unless the caller named it itself,
as in "no endpoint with id ..."). Each tenant's own view stays consistent: its
listing, its count and the records it created agree.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import pg
from transports.driving import operations
from transports.driving.operations import NotFound
from transports.ids import new_secret
from transports.stores.interface import DeliveryFilter, DuplicateEvent, Store
from transports.stores.memory import MemoryStore
from transports.stores.records import endpoint_to_json
from transports.stores.sqlite import MIGRATIONS, SQLiteStore
from webhook_core import (
    DEFAULT_TENANT,
    ConfigError,
    Delivery,
    DeliveryState,
    Endpoint,
    EndpointSecret,
    EndpointState,
    HandshakeResult,
    WebhookError,
    platform_catalog,
)

CATALOG = platform_catalog()
T0 = 1_800_000_000.0
TENANTS = ("acme", "globex")
EVERYTHING = 10**6
EXPECTED = (WebhookError, NotFound, DuplicateEvent)


def message(i: int) -> dict[str, str]:
    return {"message_id": f"msg_{i}", "channel": "sms", "to": "+919876543210", "status": "sent"}


class World:
    """The store under test and who owns what (by id and secret)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.owner: dict[str, str] = {}
        self.now = T0

    def tick(self) -> float:
        self.now += 1
        return self.now

    def note(self, tenant: str, found: object) -> None:
        """Record the owner of every record in ``found`` (results the tenant got)."""
        for item in found if isinstance(found, list) else [found]:
            if isinstance(item, Endpoint):
                self.owner[item.id] = tenant
                for secret in item.secrets:
                    self.owner[secret.value] = tenant
            elif isinstance(item, operations.PublishResult):
                self.owner[item.event.id] = tenant
                for d in self.store.list_deliveries(DeliveryFilter(event_id=item.event.id)):
                    self.owner[d.id] = tenant
            elif isinstance(item, Delivery):
                self.owner[item.id] = tenant

    def ids(self) -> list[str]:
        return sorted(k for k in self.owner if not k.startswith("whsec_"))

    def view(self, tenant: str) -> tuple[Any, ...]:
        """Everything of ``tenant`` in the store."""
        events = [
            operations.find_event(self.store, i, tenant)
            for i in self.ids()
            if self.owner[i] == tenant
        ]
        return (
            self.store.list_endpoints(tenant),
            self.store.list_deliveries(DeliveryFilter(tenant=tenant), limit=EVERYTHING),
            events,
        )


def _call(
    world: World, draw: Callable[..., Any], tenant: str
) -> tuple[Callable[[], object], list[str]]:
    """A random operation of ``tenant`` with random arguments, and the ids it names."""
    store, now = world.store, world.tick()
    any_id = draw(st.sampled_from([*world.ids(), "ep_unknown", "dlv_unknown", "evt_unknown"]))
    own = [i for i in world.ids() if world.owner[i] == tenant and i.startswith("ep_")] or [
        "ep_unknown"
    ]
    mine = draw(st.sampled_from(own))
    event_id = draw(st.sampled_from([i for i in world.ids() if i.startswith("evt_")] or ["e_1"]))
    name = draw(
        st.sampled_from(
            [
                "add",
                "add",
                "verify",
                "verify",
                "change",
                "reverify",
                "disable",
                "enable",
                "rotate",
                "remove",
                "publish",
                "publish",
                "publish_with_id",
                "replay",
                "replay_failed",
                "find_endpoint",
                "find_delivery",
                "find_event",
                "list_endpoints",
                "list_deliveries",
                "count",
            ]
        )
    )
    n = draw(st.integers(0, 3))
    calls: dict[str, tuple[Callable[[], object], list[str]]] = {
        "add": (
            lambda: operations.add_endpoint(
                store, f"https://example.com/{tenant}/{n}", now, tenant=tenant
            ),
            [],
        ),
        "verify": (lambda: _verify(store, mine, tenant, now), [mine]),
        "change": (
            lambda: operations.change_endpoint(
                store, any_id, now, url=f"https://example.org/{n}", tenant=tenant
            ),
            [any_id],
        ),
        "reverify": (
            lambda: operations.request_verification(store, any_id, now, tenant),
            [any_id],
        ),
        "disable": (
            lambda: operations.disable_endpoint(store, any_id, now, "test", tenant),
            [any_id],
        ),
        "enable": (lambda: operations.enable_endpoint(store, any_id, now, tenant), [any_id]),
        "rotate": (
            lambda: operations.rotate_endpoint_secret(store, any_id, now, grace=0, tenant=tenant),
            [any_id],
        ),
        "remove": (lambda: operations.remove_endpoint(store, any_id, now, tenant), [any_id]),
        "publish": (
            lambda: operations.publish(
                store, CATALOG, "message.sent", message(n), now, tenant=tenant
            ),
            [],
        ),
        "publish_with_id": (
            lambda: operations.publish(
                store, CATALOG, "message.sent", message(n), now, event_id=event_id, tenant=tenant
            ),
            [event_id],
        ),
        "replay": (lambda: operations.replay_delivery(store, any_id, now, tenant), [any_id]),
        "replay_failed": (
            lambda: operations.replay_failed_since(
                store, T0, now, endpoint_id=any_id if n else None, tenant=tenant
            ),
            [any_id] if n else [],
        ),
        "find_endpoint": (lambda: operations.find_endpoint(store, any_id, tenant), [any_id]),
        "find_delivery": (lambda: operations.find_delivery(store, any_id, tenant), [any_id]),
        "find_event": (lambda: operations.find_event(store, any_id, tenant), [any_id]),
        "list_endpoints": (lambda: operations.list_endpoints(store, tenant), []),
        "list_deliveries": (
            lambda: operations.list_deliveries(
                store,
                DeliveryFilter(
                    endpoint_id=any_id if n == 1 else None,
                    event_id=any_id if n == 2 else None,
                    tenant="acme" if n == 3 else None,
                ),
                limit=EVERYTHING,
                tenant=tenant,
            ),
            [any_id] if n in (1, 2) else [],
        ),
        "count": (
            lambda: operations.count_deliveries(
                store, DeliveryFilter(state=DeliveryState.FAILED if n else None), tenant
            ),
            [],
        ),
    }
    return calls[name]


def _verify(store: Store, endpoint_id: str, tenant: str, now: float) -> Endpoint | None:
    """The dispatcher's handshake succeeding for one of the tenant's own endpoints."""
    endpoint = operations.find_endpoint(store, endpoint_id, tenant)
    if endpoint is None or endpoint.verification_token is None:
        return None
    answer = HandshakeResult(now, 200, endpoint.verification_token.encode())
    return operations.record_handshake(store, endpoint_id, endpoint.verification_token, answer)


def _leaks(world: World, tenant: str, text: str, named: list[str]) -> list[str]:
    return [
        key
        for key, owner in world.owner.items()
        if owner != tenant and key not in named and key in text
    ]


def check_isolation(store: Store, data: st.DataObject, steps: int) -> None:
    world = World(store)
    for _ in range(steps):
        tenant = data.draw(st.sampled_from(TENANTS))
        other = next(t for t in TENANTS if t != tenant)
        call, named = _call(world, data.draw, tenant)
        before = world.view(other)
        try:
            result: object = call()
            text = repr(result)
        except EXPECTED as exc:
            result, text = None, str(exc)
        assert world.view(other) == before, "another tenant's records changed"
        assert not _leaks(world, tenant, text, named), text
        for key in named:
            if world.owner.get(key) == other:
                assert result in (None, [], 0), f"{key} of {other} reached by {tenant}"
        world.note(tenant, result)
        mine = world.view(tenant)
        assert {e.id for e in mine[0]} <= {k for k, o in world.owner.items() if o == tenant}
        assert {d.id for d in mine[1]} <= {k for k, o in world.owner.items() if o == tenant}
        assert operations.count_deliveries(store, tenant=tenant) == len(mine[1])
        for endpoint in mine[0]:
            assert endpoint.tenant == tenant


ISOLATION = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@ISOLATION
@given(st.data())
def test_no_operation_reaches_another_tenant_in_memory(data: st.DataObject) -> None:
    check_isolation(MemoryStore(), data, steps=40)


@ISOLATION
@given(st.data())
def test_no_operation_reaches_another_tenant_in_sqlite(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as directory, SQLiteStore(Path(directory) / "t.db") as s:
        check_isolation(s, data, steps=40)


@settings(max_examples=8, deadline=None)
@given(st.data())
def test_no_operation_reaches_another_tenant_in_postgres(data: st.DataObject) -> None:
    from transports.stores.postgres import PostgresStore

    with PostgresStore(pg.require_postgres(), schema=pg.fresh_schema()) as store:
        check_isolation(store, data, steps=30)


@pytest.fixture
def isolated_pair() -> Iterator[Store]:
    store = MemoryStore()
    for tenant in TENANTS:
        endpoint = operations.add_endpoint(
            store, f"https://example.com/{tenant}", T0, tenant=tenant
        )
        _verify(store, endpoint.id, tenant, T0)
    yield store


def test_publish_fans_out_to_the_tenants_endpoints_only(isolated_pair: Store) -> None:
    store = isolated_pair
    result = operations.publish(store, CATALOG, "message.sent", message(0), T0, tenant="acme")
    assert result.deliveries == 1
    (delivery,) = store.list_deliveries(DeliveryFilter(event_id=result.event.id))
    assert operations.find_endpoint(store, delivery.endpoint_id, "acme") is not None
    assert operations.list_deliveries(store, tenant="globex") == []
    assert operations.publish(store, CATALOG, "message.sent", message(1), T0).deliveries == 0


def test_grouped_publishing_fans_each_group_out_to_its_own_tenant(isolated_pair: Store) -> None:
    store = isolated_pair
    spec = [("message.sent", message(0), None)]
    outcomes = operations.publish_groups(
        store, CATALOG, [(spec, T0, "acme"), (spec, T0, "globex"), (spec, T0, DEFAULT_TENANT)]
    )
    counts = [r[0].deliveries for r in outcomes if isinstance(r, list)]
    assert counts == [1, 1, 0]
    for tenant in TENANTS:
        (delivery,) = operations.list_deliveries(store, tenant=tenant)
        assert operations.find_endpoint(store, delivery.endpoint_id, tenant) is not None


@pytest.mark.parametrize("tenant", ["", "a b", "x" * 65, "-lead", "acme/1", "é"])
def test_a_bad_tenant_id_is_one_clear_error(tenant: str) -> None:
    store = MemoryStore()
    with pytest.raises(ConfigError, match=r"tenant id .* is not valid: use 1-64"):
        operations.add_endpoint(store, "https://example.com/", T0, tenant=tenant)
    with pytest.raises(ConfigError, match="tenant id"):
        operations.publish(store, CATALOG, "message.sent", message(0), T0, tenant=tenant)
    with pytest.raises(ConfigError, match="tenant id"):
        operations.list_endpoints(store, tenant)
    assert store.list_endpoints() == []


def test_sqlite_migration_keeps_existing_records_under_the_default_tenant(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        for migration in MIGRATIONS[:3]:
            db.executescript(migration)
        db.execute("PRAGMA user_version=3")
        db.execute(
            "INSERT INTO endpoints (id, created_at, record) VALUES (?, ?, ?)",
            ("ep_old", T0, _old_endpoint_json()),
        )
        db.execute(
            "INSERT INTO events (id, name, created_at, body) "
            "VALUES ('evt_old', 'message.sent', ?, ?)",
            (T0, b"{}"),
        )
        db.execute(
            "INSERT INTO deliveries (id, event_id, endpoint_id, created_at, state, attempts) "
            "VALUES ('dlv_old', 'evt_old', 'ep_old', ?, 'failed', '[]')",
            (T0,),
        )
    with SQLiteStore(path) as store:
        assert store.schema_status().pending == 0
        (endpoint,) = operations.list_endpoints(store)
        assert (endpoint.id, endpoint.tenant) == ("ep_old", DEFAULT_TENANT)
        assert [d.id for d in operations.list_deliveries(store)] == ["dlv_old"]
        event = operations.find_event(store, "evt_old")
        assert event is not None and event.tenant == DEFAULT_TENANT
        assert operations.list_endpoints(store, "acme") == []
        assert operations.find_delivery(store, "dlv_old", "acme") is None


def test_postgres_migration_keeps_existing_records_under_the_default_tenant() -> None:
    import psycopg

    from transports.stores.postgres import MIGRATIONS as PG_MIGRATIONS
    from transports.stores.postgres import PostgresStore

    url, schema = pg.require_postgres(), pg.fresh_schema()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(
            f"CREATE TABLE {schema}.schema_migrations (version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for number, migration in enumerate(PG_MIGRATIONS[:2], start=1):
            conn.execute(migration.replace("{s}", schema))
            conn.execute(f"INSERT INTO {schema}.schema_migrations (version) VALUES ({number})")
        conn.execute(
            f"INSERT INTO {schema}.endpoints (id, created_at, record) VALUES (%s, %s, %s)",
            ("ep_old", T0, _old_endpoint_json()),
        )
        conn.execute(
            f"INSERT INTO {schema}.events (id, name, created_at, body) "
            "VALUES ('evt_old', 'message.sent', %s, %s)",
            (T0, b"{}"),
        )
        conn.execute(
            f"INSERT INTO {schema}.deliveries (id, event_id, endpoint_id, created_at, state) "
            "VALUES ('dlv_old', 'evt_old', 'ep_old', %s, 'failed')",
            (T0,),
        )
    with PostgresStore(url, schema=schema) as store:
        assert store.schema_status().pending == 0
        (endpoint,) = operations.list_endpoints(store)
        assert (endpoint.id, endpoint.tenant) == ("ep_old", DEFAULT_TENANT)
        assert [d.id for d in operations.list_deliveries(store)] == ["dlv_old"]
        assert operations.list_deliveries(store, tenant="acme") == []


def _old_endpoint_json() -> str:
    """An endpoint as a store before tenants wrote it (no ``tenant`` in the record)."""
    record = json.loads(
        endpoint_to_json(
            Endpoint(
                "ep_old",
                "https://example.com/old",
                (EndpointSecret(new_secret(), T0),),
                T0,
                state=EndpointState.ACTIVE,
            )
        )
    )
    del record["tenant"]
    return json.dumps(record)
