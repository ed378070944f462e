"""Event names and subscription patterns.

An event name is one or more lowercase dotted words (``message.delivered``,
``order.line_item.shipped``): each word starts with a letter and holds
lowercase letters, digits and underscores; at most 256 characters in all.

A subscription pattern is an event name, ``*`` (every event), or a name whose
last word is ``*`` (``message.*``: every event under ``message.``, at any depth).
"""

from __future__ import annotations

import re

from webhook_core.errors import InvalidEventName

MAX_NAME_LENGTH = 256
_WORD = r"[a-z][a-z0-9_]*"
_NAME = re.compile(rf"{_WORD}(?:\.{_WORD})*\Z")
_PATTERN = re.compile(rf"(?:\*|{_WORD}(?:\.{_WORD})*(?:\.\*)?)\Z")


def validate_event_name(name: object) -> str:
    """Return ``name`` if it is a valid event name, else raise ``InvalidEventName``."""
    if not isinstance(name, str):
        raise InvalidEventName(f"event name must be a string, not {type(name).__name__}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidEventName(
            f"event name is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed"
        )
    if not _NAME.match(name):
        raise InvalidEventName(
            f"event name {name!r} is not lowercase dotted words "
            "(letters, digits and '_', each word starting with a letter, e.g. 'message.sent')"
        )
    return name


def validate_pattern(pattern: object) -> str:
    """Return ``pattern`` if it is a valid subscription pattern, else raise ``InvalidEventName``."""
    if not isinstance(pattern, str):
        raise InvalidEventName(f"event pattern must be a string, not {type(pattern).__name__}")
    if len(pattern) > MAX_NAME_LENGTH or not _PATTERN.match(pattern):
        raise InvalidEventName(
            f"event pattern {pattern!r} is not an event name, '*', or a prefix ending in '.*' "
            "(e.g. 'message.*')"
        )
    return pattern


def pattern_matches(pattern: str, name: str) -> bool:
    """True when the subscription ``pattern`` selects the event ``name``."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return name.startswith(pattern[:-1])
    return pattern == name


def any_pattern_matches(patterns: tuple[str, ...], name: str) -> bool:
    """True when one of ``patterns`` selects ``name``."""
    # A loop, not any() over a generator (four times the cost): once per endpoint and event.
    for pattern in patterns:  # noqa: SIM110
        if pattern_matches(pattern, name):
            return True
    return False
