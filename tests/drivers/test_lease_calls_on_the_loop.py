"""The async service makes its claims and results on the event loop's thread when the
SQLite store can make them without waiting, and in a worker thread when it cannot.

Handed to a worker thread, each of these calls cost more in thread hand-offs
than SQLite's own work (see ``transports.stores.sqlite``). These tests run
the service on a real SQLite file against a receiver on 127.0.0.1, and hold
the file's write lock from a second connection for real.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import anyio
import attrs
import pytest

from transports.aio.service import WebhookService
from transports.driving import operations
from transports.stores.interface import Claimed
from transports.stores.sqlite import SQLiteStore
from transports.testing import LOOPBACK_NETWORKS, LoopbackReceiver, Respond
from webhook_core import DeliveryState, EndpointState, platform_catalog

MESSAGE = {"message_id": "msg_1", "channel": "sms", "to": "+919876543210", "status": "sent"}


class ThreadsSeen(SQLiteStore):
    """A SQLite store that notes the thread of each claim."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.claim_threads: set[int] = set()

    def claim(self, now: float, limit: int, worker: str, lease_until: float) -> list[Claimed]:
        self.claim_threads.add(threading.get_ident())
        return super().claim(now, limit, worker, lease_until)


def service(store: SQLiteStore) -> WebhookService:
    return WebhookService(store, allow_http=True, allowed_networks=LOOPBACK_NETWORKS)


def with_active_endpoint(store: SQLiteStore, url: str) -> None:
    endpoint = operations.add_endpoint(store, url, 0.0, allow_http=True)
    store.save_endpoint(attrs.evolve(endpoint, state=EndpointState.ACTIVE, verification_token=None))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_claims_are_made_on_the_event_loops_thread(backend: str, tmp_path: Path) -> None:
    with LoopbackReceiver(default=Respond(200)) as rx, ThreadsSeen(tmp_path / "h.db") as store:
        with_active_endpoint(store, rx.url("/hook"))
        for _ in range(5):  # published beforehand: a publish's commit makes claims wait
            operations.publish(store, platform_catalog(), "message.sent", MESSAGE, 0.0)

        async def main() -> int:
            async with service(store) as hooks:
                await hooks.drain()
            return threading.get_ident()

        loop_thread = anyio.run(main, backend=backend)
        assert store.claim_threads == {loop_thread}
        assert store.count_deliveries() == 5
        assert len(store.list_deliveries()) == len(rx.requests) == 5
        assert {d.state for d in store.list_deliveries()} == {DeliveryState.DELIVERED}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_loop_runs_on_while_another_process_holds_the_write_lock(
    backend: str, tmp_path: Path
) -> None:
    """Claims and results that would wait go to a worker thread; the loop's other tasks
    keep running, and everything is delivered once the lock is given back."""
    with LoopbackReceiver(default=Respond(200)) as rx, ThreadsSeen(tmp_path / "h.db") as store:
        with_active_endpoint(store, rx.url("/hook"))
        for _ in range(5):
            operations.publish(store, platform_catalog(), "message.sent", MESSAGE, 0.0)
        other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")

        async def main() -> tuple[float, int]:
            async with service(store) as hooks:
                began = time.monotonic()
                for _ in range(30):  # the loop turning while the lock is held
                    await anyio.sleep(0.01)
                turning = time.monotonic() - began
                sent_meanwhile = len(rx.requests)
                other.execute("ROLLBACK")
                await hooks.drain()
            return turning, sent_meanwhile

        try:
            turning, sent_meanwhile = anyio.run(main, backend=backend)
        finally:
            other.close()
        # A claim waiting on the loop's thread would hold it for the 30 s busy timeout.
        assert turning < 10, f"the loop stood still for {turning:.1f} s"
        assert sent_meanwhile == 0, "a claim was made while another connection wrote"
        assert len(store.claim_threads) > 1, "no claim went to a worker thread"
        assert len(rx.requests) == 5
        assert {d.state for d in store.list_deliveries()} == {DeliveryState.DELIVERED}
