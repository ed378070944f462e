"""Choosing a store from one string: the ``--db`` option and ``WEBHOOKS_DB``.

Accepted forms:

* nothing: ``$WEBHOOKS_DB`` if set, else the SQLite file ``webhooks.db`` in
  the working directory;
* ``sqlite:///relative/or/absolute/path.db``, ``sqlite:path.db`` or a plain
  file path: a SQLite file;
* ``postgresql://...`` or ``postgres://...``: a PostgreSQL database (needs the
  ``postgres`` extra);
* ``memory:``: an in-memory store (tests and demos; not durable).
"""

from __future__ import annotations

import os

from transports.stores.interface import Store
from transports.stores.memory import MemoryStore
from transports.stores.sqlite import DEFAULT_PATH, SQLiteStore
from webhook_core import ConfigError

ENV_VAR = "WEBHOOKS_DB"
POSTGRES_EXTRA = "pip install 'webhooks-delivery[postgres]'"


def resolve_db_url(url: str | None = None) -> str:
    """The database URL in effect: ``url``, else ``$WEBHOOKS_DB``, else ``webhooks.db``."""
    if url:
        return url
    return os.environ.get(ENV_VAR) or DEFAULT_PATH


def open_store(url: str | None = None) -> Store:
    """Open (and migrate) the store that ``url`` names; see the module docstring."""
    target = resolve_db_url(url)
    scheme, sep, rest = target.partition(":")
    scheme = scheme.lower()
    if sep and scheme in ("postgresql", "postgres"):
        try:
            from transports.stores.postgres import PostgresStore  # noqa: PLC0415 (optional extra)
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("psycopg"):
                raise
            raise ConfigError(
                f"a postgresql:// database needs {exc.name}, which is not installed; "
                f"install the postgres extra: {POSTGRES_EXTRA}"
            ) from None
        return PostgresStore(target)
    if sep and scheme == "memory":
        return MemoryStore()
    if sep and scheme == "sqlite":
        path = rest.removeprefix("//").removeprefix("/") if rest.startswith("//") else rest
        if not path:
            raise ConfigError(f"database URL {target!r} names no SQLite file")
        return SQLiteStore(path)
    if sep and len(scheme) > 1 and "/" not in scheme and "\\" not in scheme:
        raise ConfigError(
            f"database URL {target!r} has unknown scheme {scheme!r}; "
            "use a file path, sqlite:///path, postgresql://... or memory:"
        )
    return SQLiteStore(target)
