"""Logging for the long-running commands: readable (rich) or one JSON object a line.

The library logs through the standard ``logging`` module with its fields in
``extra`` (``transports.driving.observe.FIELDS``); this module is the host
that configures it for ``webhooks serve``. Records go to stderr, so stdout
keeps the command's own lines.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from transports.driving.observe import FIELDS, timestamp

FORMATS = ("text", "json")
_LEVELS = (logging.WARNING, logging.INFO, logging.DEBUG)
_ENCODER = json.JSONEncoder(default=str)


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time, level, logger, message and the fields it carries."""

    def format(self, record: logging.LogRecord) -> str:
        """The record's line (``exception`` holds a traceback, when there is one)."""
        carried = record.__dict__
        line: dict[str, Any] = {
            "time": timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            if field in carried:
                line[field] = carried[field]
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(line)


def configure_logging(verbosity: int, fmt: str) -> None:
    """Send the library's records to stderr: WARNING and up, INFO with ``-v``, DEBUG with
    ``-vv``; as ``fmt`` (``text``: rich, ``json``: one object a line)."""
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        from rich.console import Console  # noqa: PLC0415 - rich only for text
        from rich.logging import RichHandler  # noqa: PLC0415

        handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("transports").setLevel(_LEVELS[min(verbosity, len(_LEVELS) - 1)])
