"""``webhooks publish``: store an event and fan it out to every subscribed endpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from transports.cli.context import WAIT_OPTION, Context, UserError, poll
from transports.cli.output import console, delivery_json, print_json
from transports.driving import operations
from transports.stores.interface import DeliveryFilter
from webhook_core import Delivery, PayloadError, platform_catalog, validate_event_name

pass_context = click.make_pass_decorator(Context)


def parse_data(text: str | None) -> Any:
    """``--data``: a JSON object, or ``@FILE`` holding one; None if not given."""
    if text is None:
        return None
    source = "--data"
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read --data file {str(path)!r}: {exc}") from None
        source = str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{source} must be a JSON object, not a {type(data).__name__}")
    return data


@click.command()
@click.argument("event")
@click.option(
    "--data",
    metavar="JSON|@FILE",
    help="The event's data: a JSON object, or @FILE to read one from a file.",
)
@WAIT_OPTION
@click.option("--quiet", "-q", is_flag=True, help="Print only the event id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def publish(
    state: Context,
    event: str,
    data: str | None,
    wait_seconds: float | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Publish EVENT (e.g. message.delivered); prints its id and how many deliveries it made."""
    catalog = platform_catalog()
    if event not in catalog:
        validate_event_name(event)
        raise UserError(
            f"unknown event {event!r}; the events are: {', '.join(t.name for t in catalog)}"
        )
    payload = parse_data(data)
    if payload is None:
        payload = {}
    try:
        result = operations.publish(
            state.store(), catalog, event, payload, time.time(), tenant=state.tenant
        )
    except PayloadError as exc:
        raise UserError(f"{exc} (give the event's data with --data JSON or --data @FILE)") from None
    if quiet:
        console.print(result.event.id, markup=False)
    elif not as_json:
        noun = "delivery" if result.deliveries == 1 else "deliveries"
        console.print(
            f"published {result.event.id} ({event}): {result.deliveries} {noun}", markup=False
        )
    finished = [] if wait_seconds is None else _await_deliveries(state, result, wait_seconds)
    if as_json:
        document: dict[str, Any] = {
            "event_id": result.event.id,
            "event": event,
            "deliveries": result.deliveries,
        }
        if wait_seconds is not None:
            document["results"] = [delivery_json(d) for d in finished]
        print_json(document)
    elif not quiet:
        for d in finished:
            last = d.attempts[-1] if d.attempts else None
            detail = ""
            if last is not None:
                answer = f"HTTP {last.status}" if last.status is not None else last.error
                detail = f" (attempt {last.number}: {answer})"
            console.print(f"{d.id} to {d.endpoint_id}: {d.state.value}{detail}", markup=False)


def _await_deliveries(
    state: Context, result: operations.PublishResult, timeout: float
) -> list[Delivery]:
    """The event's deliveries once none is waiting or in flight (or as they are at ``timeout``)."""
    store = state.store()
    where = DeliveryFilter(event_id=result.event.id, tenant=state.tenant)

    def settled() -> list[Delivery] | None:
        found = store.list_deliveries(where, limit=max(result.deliveries, 1))
        return found if all(d.is_terminal for d in found) else None

    return poll(settled, timeout) or store.list_deliveries(where, limit=max(result.deliveries, 1))
