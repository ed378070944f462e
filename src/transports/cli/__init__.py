"""The ``webhooks`` command: run the dispatcher, manage endpoints and deliveries, test receivers.

The command needs the ``cli`` extra (click and rich); they are imported only
when it runs, so a base install gets one line naming the extra, not a traceback.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transports.cli.app import cli

__all__ = ["cli", "main"]

CLI_EXTRA = "pip install 'webhooks-delivery[cli]'"
_CLI_MODULES = ("click", "rich")


def main() -> None:
    """Entry point of the ``webhooks`` script."""
    try:
        from transports.cli.app import main as run  # noqa: PLC0415 (the cli extra)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in _CLI_MODULES:
            raise
        sys.stderr.write(
            f"webhooks: {exc.name} is not installed; install the cli extra: {CLI_EXTRA}\n"
        )
        raise SystemExit(2) from None
    run()


def __getattr__(name: str) -> Any:
    if name == "cli":
        from transports.cli.app import cli  # noqa: PLC0415 (the cli extra)

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
