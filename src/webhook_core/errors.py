"""The library's exception types.

Every error the core raises for bad input is a subclass of ``WebhookError`` and
names what is wrong: the field path, the header, the state and input.
"""

from __future__ import annotations


class WebhookError(Exception):
    """Base class of every error raised by this library."""


class InvalidEventName(WebhookError, ValueError):
    """An event name or subscription pattern is not lowercase dotted words."""


class UnknownEvent(WebhookError, LookupError):
    """An event name that the catalog does not know."""


class PayloadError(WebhookError, ValueError):
    """A payload that cannot be published; ``path`` names the offending field."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class VerificationError(WebhookError):
    """A request whose signature, timestamp or headers do not verify.

    Receivers should answer 401 (bad signature) or 400 (malformed headers); the
    message says which check failed but never leaks the expected signature.
    """


class IllegalTransition(WebhookError):
    """An input that the state machine does not accept in the record's state.

    The record is unchanged when this is raised.
    """

    def __init__(self, machine: str, state: str, given: str, detail: str = "") -> None:
        message = f"{machine}: {given} is not allowed in state {state!r}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)
        self.machine = machine
        self.state = state
        self.input = given


class ConfigError(WebhookError, ValueError):
    """A setting (retry policy, URL, secret, header) that is out of range or malformed."""
