"""A store that raises: a wrapper that makes one named method of a real store fail a while.

``FaultyStore(inner, error)`` delegates every call to ``inner`` (a memory,
SQLite or PostgreSQL store) and keeps its ``blocking`` flag and, through
attribute delegation, its ``subscribe`` (a store without one still has none).
``fail(method, seconds=..., after=...)`` arms a ``Fault``: the first ``after``
calls of ``method`` go through, then every call raises ``error(method)``
(a fresh exception each time, as the real store would raise) from the first
failing call until ``seconds`` later; after that the method works again and
the fault is spent. The error is raised before the real store is called, so a
failed call changes nothing (a locked database or a lost connection refuses
the statement).

A fault records what happened, so a test can wait for it to have been hit
(``wait_hit``) and for the method to have worked again afterwards
(``wait_recovered``: a call after the window went through, i.e. someone
tried again).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from transports.stores.interface import (
    ALL_DELIVERIES,
    Claimed,
    DeliveryFilter,
    EventBatch,
    SchemaStatus,
    Store,
)
from webhook_core import Delivery, DeliveryState, Endpoint, Event

STORE_METHODS = frozenset(
    {
        "save_endpoint",
        "get_endpoint",
        "get_endpoints",
        "list_endpoints",
        "delete_endpoint",
        "add_events",
        "get_event",
        "claim",
        "complete",
        "release",
        "save_deliveries",
        "next_due",
        "get_delivery",
        "list_deliveries",
        "count_deliveries",
        "prune",
        "schema_status",
    }
)


class Fault:
    """One armed failure of one store method (see the module)."""

    def __init__(self, method: str, seconds: float, after: int) -> None:
        self.method = method
        self.seconds = seconds
        self.after = after
        self.passed_before = 0  # calls let through before the window
        self.raised = 0  # calls that raised
        self.first_raised_at: float | None = None  # time.monotonic()
        self.recovered_at: float | None = None  # first call through after the window
        self._changed = threading.Condition()

    def _check(self, error: Callable[[str], Exception]) -> None:
        """Raise if this call falls in the window; note what happened either way."""
        with self._changed:
            if self.recovered_at is not None:
                return
            now = time.monotonic()
            if self.first_raised_at is None and self.passed_before < self.after:
                self.passed_before += 1
                return
            if self.first_raised_at is None:
                self.first_raised_at = now
            if now < self.first_raised_at + self.seconds:
                self.raised += 1
                self._changed.notify_all()
                raise error(self.method)
            self.recovered_at = now
            self._changed.notify_all()

    @property
    def spent(self) -> bool:
        """The window is over and the method has worked again since."""
        with self._changed:
            return self.recovered_at is not None

    def wait_hit(self, timeout: float) -> bool:
        """Wait until a call has raised; False if none did within ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: self.raised > 0, timeout)

    def wait_recovered(self, timeout: float) -> bool:
        """Wait until a call went through after the window; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self.recovered_at is not None, timeout)

    def __repr__(self) -> str:
        return (
            f"Fault({self.method!r}, seconds={self.seconds}, after={self.after}, "
            f"raised={self.raised}, recovered={self.recovered_at is not None})"
        )


class FaultyStore:
    """A ``Store`` that delegates to ``inner`` and fails the methods it is told to."""

    def __init__(self, inner: Store, error: Callable[[str], Exception]) -> None:
        self.inner = inner
        self.blocking = inner.blocking
        self._error = error
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}
        self.calls: dict[str, int] = dict.fromkeys(STORE_METHODS, 0)

    def fail(self, method: str, *, seconds: float, after: int = 0) -> Fault:
        """Make ``method`` raise for ``seconds`` from its first failing call, after
        letting ``after`` calls through; replaces any fault still armed on it."""
        if method not in STORE_METHODS:
            raise ValueError(f"{method!r} is not a store method")
        fault = Fault(method, seconds, after)
        with self._lock:
            self._faults[method] = fault
        return fault

    def _enter(self, method: str) -> None:
        with self._lock:
            self.calls[method] += 1
            fault = self._faults.get(method)
        if fault is not None:
            fault._check(self._error)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not defined here: ``subscribe`` and the like.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    # -- the Store protocol, each method guarded ----------------------------------

    def save_endpoint(self, endpoint: Endpoint) -> None:
        self._enter("save_endpoint")
        self.inner.save_endpoint(endpoint)

    def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        self._enter("get_endpoint")
        return self.inner.get_endpoint(endpoint_id)

    def get_endpoints(self, endpoint_ids: Collection[str]) -> dict[str, Endpoint]:
        self._enter("get_endpoints")
        return self.inner.get_endpoints(endpoint_ids)

    def list_endpoints(self, tenant: str | None = None) -> list[Endpoint]:
        self._enter("list_endpoints")
        return self.inner.list_endpoints(tenant)

    def delete_endpoint(self, endpoint_id: str) -> bool:
        self._enter("delete_endpoint")
        return self.inner.delete_endpoint(endpoint_id)

    def add_events(self, batch: Sequence[EventBatch], *, connection: Any = None) -> None:
        self._enter("add_events")
        self.inner.add_events(batch, connection=connection)

    def get_event(self, event_id: str) -> Event | None:
        self._enter("get_event")
        return self.inner.get_event(event_id)

    def claim(self, now: float, limit: int, worker: str, lease_until: float) -> list[Claimed]:
        self._enter("claim")
        return self.inner.claim(now, limit, worker, lease_until)

    def complete(self, deliveries: Sequence[Delivery], worker: str) -> int:
        self._enter("complete")
        return self.inner.complete(deliveries, worker)

    def release(self, delivery_ids: Sequence[str], worker: str) -> None:
        self._enter("release")
        self.inner.release(delivery_ids, worker)

    def save_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        self._enter("save_deliveries")
        self.inner.save_deliveries(deliveries)

    def next_due(self) -> float | None:
        self._enter("next_due")
        return self.inner.next_due()

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        self._enter("get_delivery")
        return self.inner.get_delivery(delivery_id)

    def list_deliveries(
        self, where: DeliveryFilter = ALL_DELIVERIES, limit: int = 100, offset: int = 0
    ) -> list[Delivery]:
        self._enter("list_deliveries")
        return self.inner.list_deliveries(where, limit, offset)

    def count_deliveries(self, where: DeliveryFilter = ALL_DELIVERIES) -> int:
        self._enter("count_deliveries")
        return self.inner.count_deliveries(where)

    def prune(self, state: DeliveryState, before: float, limit: int) -> int:
        self._enter("prune")
        return self.inner.prune(state, before, limit)

    def schema_status(self) -> SchemaStatus:
        self._enter("schema_status")
        return self.inner.schema_status()

    def close(self) -> None:
        self.inner.close()
