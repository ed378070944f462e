"""``webhooks publish``: store an event and fan it out to every subscribed endpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from transports import operations
from transports.cli.context import Context, UserError
from transports.cli.output import console, print_json
from webhook_core import PayloadError, platform_catalog, validate_event_name

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
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def publish(state: Context, event: str, data: str | None, as_json: bool) -> None:
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
        result = operations.publish(state.store(), catalog, event, payload, time.time())
    except PayloadError as exc:
        raise UserError(f"{exc} (give the event's data with --data JSON or --data @FILE)") from None
    if as_json:
        print_json({"event_id": result.event.id, "event": event, "deliveries": result.deliveries})
        return
    noun = "delivery" if result.deliveries == 1 else "deliveries"
    console.print(
        f"published {result.event.id} ({event}): {result.deliveries} {noun}", markup=False
    )
