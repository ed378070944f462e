"""``python -m transports.cli``: the ``webhooks`` command."""

from transports.cli import main

main()
