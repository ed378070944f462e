"""Tests of both drivers (transports.aio, transports.sync) and their shared layer (driving)."""
