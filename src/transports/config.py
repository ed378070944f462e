"""Settings every driver takes, checked the same way for each."""

from __future__ import annotations

import math
from collections.abc import Iterable

from transports.guard import OutboundPolicy
from transports.ids import new_id
from transports.memory import MemoryStore
from transports.store import Store
from webhook_core import USER_AGENT, ConfigError, EventCatalog, RetryPolicy, platform_catalog
from webhook_core.addresses import Network


class DriverConfig:
    """The store, policy and limits a driver runs with.

    ``store`` defaults to a new in-memory store; the lease defaults to the
    attempt deadline plus at least 30 s and must outlive it by more than 5 s
    (a shorter lease lets two workers send the same attempt at once); stores
    that other processes may write are polled every second by default.
    ``allowed_networks``, ``allow_http`` and ``ca_file`` make the
    ``OutboundPolicy`` the default transport and the handshakes use.
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
        allowed_networks: str | Iterable[str | Network] = (),
        ca_file: str | None = None,
    ) -> None:
        self.store: Store = store if store is not None else MemoryStore()
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
        if self.lease <= timeout + 5:
            raise ConfigError(
                f"lease ({self.lease:g} s) must outlive the attempt deadline "
                f"({timeout:g} s) by more than 5 s"
            )
        if poll_interval is None:
            poll_interval = 1.0 if self.store.blocking else math.inf
        self.poll_interval = poll_interval
        self.worker_id = worker_id or new_id("wrk")
        self.user_agent = user_agent
