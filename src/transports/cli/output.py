"""How the ``webhooks`` command shows things: rich tables for people, ``--json`` for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from transports.driving.documents import attempt_json, delivery_json, endpoint_json, when

__all__ = [
    "attempt_json",
    "console",
    "delivery_json",
    "endpoint_json",
    "fields",
    "print_json",
    "stderr_console",
    "table",
    "when",
]

# Piped output is not cut to 80 columns: ids and URLs must survive for scripts and logs.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 240)


def print_json(document: Any) -> None:
    """Write ``document`` as indented JSON to standard output."""
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def table(*columns: str) -> Table:
    """A plain table; id columns are never wrapped, so they can be copied."""
    grid = Table(show_edge=False, box=None, pad_edge=False, header_style="bold")
    for column in columns:
        grid.add_column(column, no_wrap=column in ("ID", "ENDPOINT"), overflow="fold")
    return grid


def fields(rows: list[tuple[str, Any]]) -> None:
    """Print ``name: value`` lines, skipping empty values."""
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        if value not in (None, "", [], ()):
            console.print(f"{name + ':':<{width + 1}} {value}", markup=False)


def stderr_console() -> Console:
    """A console on standard error (progress bars, so stdout stays clean for scripts)."""
    return Console(file=sys.stderr, highlight=False)
