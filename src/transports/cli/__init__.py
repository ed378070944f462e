"""The ``webhooks`` command: run the dispatcher, manage endpoints and deliveries, test receivers."""

from transports.cli.app import cli, main

__all__ = ["cli", "main"]
