"""Settings every driver takes, checked the same way for each."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

from transports.driving.operations import Retention, record_outcomes
from transports.http.guard import OutboundPolicy
from transports.ids import new_id
from transports.stores.interface import Claimed, Store
from transports.stores.url import open_store
from webhook_core import (
    LEASE_MARGIN,
    USER_AGENT,
    ConfigError,
    Delivery,
    Endpoint,
    EndpointGate,
    EventCatalog,
    GatePolicy,
    HealthPolicy,
    HttpRequest,
    RetryPolicy,
    begin_attempt,
    platform_catalog,
)
from webhook_core.addresses import Network

DEFAULT_GATE = GatePolicy()
DEFAULT_HEALTH = HealthPolicy()


class DriverConfig:
    """The store, policy and limits a driver runs with.

    ``store`` defaults to the SQLite file named by ``$WEBHOOKS_DB``, else
    ``webhooks.db`` in the working directory (opened once every other setting
    is checked; pass a ``MemoryStore`` for tests and virtual time); the lease
    defaults to the attempt deadline plus at least 30 s and must outlive it by more than 5 s
    (a shorter lease lets two workers send the same attempt at once); stores
    that other processes may write are polled every second by default.
    With ``retention``, the dispatcher prunes finished deliveries older than
    it allows every ``retention_interval`` seconds (none are pruned without it).
    ``allowed_networks``, ``allow_http`` and ``ca_file`` make the
    ``OutboundPolicy`` the default transport and the handshakes use.
    ``gate`` limits each endpoint (concurrency, rate, circuit breaker; None:
    no limits) so one bad endpoint cannot take the capacity all share;
    ``health`` disables an endpoint after a run of failed deliveries (None:
    never) and then calls ``on_endpoint_disabled`` with it, from the writer
    (a worker thread when the store blocks).
    """

    def __init__(
        self,
        store: Store | None,
        *,
        policy: RetryPolicy | None,
        catalog: EventCatalog | None,
        allow_http: bool,
        max_in_flight: int,
        lease: float | None,
        poll_interval: float | None,
        worker_id: str | None,
        user_agent: str = USER_AGENT,
        retention: Retention | None = None,
        retention_interval: float = 3600.0,
        allowed_networks: str | Iterable[str | Network] = (),
        ca_file: str | None = None,
        gate: GatePolicy | None = DEFAULT_GATE,
        health: HealthPolicy | None = DEFAULT_HEALTH,
        on_endpoint_disabled: Callable[[Endpoint], object] | None = None,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.catalog = catalog or platform_catalog()
        self.allow_http = allow_http
        self.outbound = OutboundPolicy(allowed_networks, allow_http=allow_http, ca_file=ca_file)
        if ca_file is not None:
            self.outbound.ssl_context()  # a CA file that cannot be loaded fails here, not later
        if max_in_flight < 1:
            raise ConfigError("max_in_flight must be at least 1")
        self.max_in_flight = max_in_flight
        timeout = self.policy.timeout
        self.lease = lease if lease is not None else timeout + max(30.0, timeout)
        if self.lease <= timeout + LEASE_MARGIN:
            raise ConfigError(
                f"lease ({self.lease:g} s) must outlive the attempt deadline "
                f"({timeout:g} s) by more than {LEASE_MARGIN:g} s"
            )
        if not retention_interval > 0:
            raise ConfigError("retention_interval must be a positive number of seconds")
        self.store: Store = store if store is not None else open_store()
        if poll_interval is None:
            poll_interval = 1.0 if self.store.blocking else math.inf
        self.poll_interval = poll_interval
        self.worker_id = worker_id or new_id("wrk")
        self.user_agent = user_agent
        self.retention = retention
        self.retention_interval = retention_interval
        self.gate = None if gate is None else EndpointGate(gate)
        self.health = health
        self.on_endpoint_disabled = on_endpoint_disabled
        self._next_prune = -math.inf

    def _begin(self, claim: Claimed, started: float) -> tuple[Delivery, HttpRequest | None]:
        """The core's start of an attempt at ``claim`` under this driver's settings: the
        request to send, or none if the gate held it back or its lease is too short."""
        return begin_attempt(
            claim.delivery,
            claim.event,
            claim.endpoint,
            started,
            self.policy,
            self.user_agent,
            self.gate,
            claim.lease_until,
        )

    def _write_results(self, deliveries: Sequence[Delivery]) -> None:
        """Store a batch of finished attempts (those still leased to this worker), then
        feed the endpoints their outcomes: one store call for the writer per batch."""
        self.store.complete(deliveries, self.worker_id)
        if self.health is not None:
            record_outcomes(self.store, deliveries, self.health, self.on_endpoint_disabled)

    def _prune_due(self, now: float) -> Retention | None:
        """The retention settings when a sweep is due now (the next one is then scheduled)."""
        if self.retention is None or now < self._next_prune:
            return None
        self._next_prune = now + self.retention_interval
        return self.retention

    def _until_prune(self, now: float) -> float:
        """Seconds until the next retention sweep (infinite without retention)."""
        return math.inf if self.retention is None else max(self._next_prune - now, 0.0)
