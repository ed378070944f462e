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

from webhook_core import Attempt, Delivery, Endpoint, Event, rfc3339

# Piped output is not cut to 80 columns: ids and URLs must survive for scripts and logs.
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 240)


def when(epoch: float | None) -> str | None:
    """An RFC 3339 time, or None."""
    return None if epoch is None else rfc3339(epoch)


def endpoint_json(endpoint: Endpoint, *, secrets: bool = False) -> dict[str, Any]:
    """An endpoint as a JSON object (its secrets only when asked for)."""
    document: dict[str, Any] = {
        "id": endpoint.id,
        "url": endpoint.url,
        "state": endpoint.state.value,
        "events": list(endpoint.filters),
        "description": endpoint.description,
        "created_at": when(endpoint.created_at),
        "verified_url": endpoint.verified_url,
        "disabled_reason": endpoint.disabled_reason,
        "last_error": endpoint.last_error,
        "headers": dict(endpoint.headers),
    }
    if secrets:
        document["secrets"] = [
            {"secret": s.value, "created_at": when(s.created_at), "expires_at": when(s.expires_at)}
            for s in endpoint.secrets
        ]
    return document


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    """One attempt as a JSON object."""
    return {
        "number": attempt.number,
        "started_at": when(attempt.started_at),
        "ended_at": when(attempt.ended_at),
        "duration_ms": round((attempt.ended_at - attempt.started_at) * 1000, 1),
        "outcome": attempt.outcome.value,
        "status": attempt.status,
        "error": attempt.error,
        "response_excerpt": attempt.response_excerpt,
    }


def delivery_json(delivery: Delivery, event: Event | None = None) -> dict[str, Any]:
    """A delivery as a JSON object, with its attempts (and its event, when given)."""
    document: dict[str, Any] = {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "endpoint_id": delivery.endpoint_id,
        "state": delivery.state.value,
        "created_at": when(delivery.created_at),
        "next_attempt_at": when(delivery.next_attempt_at),
        "reason": delivery.reason,
        "replay_of": delivery.replay_of,
        "attempts": [attempt_json(a) for a in delivery.attempts],
    }
    if event is not None:
        document["event"] = {
            "id": event.id,
            "name": event.name,
            "created_at": when(event.created_at),
            "body": json.loads(event.body),
        }
    return document


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
