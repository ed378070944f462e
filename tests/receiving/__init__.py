"""Tests of transports.receiving: the receiver toolkit and its framework adapters."""
