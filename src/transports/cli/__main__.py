"""``python -m transports.cli``: the ``webhooks`` command."""

from transports.cli.app import main

main()
