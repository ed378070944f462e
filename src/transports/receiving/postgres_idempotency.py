"""Event ids in PostgreSQL (``webhook_receipts``): one record shared by every receiver process."""

from __future__ import annotations

from typing import Any

try:
    import psycopg_pool
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "PostgresIdempotencyStore needs psycopg: pip install 'webhooks-delivery[postgres]'"
    ) from exc

_PURGE_EVERY = 1000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_receipts (
    key TEXT PRIMARY KEY,
    expires_at DOUBLE PRECISION NOT NULL
)
"""


class PostgresIdempotencyStore:
    """A receiver's idempotency records in its own table, through a psycopg connection pool."""

    blocking = True

    def __init__(self, conninfo: str, *, max_size: int = 4, **pool_options: Any) -> None:
        self._pool = psycopg_pool.ConnectionPool(
            conninfo, min_size=1, max_size=max_size, open=True, **pool_options
        )
        with self._pool.connection() as db:
            db.execute(_SCHEMA)
        self._claims = 0

    def claim(self, key: str, now: float, expires_at: float) -> bool:
        """Record ``key`` until ``expires_at``; False if an unexpired record already exists."""
        self._claims += 1
        with self._pool.connection() as db:
            if self._claims % _PURGE_EVERY == 0:
                db.execute("DELETE FROM webhook_receipts WHERE expires_at <= %s", (now,))
            cursor = db.execute(
                "INSERT INTO webhook_receipts (key, expires_at) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at "
                "WHERE webhook_receipts.expires_at <= %s",
                (key, expires_at, now),
            )
            return bool(cursor.rowcount == 1)

    def release(self, key: str) -> None:
        """Forget ``key``."""
        with self._pool.connection() as db:
            db.execute("DELETE FROM webhook_receipts WHERE key = %s", (key,))

    def close(self) -> None:
        """Close the pool."""
        self._pool.close()
