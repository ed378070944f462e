"""Tests of the sans-IO core, webhook_core."""
