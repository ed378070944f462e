"""``webhooks deliveries``: list, inspect and replay deliveries."""

from __future__ import annotations

import re
import time

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from transports.cli.context import Context, UserError
from transports.cli.output import (
    console,
    delivery_json,
    fields,
    print_json,
    stderr_console,
    table,
    when,
)
from transports.driving import operations
from transports.stores.interface import DeliveryFilter
from webhook_core import DeliveryState, PayloadError, parse_rfc3339

pass_context = click.make_pass_decorator(Context)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])\Z")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_since(text: str, now: float) -> float:
    """A time: RFC 3339 (``2024-01-01T00:00:00Z``) or an age (``90s``, ``30m``, ``2h``, ``7d``)."""
    match = _DURATION.match(text.strip().lower())
    if match:
        return now - float(match.group(1)) * _UNIT[match.group(2)]
    try:
        return parse_rfc3339(text.strip(), "--failed-since")
    except PayloadError:
        raise UserError(
            f"--failed-since {text!r} is neither an RFC 3339 time (2024-01-01T00:00:00Z) "
            "nor an age such as 30m, 2h or 7d"
        ) from None


@click.group()
def deliveries() -> None:
    """Inspect and replay deliveries (one per event and endpoint)."""


@deliveries.command(name="list")
@click.option(
    "--state",
    "state_name",
    type=click.Choice([s.value for s in DeliveryState]),
    help="Only deliveries in this state.",
)
@click.option("--endpoint", "endpoint_id", metavar="ID", help="Only deliveries to this endpoint.")
@click.option("--event", "event_id", metavar="ID", help="Only deliveries of this event.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="Print only the delivery ids.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def list_(
    state: Context,
    state_name: str | None,
    endpoint_id: str | None,
    event_id: str | None,
    limit: int,
    quiet: bool,
    as_json: bool,
) -> None:
    """List deliveries, newest last."""
    store = state.store()
    where = DeliveryFilter(
        DeliveryState(state_name) if state_name else None,
        endpoint_id,
        event_id,
        tenant=state.tenant,
    )
    total = store.count_deliveries(where)
    found = store.list_deliveries(where, limit=limit, offset=max(total - limit, 0))
    if as_json:
        print_json([delivery_json(d) for d in found])
        return
    if quiet:
        for d in found:
            console.print(d.id, markup=False)
        return
    if not found:
        console.print("no deliveries match")
        return
    names: dict[str, str] = {}
    grid = table("ID", "EVENT", "ENDPOINT", "STATE", "ATTEMPTS", "CREATED", "NOTE")
    for d in found:
        if d.event_id not in names:
            event = store.get_event(d.event_id)
            names[d.event_id] = event.name if event is not None else "?"
        note = d.reason or ""
        if d.state is DeliveryState.RETRY_SCHEDULED:
            note = f"next attempt {when(d.next_attempt_at)}"
        grid.add_row(
            d.id,
            names[d.event_id],
            d.endpoint_id,
            d.state.value,
            str(d.attempts_made),
            when(d.created_at),
            note,
        )
    console.print(grid)
    if total > len(found):
        console.print(f"(the last {len(found)} of {total}; use --limit for more)")


@deliveries.command()
@click.argument("delivery_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def show(state: Context, delivery_id: str, as_json: bool) -> None:
    """Show one delivery with its event and every attempt."""
    store = state.store()
    delivery = operations.find_delivery(store, delivery_id, state.tenant)
    if delivery is None:
        raise operations.NotFound(f"no delivery with id {delivery_id!r}")
    event = store.get_event(delivery.event_id)
    if as_json:
        print_json(delivery_json(delivery, event))
        return
    fields(
        [
            ("id", delivery.id),
            ("event", f"{event.name} {event.id}" if event else delivery.event_id),
            ("endpoint", delivery.endpoint_id),
            ("state", delivery.state.value),
            ("created", when(delivery.created_at)),
            ("next attempt", when(delivery.next_attempt_at)),
            ("reason", delivery.reason),
            ("replay of", delivery.replay_of),
        ]
    )
    if event is not None:
        console.print(f"body:         {event.body.decode('utf-8')}", markup=False)
    if not delivery.attempts:
        console.print("no attempts yet")
        return
    grid = table("#", "STARTED", "TOOK", "OUTCOME", "STATUS", "DETAIL")
    for a in delivery.attempts:
        grid.add_row(
            str(a.number),
            when(a.started_at),
            f"{(a.ended_at - a.started_at) * 1000:.0f} ms",
            a.outcome.value,
            "" if a.status is None else str(a.status),
            a.error or (a.response_excerpt or "")[:80],
        )
    console.print(grid)


@deliveries.command()
@click.argument("delivery_id", metavar="[ID]", required=False)
@click.option(
    "--failed-since",
    metavar="TIME",
    help="Replay every failed delivery created since TIME (RFC 3339, or an age: 30m, 2h, 7d).",
)
@click.option("--endpoint", "endpoint_id", metavar="ID", help="With --failed-since: one endpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@pass_context
def replay(
    state: Context,
    delivery_id: str | None,
    failed_since: str | None,
    endpoint_id: str | None,
    as_json: bool,
) -> None:
    """Send a delivered or failed delivery's event again (ID), or all failed since a time."""
    now = time.time()
    if (delivery_id is None) == (failed_since is None):
        raise UserError("give either a delivery ID or --failed-since TIME")
    if delivery_id is not None:
        fresh = operations.replay_delivery(state.store(), delivery_id, now, state.tenant)
        if as_json:
            print_json(delivery_json(fresh))
        else:
            console.print(f"replaying {delivery_id} as {fresh.id}", markup=False)
        return
    assert failed_since is not None
    since = parse_since(failed_since, now)
    with Progress(
        TextColumn("replaying failed deliveries"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr_console(),
        transient=False,
    ) as progress:
        task = progress.add_task("replay", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        replayed = operations.replay_failed_since(
            state.store(),
            since,
            now,
            endpoint_id=endpoint_id,
            on_progress=on_progress,
            tenant=state.tenant,
        )
    if as_json:
        print_json({"replayed": replayed, "since": when(since)})
    else:
        console.print(f"replayed {replayed} failed deliveries created since {when(since)}")
