"""PostgreSQL for the benchmarks: where the server is, and a store kind for the driver rows.

The server is ``$WEBHOOKS_TEST_POSTGRES`` (default: the local ``test``
database with trust auth). Each benchmark row gets a schema of its own, named
after the row's temporary directory, dropped when the row ends.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from transports.stores.interface import Store

PG_URL = os.environ.get("WEBHOOKS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_reachable() -> bool:
    """True if the server at ``PG_URL`` accepts a connection within 3 s."""
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3):
            return True
    except Exception:
        return False


def schema_for(directory: Path) -> str:
    """The schema a row running in ``directory`` uses."""
    return "bench_" + hashlib.sha256(str(directory).encode()).hexdigest()[:16]


def open_postgres(directory: Path) -> Store:
    """A PostgreSQL store in the row's own schema (created on first use)."""
    from transports.stores.postgres import PostgresStore

    return PostgresStore(PG_URL, schema=schema_for(directory))


def drop_postgres(directory: Path) -> None:
    """Drop the row's schema."""
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema_for(directory)} CASCADE")
