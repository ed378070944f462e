"""Choosing a store from a URL, and the SQLite default when nothing is configured."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import pg
from transports.stores.memory import MemoryStore
from transports.stores.sqlite import SQLiteStore
from transports.stores.url import open_store
from transports.sync.service import ThreadedWebhookService
from webhook_core import ConfigError


def test_nothing_configured_means_webhooks_db_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WEBHOOKS_DB", raising=False)
    hooks = ThreadedWebhookService()
    assert isinstance(hooks.store, SQLiteStore)
    assert (tmp_path / "webhooks.db").exists()
    hooks.store.close()


def test_webhooks_db_names_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOKS_DB", str(tmp_path / "elsewhere.db"))
    store = open_store()
    assert isinstance(store, SQLiteStore) and store.path == tmp_path / "elsewhere.db"
    store.close()


@pytest.mark.parametrize(
    ("url", "relative"),
    [("sqlite:///a.db", "a.db"), ("sqlite:b.db", "b.db"), ("c.db", "c.db")],
)
def test_sqlite_spellings(
    url: str, relative: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store(url)
    assert isinstance(store, SQLiteStore) and store.path == Path(relative)
    store.close()


def test_an_absolute_sqlite_url(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/abs.db")
    assert isinstance(store, SQLiteStore) and store.path == tmp_path / "abs.db"
    store.close()


def test_memory_and_postgres_urls() -> None:
    assert isinstance(open_store("memory:"), MemoryStore)
    from transports.stores.postgres import PostgresStore

    store = open_store(pg.require_postgres())
    assert isinstance(store, PostgresStore) and store.schema == "webhooks"
    store.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://localhost/db", "unknown scheme 'mysql'"),
        ("sqlite:", "names no SQLite file"),
        ("/nonexistent-dir/x/webhooks.db", "cannot open SQLite database"),
    ],
)
def test_bad_urls_are_named(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_store(url)


def test_an_unreachable_postgres_is_one_clear_error() -> None:
    from transports.stores.postgres import PostgresStore

    with pytest.raises(ConfigError, match=r"cannot reach PostgreSQL at test on 127\.0\.0\.1:1"):
        PostgresStore("postgresql://postgres@127.0.0.1:1/test", connect_timeout=1)


def test_a_bad_schema_name_is_refused() -> None:
    from transports.stores.postgres import PostgresStore

    with pytest.raises(ConfigError, match="schema name 'Bad-Name'"):
        PostgresStore("postgresql://postgres@127.0.0.1:1/test", schema="Bad-Name")
