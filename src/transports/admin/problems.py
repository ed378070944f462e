"""Errors of the management API as RFC 9457 problem details (``application/problem+json``).

Every refusal is a ``Problem``: its ``status``, a short ``title`` and a
``detail`` naming what is wrong. The library's own errors are mapped here once
(``problem_for``), so the API gives the same checks and messages as the
library and the command line, and input never produces a 500.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from starlette.responses import JSONResponse

from transports.driving.operations import NotFound
from transports.stores.interface import DuplicateEvent
from webhook_core import (
    ConfigError,
    IllegalTransition,
    InvalidEventName,
    PayloadError,
    UnknownEvent,
    WebhookError,
)

PROBLEM_TYPE = "application/problem+json"


class Problem(Exception):
    """A request the API refuses: answered as a problem document."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        """The problem document, as the HTTP response."""
        document: dict[str, Any] = {
            "type": "about:blank",
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
        }
        return JSONResponse(
            document, status_code=self.status, headers=self.headers, media_type=PROBLEM_TYPE
        )


def problem_for(exc: Exception) -> Problem | None:
    """The problem a library error stands for, or None for an error that is not the input's."""
    if isinstance(exc, NotFound):
        return Problem(404, str(exc))
    if isinstance(exc, DuplicateEvent):
        return Problem(409, str(exc))
    if isinstance(exc, IllegalTransition):
        return Problem(409, str(exc))
    if isinstance(exc, UnknownEvent | InvalidEventName | PayloadError):
        return Problem(422, str(exc))
    if isinstance(exc, ConfigError | WebhookError):
        return Problem(422, str(exc))
    return None
