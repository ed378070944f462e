"""Canonical body bytes: JSON exactly as JavaScript re-serialises it.

The platform's documented receiver computes its HMAC over
``JSON.stringify(JSON.parse(body))``, so the bytes we sign and send must be a
fixed point of that round trip. ``canonical_json`` produces those bytes from
Python values, and refuses (naming the field path) anything JavaScript would
change:

* integers outside JavaScript's safe range (|n| > 2**53 - 1) lose precision;
* NaN and the infinities become ``null``;
* strings with lone surrogates cannot be sent as UTF-8;
* keys must be strings; values must be JSON types (tuples count as arrays).

Two things are not refused but written the way JavaScript writes them:
numbers use ECMAScript ``Number::toString`` (``1.0`` is ``1``, ``1e-7`` is
``1e-7``, ``1e21`` is ``1e+21``, ``-0.0`` is ``0``), and object keys that are
array indices (``"0"``, ``"42"``) come first in ascending numeric order, as
JavaScript enumerates them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from webhook_core.errors import PayloadError

MAX_SAFE_INTEGER = 2**53 - 1
MAX_BODY = 1024 * 1024
"""The largest body a receiver reads (1 MiB), and so the largest event a sender publishes."""
_MAX_ARRAY_INDEX = 2**32 - 2
_MAX_DEPTH = 64
_SCALARS = frozenset({str, int, float, bool, type(None)})

_encode_string = json.encoder.encode_basestring
_fast_dumps = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":")
).encode


def canonical_json(value: Any, path: str = "$") -> bytes:
    """Encode ``value`` as the UTF-8 bytes JavaScript's round trip leaves unchanged.

    Raises ``PayloadError`` whose ``path`` names the offending field, for example
    ``data.items[2].price``.
    """
    if _is_plain(value, path, 0):
        text = _fast_dumps(value)
    else:
        parts: list[str] = []
        _encode(value, path, parts)
        text = "".join(parts)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        _find_surrogate(value, path)
        raise  # pragma: no cover - _find_surrogate always raises first


def check_depth(value: Any, path: str = "$", depth: int = 0) -> None:
    """Refuse ``value`` nested deeper than ``canonical_json`` allows, without recursing.

    ``value`` sits ``depth`` levels down at ``path``; attrs instances count as
    the objects they become. The ``PayloadError`` is the one ``canonical_json``
    raises, so data nested thousands deep fails as data nested 65 deep does,
    before anything recursive (a model's converter) sees it.
    """
    stack: list[tuple[Any, _Where, int]] = [(value, path, depth)]
    while stack:
        item, where, level = stack.pop()
        if level > _MAX_DEPTH:
            raise PayloadError(_render(where), f"nested deeper than {_MAX_DEPTH} levels")
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is dict or isinstance(item, Mapping):
            children: list[tuple[Any, _Where]] = [(v, (where, str(k))) for k, v in item.items()]
        elif attrs.has(kind):
            children = [(getattr(item, f.name), (where, f.name)) for f in attrs.fields(kind)]
        elif isinstance(item, Sequence) and not isinstance(item, (str, bytes, bytearray)):
            children = [(v, (where, i)) for i, v in enumerate(item)]
        else:
            continue
        if level < _MAX_DEPTH:  # scalars this shallow cannot be too deep: skip them
            children = [c for c in children if type(c[0]) not in _SCALARS]
        stack.extend((child, at, level + 1) for child, at in reversed(children))


_Where = str | tuple[Any, str | int]
"""A field's path, built as (parent, key or index) and written out only for an error."""


def _render(where: _Where) -> str:
    steps: list[str | int] = []
    while isinstance(where, tuple):
        where, step = where
        steps.append(step)
    path = where
    for step in reversed(steps):
        path = f"{path}[{step}]" if isinstance(step, int) else _member_path(path, step)
    return path


def _is_index_key(key: str) -> bool:
    return (
        key.isdigit()
        and key.isascii()
        and (key == "0" or key[0] != "0")
        and int(key) <= _MAX_ARRAY_INDEX
    )


def _is_plain(value: Any, path: _Where, depth: int) -> bool:
    """Validate ``value``; True when ``json`` alone already writes it as JavaScript would."""
    if depth > _MAX_DEPTH:
        raise PayloadError(_render(path), f"nested deeper than {_MAX_DEPTH} levels")
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return True
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return True
        raise PayloadError(
            _render(path), f"integer {value} is outside JavaScript's safe range ±(2**53-1)"
        )
    if kind is float:
        if not math.isfinite(value):
            raise PayloadError(_render(path), f"{value!r} is not representable in JSON")
        return False
    if isinstance(value, Mapping):
        plain = True
        for key, item in value.items():
            if type(key) is not str:
                raise PayloadError(_render(path), f"object key {key!r} is not a string")
            if _is_index_key(key):
                plain = False
            if not _is_plain(item, (path, key), depth + 1):
                plain = False
        return plain and type(value) is dict
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray, str)):
        plain = True
        for index, item in enumerate(value):
            if not _is_plain(item, (path, index), depth + 1):
                plain = False
        return plain and type(value) is list
    raise PayloadError(_render(path), f"a value of type {kind.__name__} is not JSON")


def _member_path(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def _encode(value: Any, path: str, out: list[str]) -> None:
    kind = type(value)
    if kind is str:
        out.append(_encode_string(value))
    elif value is None:
        out.append("null")
    elif kind is bool:
        out.append("true" if value else "false")
    elif kind is int:
        out.append(str(value))
    elif kind is float:
        out.append(js_number(value))
    elif isinstance(value, Mapping):
        keys = list(value.keys())
        indices = sorted((k for k in keys if _is_index_key(k)), key=int)
        if indices:
            keys = indices + [k for k in keys if not _is_index_key(k)]
        out.append("{")
        for position, key in enumerate(keys):
            if position:
                out.append(",")
            out.append(_encode_string(key))
            out.append(":")
            _encode(value[key], _member_path(path, key), out)
        out.append("}")
    else:
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, f"{path}[{index}]", out)
        out.append("]")


def js_number(value: float) -> str:
    """Format a finite float as ECMAScript ``Number::toString`` does."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    if fraction == "0":
        fraction = ""
    raw = whole + fraction
    digits = raw.lstrip("0")
    # n is where the decimal point falls, counted from the first significant digit.
    n = len(whole) + (int(exponent) if exponent else 0) - (len(raw) - len(digits))
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        power = n - 1
        exp = f"e{'+' if power >= 0 else '-'}{abs(power)}"
        text = digits + exp if k == 1 else digits[0] + "." + digits[1:] + exp
    return sign + text


def _find_surrogate(value: Any, path: str) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PayloadError(
                path, f"string holds a lone surrogate at index {exc.start}; not valid UTF-8"
            ) from None
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _find_surrogate(key, f"{path} (key {key!r})")
            _find_surrogate(item, _member_path(path, key))
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        for index, item in enumerate(value):
            _find_surrogate(item, f"{path}[{index}]")
