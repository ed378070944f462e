"""The OpenAPI 3.1 document of the management API, made from its route table.

Paths, methods, request bodies, query parameters and success statuses come
from ``transports.admin.app.OPERATIONS`` (the same table the router is built
from); every operation may also answer a problem document (RFC 9457).
The JSON Schema of an event's ``data`` is derived from its attrs model.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Sequence
from typing import Any

import attrs

from transports.admin.problems import PROBLEM_TYPE

JSON = dict[str, Any]
_SCALARS: dict[Any, JSON] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
}
_PARAMETER = re.compile(r"\{(\w+)\}")
_PROBLEM: JSON = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
    "required": ["title", "status", "detail"],
}


def _type_schema(annotation: Any) -> JSON:
    if annotation in _SCALARS:
        return dict(_SCALARS[annotation])
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_type_schema(a) for a in typing.get_args(annotation)]}
    if origin is dict or annotation is dict:
        return {"type": "object"}
    if origin in (list, tuple):
        return {"type": "array"}
    return {}


def model_schema(model: type[Any] | None) -> JSON:
    """The JSON Schema of an event's ``data`` (any object when it has no model)."""
    if model is None or not attrs.has(model):
        return {"type": "object"}
    hints = typing.get_type_hints(model)
    fields = attrs.fields(model)
    return {
        "type": "object",
        "properties": {f.name: _type_schema(hints[f.name]) for f in fields},
        "required": [f.name for f in fields if f.default is attrs.NOTHING],
    }


def openapi(operations: Sequence[Any]) -> JSON:
    """The OpenAPI 3.1 document for these ``Operation``s."""
    paths: dict[str, JSON] = {}
    for op in operations:
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAMETER.findall(op.path)
        ]
        parameters += [
            {"name": name, "in": "query", "description": text, "schema": {"type": "string"}}
            for name, text in op.query
        ]
        if not op.public:
            parameters.append(
                {
                    "name": "tenant",
                    "in": "query",
                    "description": "the tenant to act for (operator token only)",
                    "schema": {"type": "string"},
                }
            )
        success: JSON = {"description": op.summary}
        if op.status != 204:
            success["content"] = {"application/json": {"schema": {}}}
        entry: JSON = {
            "operationId": op.handler.__name__,
            "summary": op.summary,
            "parameters": parameters,
            "responses": {
                str(op.status): success,
                "default": {
                    "description": "a problem (RFC 9457)",
                    "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                },
            },
        }
        if op.request is not None:
            entry["requestBody"] = {
                "required": bool(op.request.get("required")),
                "content": {"application/json": {"schema": op.request}},
            }
        if op.public:
            entry["security"] = []
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "webhooks management API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": {"Problem": _PROBLEM},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
