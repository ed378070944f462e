"""``webhooks events``: the events that can be published and subscribed to, with their fields."""

from __future__ import annotations

import json
from typing import Any

import attrs
import click

from transports.cli.context import UserError
from transports.cli.output import Column, console, print_json, print_table
from webhook_core import EventType, platform_catalog
from webhook_core.samples import sample_data


def _type_name(kind: Any) -> str:
    text = getattr(kind, "__name__", None) if not isinstance(kind, str) else kind
    text = str(text or kind).replace("typing.", "")
    return text.replace("dict[str, Any]", "object").replace("JSONObject", "object")


def event_fields(event: EventType) -> list[dict[str, Any]]:
    """The fields of an event's ``data``: name, type and whether it is required."""
    if event.model is None:
        return []
    return [
        {
            "name": f.name,
            "type": _type_name(f.type),
            "required": f.default is attrs.NOTHING,
        }
        for f in attrs.fields(event.model)
    ]


def _event_json(event: EventType) -> dict[str, Any]:
    return {
        "name": event.name,
        "description": event.description,
        "fields": event_fields(event),
        "sample": sample_data(event.name),
    }


@click.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def events(name: str | None, as_json: bool) -> None:
    """List the events (NAME: one event's fields and a sample to publish)."""
    catalog = platform_catalog()
    if name is None:
        if as_json:
            print_json([_event_json(e) for e in catalog])
            return
        rows = [
            [e.name, ", ".join(f["name"] for f in event_fields(e) if f["required"]), e.description]
            for e in catalog
        ]
        columns = (Column("EVENT", 0), Column("REQUIRED FIELDS", 1, 20), Column("ABOUT", 2, 10))
        print_table(columns, rows)
        console.print("(webhooks events NAME shows every field and a sample)", markup=False)
        return
    if name not in catalog:
        raise UserError(
            f"unknown event {name!r}; the events are: {', '.join(e.name for e in catalog)}"
        )
    event = catalog.get(name)
    if as_json:
        print_json(_event_json(event))
        return
    console.print(f"{event.name}: {event.description}", markup=False)
    for f in event_fields(event):
        flag = "required" if f["required"] else "optional"
        console.print(f"  {f['name']:<16} {f['type']:<16} {flag}", markup=False)
    sample = json.dumps(sample_data(name), ensure_ascii=False)
    console.print(
        f"sample: webhooks publish {name} --data '{sample}'", markup=False, soft_wrap=True
    )
