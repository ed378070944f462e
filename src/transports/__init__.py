"""Drivers that run the webhook core: HTTP, clocks, storage and runtimes."""
