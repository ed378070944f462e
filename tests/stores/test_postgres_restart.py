"""Four dispatcher processes ride out a PostgreSQL restart in the middle of a run.

The restart is real: a throw-away cluster of its own is created for this
module (``pg_createcluster``, trust authentication on a free port, dropped at
the end whatever happens), because the shared test server on port 5432 serves
other tests at the same time and must not be restarted. Creating a cluster
needs the postgresql-common tools and root; without them the tests skip (and
fail under ``CI``, which must run them).

Each test runs four dispatchers (``tests.stores.dispatcher_process``) of one
driver on one schema, publishes 100 events to three loopback receivers (300
deliveries) that answer in 20-50 ms, so the run lasts a few seconds, and
restarts the cluster (``pg_ctlcluster stop``, fast shutdown: every session
is terminated; it comes back half a second later) once a quarter of them
arrived. Afterwards every delivery has
arrived and is ``delivered`` in the store, every dispatcher is still running
and stops cleanly, and no delivery was ever received twice at once (each
receiver notes when a request for a delivery id starts and ends; a second
request while one is open fails the test). Receiving one again after the
first ended is allowed: delivery is at least once, and a result lost in the
restart is retried once its lease ends.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from tests.stores.test_crash_safety import (
    Database,
    active_endpoint,
    dispatchers,
    message,
    wait_all_done,
)
from transports.driving import operations
from transports.stores.postgres import PostgresStore
from transports.testing import Handler, LoopbackReceiver, ReceivedRequest, Respond
from webhook_core import DeliveryState, platform_catalog

pytestmark = pytest.mark.postgres

TOOLS = ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster")
EVENTS = 100
RECEIVERS = 3
TOTAL = EVENTS * RECEIVERS
RESTART_AFTER = TOTAL // 4  # deliveries received before the restart
DOWN = 0.5  # seconds the server stays down


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the PostgreSQL restart tests")
    pytest.skip(f"{reason}: the PostgreSQL restart tests need a throw-away cluster of their own")


def _version() -> str | None:
    """The newest PostgreSQL major version installed for postgresql-common."""
    versions = [
        p.name
        for p in Path("/usr/lib/postgresql").glob("*")
        if re.fullmatch(r"\d+", p.name) and (p / "bin" / "postgres").exists()
    ]
    return max(versions, key=int) if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@attrs.define
class Cluster:
    """A PostgreSQL cluster made for these tests only."""

    version: str
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, action: str) -> None:
        run(["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action])


def run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} failed ({done.returncode}): {done.stdout}{done.stderr}"
        )


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        _unavailable(f"{', '.join(missing)} not found (install postgresql-common)")
    if os.geteuid() != 0:
        _unavailable("creating a cluster needs root")
    version = _version()
    if version is None:
        _unavailable("no PostgreSQL server under /usr/lib/postgresql")
    assert version is not None
    made = Cluster(version, f"whrestart{os.getpid()}x{secrets.token_hex(3)}", _free_port())
    try:
        run(
            [
                "pg_createcluster",
                version,
                made.name,
                "--port",
                str(made.port),
                "--quiet",
                "--start-conf=manual",
                # Speed only: every shutdown here is clean (fast), never a crash.
                "--pgoption",
                "fsync=off",
                "--pgoption",
                "full_page_writes=off",
                "--",
                "--auth=trust",
            ]
        )
        made.ctl("start")
        yield made
    finally:
        subprocess.run(
            ["pg_dropcluster", "--stop", version, made.name],
            capture_output=True,
            timeout=120,
            check=False,
        )


@attrs.define
class Receipts:
    """Requests per delivery id, and any that overlapped another for the same id."""

    lock: threading.Lock = attrs.field(factory=threading.Lock)
    open: Counter[str] = attrs.field(factory=Counter)
    received: Counter[str] = attrs.field(factory=Counter)
    overlaps: list[str] = attrs.field(factory=list)

    def handle(self, request: ReceivedRequest) -> Respond:
        delivery = request.header("X-Netasampark-Delivery") or "(no delivery id)"
        with self.lock:
            self.open[delivery] += 1
            if self.open[delivery] > 1:
                self.overlaps.append(delivery)
            self.received[delivery] += 1
        try:
            time.sleep(random.uniform(0.02, 0.05))
        finally:
            with self.lock:
                self.open[delivery] -= 1
        return Respond(200)

    def count(self) -> int:
        with self.lock:
            return sum(self.received.values())


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(0.01)


@pytest.mark.parametrize("driver", ["threads", "asyncio", "trio"])
def test_four_dispatchers_deliver_everything_across_a_postgres_restart(
    cluster: Cluster, driver: str
) -> None:
    schema = f"restart_{driver}_{secrets.token_hex(3)}"
    setup = PostgresStore(cluster.url, schema=schema)
    receipts = Receipts()
    with contextlib.ExitStack() as stack:
        stack.callback(setup.close)
        receivers = [
            stack.enter_context(LoopbackReceiver(default=Handler(receipts.handle)))
            for _ in range(RECEIVERS)
        ]
        for rx in receivers:
            active_endpoint(setup, rx.url("/hook"))
        database = Database(cluster.url, schema, setup)
        with dispatchers(database, 4, "--driver", driver, "--max-in-flight", "2") as workers:
            operations.publish_many(
                setup,
                platform_catalog(),
                [("message.sent", message(i), None) for i in range(EVENTS)],
                time.time(),
            )
            setup.close()  # the test reads through a store opened after the restart
            wait_until(
                lambda: receipts.count() >= RESTART_AFTER,
                30,
                f"{RESTART_AFTER} deliveries did not arrive",
            )
            cluster.ctl("stop")  # fast: every session is terminated
            at_stop = receipts.count()
            time.sleep(DOWN)
            cluster.ctl("start")
            assert at_stop < TOTAL, "every delivery arrived before the server stopped"
            check = PostgresStore(cluster.url, schema=schema)
            stack.callback(check.close)
            wait_all_done(check, TOTAL, timeout=90)
            for worker in workers:
                assert worker.process.poll() is None, (
                    f"a dispatcher exited with {worker.process.returncode}: {worker.lines}"
                )
            for worker in workers:
                worker.stop()
        records = check.list_deliveries(limit=10**6)
        assert len(records) == TOTAL
        not_delivered = [
            (d.id, d.state.value) for d in records if d.state is not DeliveryState.DELIVERED
        ]
        assert not_delivered == []
        assert set(receipts.received) == {d.id for d in records}
        assert receipts.overlaps == [], "a delivery was received twice at once"
        assert receipts.count() > at_stop, "nothing was sent after the restart"
