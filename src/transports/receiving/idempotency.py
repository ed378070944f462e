"""Idempotency stores: remember which event ids a receiver has taken, for a while.

``claim(key, now, expires_at)`` is atomic: it records ``key`` and returns True
when no unexpired record of it exists, and returns False (a duplicate) when
one does. ``release(key)`` forgets a key whose handler failed, so the sender's
next attempt is handled again. Records expire after the receiver's TTL and
are purged as claims go by.

Stores that block (``blocking = True``) are called from a worker thread by
the ASGI adapter.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Protocol

_PURGE_EVERY = 1000


class IdempotencyStore(Protocol):
    """Where a receiver records the event ids it has taken."""

    blocking: bool

    def claim(self, key: str, now: float, expires_at: float) -> bool:
        """Record ``key`` until ``expires_at``; False if an unexpired record already exists."""
        ...

    def release(self, key: str) -> None:
        """Forget ``key`` (its handler failed; let the sender's retry through)."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


class MemoryIdempotencyStore:
    """Event ids in a dict: one process, lost on restart."""

    blocking = False

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()
        self._claims = 0

    def claim(self, key: str, now: float, expires_at: float) -> bool:
        """Record ``key`` until ``expires_at``; False if an unexpired record already exists."""
        with self._lock:
            self._claims += 1
            if self._claims % _PURGE_EVERY == 0:
                self._expiry = {k: t for k, t in self._expiry.items() if t > now}
            current = self._expiry.get(key)
            if current is not None and current > now:
                return False
            self._expiry[key] = expires_at
            return True

    def release(self, key: str) -> None:
        """Forget ``key``."""
        with self._lock:
            self._expiry.pop(key, None)

    def __len__(self) -> int:
        return len(self._expiry)

    def close(self) -> None:
        """Nothing to release."""


class SQLiteIdempotencyStore:
    """Event ids in a SQLite table (``webhook_receipts``): survives restarts, one host."""

    blocking = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS webhook_receipts "
            "(key TEXT PRIMARY KEY, expires_at REAL NOT NULL)"
        )
        self._claims = 0

    def claim(self, key: str, now: float, expires_at: float) -> bool:
        """Record ``key`` until ``expires_at``; False if an unexpired record already exists."""
        with self._lock:
            self._claims += 1
            if self._claims % _PURGE_EVERY == 0:
                self._db.execute("DELETE FROM webhook_receipts WHERE expires_at <= ?", (now,))
            cursor = self._db.execute(
                "INSERT INTO webhook_receipts (key, expires_at) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE webhook_receipts.expires_at <= ?",
                (key, expires_at, now),
            )
            return cursor.rowcount == 1

    def release(self, key: str) -> None:
        """Forget ``key``."""
        with self._lock:
            self._db.execute("DELETE FROM webhook_receipts WHERE key = ?", (key,))

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()
