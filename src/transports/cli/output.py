"""How the ``webhooks`` command shows things: rich tables for people, ``--json`` for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import attrs
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


@attrs.frozen
class Column:
    """A listing's column: ``priority`` 0 is kept longest; ``shrink_to`` is the narrowest it
    may be cut to (with an ellipsis), None for one that is never cut (ids)."""

    header: str
    priority: int
    shrink_to: int | None = None


_GAP = 2  # the space between two columns of a ``table``


def fitted_table(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int
) -> tuple[Table, list[str]]:
    """A table of ``rows`` no wider than ``width``, and the headers of the columns left out.

    Columns are admitted by priority, each at its full width, or at
    ``shrink_to`` when it may be cut; the room left then widens the cut ones,
    most important first. Ids are never cut and never wrapped.
    """
    natural = [max([len(c.header), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]
    need = [natural[i] if c.shrink_to is None else min(natural[i], c.shrink_to)
            for i, c in enumerate(columns)]  # fmt: skip
    order = sorted(range(len(columns)), key=lambda i: columns[i].priority)
    kept: list[int] = []
    for i in order:
        if sum(need[k] + _GAP for k in kept) + need[i] <= width or not kept:
            kept.append(i)
    room = width - sum(need[k] for k in kept) - _GAP * (len(kept) - 1)
    given = {k: need[k] for k in kept}
    for k in kept:
        grow = max(0, min(natural[k] - given[k], room))
        given[k] += grow
        room -= grow
    grid = Table(show_edge=False, box=None, pad_edge=False, header_style="bold")
    for i in sorted(kept):
        if columns[i].shrink_to is None:
            grid.add_column(columns[i].header, no_wrap=True, min_width=given[i])
        else:
            grid.add_column(columns[i].header, no_wrap=True, overflow="ellipsis", width=given[i])
    for row in rows:
        grid.add_row(*(row[i] for i in sorted(kept)))
    return grid, [columns[i].header for i in range(len(columns)) if i not in kept]


def print_table(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> None:
    """Print ``fitted_table`` at the console's width, naming the columns left out."""
    grid, dropped = fitted_table(columns, rows, console.width)
    console.print(grid)
    if dropped:
        console.print(
            f"({', '.join(dropped)} left out at {console.width} columns; --json shows everything)",
            markup=False,
        )


def fields(rows: list[tuple[str, Any]]) -> None:
    """Print ``name: value`` lines, skipping empty values."""
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        if value not in (None, "", [], ()):
            console.print(f"{name + ':':<{width + 1}} {value}", markup=False)


def stderr_console() -> Console:
    """A console on standard error (progress bars, so stdout stays clean for scripts)."""
    return Console(file=sys.stderr, highlight=False)
