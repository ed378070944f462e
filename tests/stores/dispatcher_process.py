"""A dispatcher in a process of its own, for the crash and many-worker tests.

Run as ``python -m tests.stores.dispatcher_process --db URL [...]``. It prints
``ready`` once the service runs and serves until SIGTERM (graceful stop) or
until it is killed. ``--crash-at`` makes it SIGKILL itself at a chosen point,
for crashes that cannot be timed from outside:

* ``after-claim``: right after a claim commits, before anything is sent;
* ``during-complete``: while writing results: for SQLite after the write
  statement ran and before its transaction commits; for PostgreSQL (where the
  write is one statement, atomic on its own) as the statement is about to go.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import anyio

from transports.aio.service import WebhookService
from transports.stores.interface import Claimed, Store
from transports.stores.postgres import PostgresStore
from transports.stores.sqlite import SQLiteStore
from transports.sync.service import ThreadedWebhookService
from transports.testing import LOOPBACK_NETWORKS
from webhook_core import USER_AGENT, RetryPolicy

COMPLETE_SQLITE = ("UPDATE deliveries SET state = ", ", attempts = ")  # traced with values
COMPLETE_POSTGRES = "SET state = v.state"


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def open_store(db: str, schema: str | None) -> Store:
    if db.startswith("postgresql://"):
        return PostgresStore(db, schema=schema or "webhooks")
    return SQLiteStore(db)


def arm(store: Store, crash_at: str) -> None:
    """Make the process kill itself at ``crash_at``."""
    if crash_at == "after-claim":
        claim = store.claim

        def claim_then_die(
            now: float, limit: int, worker: str, lease_until: float
        ) -> list[Claimed]:
            claimed = claim(now, limit, worker, lease_until)
            if claimed:
                print("claimed", " ".join(c.delivery.id for c in claimed), flush=True)
                die()
            return claimed

        store.claim = claim_then_die  # type: ignore[method-assign]
    elif crash_at == "during-complete" and isinstance(store, SQLiteStore):

        def trace(statement: str) -> None:
            if statement.startswith(COMPLETE_SQLITE[0]) and COMPLETE_SQLITE[1] in statement:
                die()

        store._lease_db.set_trace_callback(trace)
    elif crash_at == "during-complete":
        import psycopg

        execute: Callable[..., Any] = psycopg.Connection.execute

        def die_before_writing(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(query, str) and COMPLETE_POSTGRES in query:
                die()
            return execute(self, query, *args, **kwargs)

        psycopg.Connection.execute = die_before_writing  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--schema")
    parser.add_argument("--driver", choices=("threads", "trio", "asyncio"), default="threads")
    parser.add_argument("--timeout", type=float, default=0.5)
    parser.add_argument("--lease", type=float, default=6.0)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--max-in-flight", type=int, default=16)
    parser.add_argument("--crash-at", choices=("never", "after-claim", "during-complete"))
    args = parser.parse_args()

    store = open_store(args.db, args.schema)
    if args.crash_at:
        arm(store, args.crash_at)
    options: dict[str, Any] = {
        "store": store,
        "policy": RetryPolicy(schedule=(0.2, 0.2, 0.2, 0.2), timeout=args.timeout),
        "allow_http": True,
        "allowed_networks": LOOPBACK_NETWORKS,
        "lease": args.lease,
        "poll_interval": args.poll,
        "max_in_flight": args.max_in_flight,
        "user_agent": f"{USER_AGENT} worker/{os.getpid()}",
    }
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if args.driver == "threads":
        with ThreadedWebhookService(**options):
            print("ready", flush=True)
            stop.wait()
        return

    async def serve() -> None:
        async with WebhookService(**options):
            print("ready", flush=True)
            await anyio.to_thread.run_sync(stop.wait)

    anyio.run(serve, backend=args.driver)


if __name__ == "__main__":
    main()
