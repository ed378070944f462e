"""What the ``webhooks`` subcommands share: the store behind ``--db`` and user errors.

A user error (bad URL, unknown event name, malformed JSON, unknown id,
unreachable database) is printed as one line and exits with status 2; no
traceback.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

import click

from transports.http.guard import OutboundPolicy
from transports.stores.interface import Store
from transports.stores.url import open_store, resolve_db_url
from webhook_core import DEFAULT_TENANT, WebhookError, validate_tenant

T = TypeVar("T")


class UserError(click.ClickException):
    """A mistake in what the user typed or configured: one line, exit status 2."""

    exit_code = 2


def database_errors() -> tuple[type[Exception], ...]:
    """The exceptions a database driver raises (sqlite3's, and psycopg's when installed)."""
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)
    try:
        import psycopg  # noqa: PLC0415 (optional extra)
    except ImportError:
        return errors
    return (*errors, psycopg.Error)


class Context:
    """What every subcommand shares: the database URL, the store (opened on first use) and
    the tenant whose records the commands see (``--tenant``)."""

    def __init__(self, db: str | None, tenant: str = DEFAULT_TENANT) -> None:
        self.db_url = resolve_db_url(db)
        self.tenant = validate_tenant(tenant)
        self._store: Store | None = None

    def store(self) -> Store:
        """The store that ``--db`` names, opened (and migrated) on first use."""
        if self._store is None:
            try:
                self._store = open_store(self.db_url)
            except WebhookError:
                raise
            except (OSError, *database_errors()) as exc:  # type: ignore[misc]
                raise UserError(
                    f"cannot open the database {self.db_url!r}: {first_line(exc)}"
                ) from None
        return self._store

    def close(self) -> None:
        """Close the store if it was opened."""
        if self._store is not None:
            self._store.close()
            self._store = None


def outbound_from_env() -> OutboundPolicy:
    """``WEBHOOKS_ALLOW_HTTP`` and ``WEBHOOKS_ALLOWED_NETWORKS``; a malformed value is exit 2."""
    return OutboundPolicy.from_env()


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (drivers' errors can run to many lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def poll(check: Callable[[], T | None], timeout: float, interval: float = 0.1) -> T | None:
    """Call ``check`` until it returns something other than None, for at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


WAIT_OPTION = click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Wait up to SECONDS for the running dispatcher to finish, and show the result.",
)
