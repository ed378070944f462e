"""Crash safety with real processes: a dispatcher killed with SIGKILL loses nothing.

Each test runs dispatchers as separate processes against a SQLite file or a
PostgreSQL schema, and a real HTTP receiver in this process. After a kill,
the delivery is attempted again once its lease expires (by a restarted
dispatcher for SQLite, by another worker for PostgreSQL), with the same event
id, and ends delivered.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests import pg
from transports.driving import operations
from transports.stores.interface import DeliveryFilter, Store
from transports.stores.sqlite import SQLiteStore
from transports.testing import Handler, Hang, LoopbackReceiver, ReceivedRequest, Respond
from webhook_core import DeliveryState, EndpointState, Outcome, platform_catalog

ROOT = Path(__file__).resolve().parents[2]
LEASE = 6.0
DONE = (DeliveryState.DELIVERED, DeliveryState.FAILED)


@attrs.define
class Database:
    url: str
    schema: str | None
    store: Store

    def args(self) -> list[str]:
        return ["--db", self.url] + (["--schema", self.schema] if self.schema else [])


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        path = str(tmp_path / "webhooks.db")
        db = Database(path, None, SQLiteStore(path))
    else:
        from transports.stores.postgres import PostgresStore

        url = pg.require_postgres()
        schema = pg.fresh_schema()
        db = Database(url, schema, PostgresStore(url, schema=schema))
    yield db
    db.store.close()


class Dispatcher:
    """A dispatcher process, started once it says ``ready`` (or has exited)."""

    def __init__(self, database: Database, *extra: str) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.stores.dispatcher_process", *database.args(), *extra],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])},
        )
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(30):
            self.kill()
            raise AssertionError(f"dispatcher did not start: {self.lines}")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())
            if line.strip() == "ready":
                self._ready.set()
        self._ready.set()  # it exited (a planned crash may come before "ready")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(30) in (0, -signal.SIGTERM)

    def wait_dead(self, timeout: float = 30) -> int:
        return self.process.wait(timeout)


@contextmanager
def dispatchers(database: Database, count: int, *extra: str) -> Iterator[list[Dispatcher]]:
    started: list[Dispatcher] = []
    try:
        for _ in range(count):
            started.append(Dispatcher(database, *extra))
        yield started
    finally:
        for d in started:
            if d.process.poll() is None:
                d.process.kill()
                d.process.wait(10)


def active_endpoint(store: Store, url: str) -> str:
    """Register an endpoint that is already verified (these tests are about deliveries)."""
    endpoint = operations.add_endpoint(store, url, time.time(), allow_http=True)
    store.save_endpoint(attrs.evolve(endpoint, state=EndpointState.ACTIVE, verification_token=None))
    return endpoint.id


def message(i: int) -> dict[str, Any]:
    return {"message_id": f"msg_{i}", "channel": "sms", "to": "+919876543210", "status": "sent"}


def wait_all_done(store: Store, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = sum(store.count_deliveries(DeliveryFilter(state=s)) for s in DONE)
        if done >= count:
            return
        time.sleep(0.1)
    states = {s: store.count_deliveries(DeliveryFilter(state=s)) for s in DeliveryState}
    raise AssertionError(f"not all {count} deliveries finished: {states}")


def ids_received(rx: LoopbackReceiver) -> list[str | None]:
    return [r.header("webhook-id") for r in rx.requests]


@pytest.mark.parametrize("driver", ["threads", "trio", "asyncio"])
def test_killed_while_the_receiver_holds_the_request(database: Database, driver: str) -> None:
    store = database.store
    with LoopbackReceiver(default=Respond(200)) as rx:
        rx.route("/hook", Hang(30), Respond(200))
        active_endpoint(store, rx.url("/hook"))
        event = operations.publish(store, platform_catalog(), "message.sent", message(1), 0.0)
        with dispatchers(database, 1, "--driver", driver) as (first,):
            rx.wait_for(1, timeout=20)
            first.kill()
        (held,) = store.list_deliveries()
        assert held.state is DeliveryState.IN_FLIGHT
        with dispatchers(database, 1, "--driver", driver, "--lease", str(LEASE)) as (second,):
            wait_all_done(store, 1)
            second.stop()
        (done,) = store.list_deliveries()
        assert done.state is DeliveryState.DELIVERED
        assert ids_received(rx) == [event.event.id, event.event.id]
        assert [a.outcome for a in done.attempts] == [Outcome.ABANDONED, Outcome.SUCCESS]


def crash_then_recover(database: Database, rx: LoopbackReceiver, crash_at: str) -> str:
    """Publish one event, let a dispatcher kill itself at ``crash_at``, then restart one."""
    store = database.store
    active_endpoint(store, rx.url("/hook"))
    event_id = operations.publish(store, platform_catalog(), "message.sent", message(1), 0.0)
    with dispatchers(database, 1, "--crash-at", crash_at) as (first,):
        assert first.wait_dead() == -signal.SIGKILL
    (crashed,) = store.list_deliveries()
    assert crashed.state is DeliveryState.IN_FLIGHT and crashed.attempts == ()
    with dispatchers(database, 1) as (second,):
        wait_all_done(store, 1)
        second.stop()
    (done,) = store.list_deliveries()
    assert done.state is DeliveryState.DELIVERED
    return event_id.event.id


def test_killed_between_the_claim_and_the_send(database: Database) -> None:
    with LoopbackReceiver(default=Respond(200)) as rx:
        event_id = crash_then_recover(database, rx, "after-claim")
        assert ids_received(rx) == [event_id]


def test_killed_while_writing_results(database: Database) -> None:
    with LoopbackReceiver(default=Respond(200)) as rx:
        event_id = crash_then_recover(database, rx, "during-complete")
        assert ids_received(rx) == [event_id, event_id]


def test_four_postgres_workers_deliver_every_pair_once(tmp_path: Path) -> None:
    from transports.stores.postgres import PostgresStore

    url = pg.require_postgres()
    schema = pg.fresh_schema()
    database = Database(url, schema, PostgresStore(url, schema=schema))
    store = database.store
    events, endpoints = 150, 6
    lock = threading.Lock()
    open_pairs: set[tuple[str | None, str]] = set()
    overlaps: list[tuple[str | None, str]] = []
    received: Counter[tuple[str | None, str]] = Counter()
    workers_seen: Counter[str | None] = Counter()

    def handle(request: ReceivedRequest) -> Respond:
        pair = (request.header("webhook-id"), request.path_only)
        with lock:
            if pair in open_pairs:
                overlaps.append(pair)
            open_pairs.add(pair)
            received[pair] += 1
            workers_seen[request.header("user-agent")] += 1
        time.sleep(random.uniform(0, 0.005))
        with lock:
            open_pairs.discard(pair)
        return Respond(200)

    try:
        with LoopbackReceiver(default=Handler(handle)) as rx:
            paths = {
                active_endpoint(store, rx.url(f"/hook/{n}")): f"/hook/{n}" for n in range(endpoints)
            }
            with dispatchers(database, 4, "--max-in-flight", "8") as workers:
                results = operations.publish_many(
                    store,
                    platform_catalog(),
                    [("message.sent", message(i), None) for i in range(events)],
                    time.time(),
                )
                wait_all_done(store, events * endpoints, timeout=120)
                for worker in workers:
                    worker.stop()
            expected = {(r.event.id, f"/hook/{n}") for r in results for n in range(endpoints)}
            assert set(received) == expected
            assert overlaps == []
            records = {
                (d.event_id, paths[d.endpoint_id]): d for d in store.list_deliveries(limit=10**6)
            }
            assert {d.state for d in records.values()} == {DeliveryState.DELIVERED}
            for pair in expected:
                # At least once: a second send only after an earlier attempt got no 2xx
                # back (a worker lost its lease, or the answer came after the deadline).
                count = received[pair]
                outcomes = [a.outcome for a in records[pair].attempts]
                unanswered = [o for o in outcomes[:-1] if o is not Outcome.SUCCESS]
                assert count == 1 or unanswered, (pair, count, outcomes)
            assert len(workers_seen) > 1, "one worker did everything"
    finally:
        store.close()
