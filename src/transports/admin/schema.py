"""Request bodies: declared once as JSON Schema, checked against it, published in OpenAPI.

``check`` understands the part of JSON Schema the API's bodies use (``type``,
``properties``, ``required``, ``additionalProperties``, ``items``,
``minimum``), and names the field at fault in its 422 problem.
"""

from __future__ import annotations

from typing import Any

from transports.admin.problems import Problem

JSON = dict[str, Any]

STRING: JSON = {"type": "string"}
STRINGS: JSON = {"type": "array", "items": STRING}
HEADERS: JSON = {"type": "object", "additionalProperties": STRING}


def body(required: tuple[str, ...] = (), **properties: JSON) -> JSON:
    """An object schema with these properties and no others."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(
        value,
        {
            "string": str,
            "boolean": bool,
            "object": dict,
            "array": list,
            "null": type(None),
        }[kind],
    )


def _name(path: str) -> str:
    return f"field {path!r}" if path else "the request body"


def check(value: Any, schema: JSON, path: str = "") -> None:
    """Raise a 422 ``Problem`` naming the field when ``value`` does not match ``schema``.

    ``path`` is where ``value`` sits in the body (``headers.x``; empty: the body itself).
    """
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if kinds and not any(_is(value, k) for k in kinds):
        raise Problem(422, f"{_name(path)} must be {' or '.join(_NAMES[k] for k in kinds)}")
    if isinstance(value, dict):
        _check_object(value, schema, path)
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            check(item, schema["items"], f"{path}[{index}]")
    elif "minimum" in schema and _is(value, "number") and value < schema["minimum"]:
        raise Problem(422, f"{_name(path)} must be at least {schema['minimum']}")


def _check_object(value: JSON, schema: JSON, path: str) -> None:
    properties: JSON = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        inner = f"{path}.{key}" if path else str(key)
        if key in properties:
            check(item, properties[key], inner)
        elif extra is False:
            known = ", ".join(repr(k) for k in properties) or "none"
            raise Problem(422, f"unknown {_name(inner)}; the fields are: {known}")
        elif isinstance(extra, dict):
            check(item, extra, inner)
    for key in schema.get("required", []):
        if key not in value:
            raise Problem(422, f"{_name(f'{path}.{key}' if path else key)} is required")
