"""Tests of transports.stores: every store, crash safety, the outbox, operations on stores."""
