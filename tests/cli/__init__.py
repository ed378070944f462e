"""Tests of transports.cli: the webhooks command."""
