"""The PostgreSQL server the tests use, and throw-away schemas in it.

Tests that need PostgreSQL call ``require_postgres()``: it skips them with
instructions on a machine without the server, and fails them when ``CI`` is
set (CI must run them). Each store gets its own schema, dropped at the end of
the session.
"""

from __future__ import annotations

import os
import secrets

import psycopg
import pytest

URL = os.environ.get("WEBHOOKS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
_created: list[str] = []
_problem: dict[str, str] = {}


def require_postgres() -> str:
    """The server's URL; skip (or, under CI, fail) when it cannot be reached."""
    if URL not in _problem:
        try:
            with psycopg.connect(URL, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            _problem[URL] = ""
        except psycopg.Error as exc:
            _problem[URL] = f"PostgreSQL at {URL} is unreachable ({exc})".strip()
    if problem := _problem[URL]:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}; CI must run the PostgreSQL tests")
        pytest.skip(
            f"{problem}. Start PostgreSQL (pg_ctlcluster --skip-systemctl-redirect "
            "<version> main start) or point WEBHOOKS_TEST_POSTGRES at a server to run these tests"
        )
    return URL


def fresh_schema() -> str:
    """A new schema name, dropped when the test session ends."""
    name = f"wht_{secrets.token_hex(6)}"
    _created.append(name)
    return name


def drop_schemas() -> None:
    """Drop every schema ``fresh_schema`` handed out."""
    if not _created:
        return
    with psycopg.connect(URL, autocommit=True) as conn:
        for name in _created:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    _created.clear()
