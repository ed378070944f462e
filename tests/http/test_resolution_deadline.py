"""Name resolution is bounded by the attempt's deadline, on every driver and transport.

``socket.getaddrinfo`` has no timeout of its own: a stalled resolver would hold an
attempt past its deadline, past its lease even, and the delivery would be claimed
and sent again while the first attempt is still out. The resolver is replaced for
one name, ``stall.test``, whose lookup stalls until the test ends (then answers
127.0.0.1, where a real loopback receiver listens); every other name is looked up
for real.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import attrs
import pytest

from transports.aio.service import WebhookService
from transports.driving import operations
from transports.http.guard import OutboundPolicy, resolve_vetted_sync
from transports.http.lookups import LOOKUP_THREADS, LookupTimeout
from transports.stores.interface import Claimed
from transports.stores.memory import MemoryStore
from transports.sync.service import ThreadedWebhookService
from transports.testing import LOOPBACK_NETWORKS, LoopbackReceiver, Respond
from webhook_core import (
    LEASE_MARGIN,
    Delivery,
    DeliveryState,
    EndpointState,
    Outcome,
    RetryPolicy,
    platform_catalog,
)

STALLED = "stall.test"
DEADLINE = 1.0
LEASE = DEADLINE + LEASE_MARGIN + 0.5
STALL = 10.0  # seconds a stalled lookup waits for the test to release it
DATA = {"message_id": "m", "channel": "sms", "to": "+919876543210", "status": "sent"}
LOOPBACK = OutboundPolicy(LOOPBACK_NETWORKS, allow_http=True)


class StalledResolver:
    """``socket.getaddrinfo`` for which ``stall.test`` and its subdomains hang until
    released, then resolve to 127.0.0.1; counts the lookups of those names under way."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.released = threading.Event()
        self.started = 0
        self.waiting = 0
        self._lock = threading.Lock()

    def __call__(
        self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> Any:
        numeric_only = flags & socket.AI_NUMERICHOST  # trio tries this inline first
        if isinstance(host, bytes):
            host = host.decode("ascii")
        if numeric_only or not (host == STALLED or str(host).endswith("." + STALLED)):
            return self.real(host, port, family, type, proto, flags)
        with self._lock:
            self.started += 1
            self.waiting += 1
        try:
            self.released.wait(STALL)
        finally:
            with self._lock:
                self.waiting -= 1
        return self.real("127.0.0.1", port, family, type, proto, flags)


@pytest.fixture
def stalled(monkeypatch: pytest.MonkeyPatch) -> Iterator[StalledResolver]:
    resolver = StalledResolver(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    try:
        yield resolver
    finally:
        resolver.released.set()


@pytest.fixture
def rx() -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver(default=Respond(200)) as receiver:
        yield receiver


class CountedClaims(MemoryStore):
    """A memory store that records every claim it hands out."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: list[Claimed] = []

    def claim(self, now: float, limit: int, worker: str, lease_until: float) -> list[Claimed]:
        claimed = super().claim(now, limit, worker, lease_until)
        self.claims.extend(claimed)
        return claimed


def stalled_store(port: int, deliveries: int) -> CountedClaims:
    """A store with an active endpoint on ``stall.test`` and ``deliveries`` due for it."""
    store = CountedClaims()
    endpoint = operations.add_endpoint(store, f"http://{STALLED}:{port}/hook", 0.0, allow_http=True)
    store.save_endpoint(attrs.evolve(endpoint, state=EndpointState.ACTIVE, verification_token=None))
    for _ in range(deliveries):
        operations.publish(store, platform_catalog(), "message.sent", DATA, 0.0)
    return store


def attempted(store: MemoryStore) -> bool:
    """Every delivery has finished an attempt."""
    return all(
        d.attempts and d.state is not DeliveryState.IN_FLIGHT for d in store.list_deliveries()
    )


def run(driver: str, http: str, store: MemoryStore, done: Callable[[], bool]) -> None:
    """Run ``driver`` with transport ``http`` over ``store`` until ``done()``, for at most
    the deadline and three seconds."""
    options: dict[str, Any] = {
        "http": http,
        "allow_http": True,
        "allowed_networks": LOOPBACK_NETWORKS,
        "policy": RetryPolicy(timeout=DEADLINE),
        "lease": LEASE,
    }
    limit = time.monotonic() + DEADLINE + 3.0
    if driver == "threads":
        with ThreadedWebhookService(store, **options):
            while not done() and time.monotonic() < limit:
                time.sleep(0.02)
        return

    async def main() -> None:
        async with WebhookService(store, **options):
            while not done() and time.monotonic() < limit:
                await anyio.sleep(0.02)

    anyio.run(main, backend=driver)


def check_timed_out(delivery: Delivery) -> None:
    (attempt,) = delivery.attempts
    assert attempt.outcome is Outcome.TIMEOUT, attempt
    assert DEADLINE * 0.9 <= attempt.latency <= DEADLINE + 1.0, attempt


each_driver = pytest.mark.parametrize("driver", ["asyncio", "trio", "threads"])
each_transport = pytest.mark.parametrize("http", ["httpx", "http1"])


@each_transport
@each_driver
def test_an_attempt_whose_lookup_stalls_ends_at_its_deadline(
    driver: str, http: str, stalled: StalledResolver, rx: LoopbackReceiver
) -> None:
    store = stalled_store(rx.port, deliveries=3)
    run(driver, http, store, lambda: attempted(store))
    deliveries = store.list_deliveries()
    assert len(deliveries) == 3
    for delivery in deliveries:
        check_timed_out(delivery)
        assert delivery.state is DeliveryState.RETRY_SCHEDULED
    # Each delivery was claimed once, and its attempt ended while the claim's lease
    # still covered it with the margin: no other worker could have sent it meanwhile.
    assert sorted(c.delivery.id for c in store.claims) == sorted(d.id for d in deliveries)
    ends = {d.id: d.attempts[0].ended_at for d in deliveries}
    for claim in store.claims:
        assert ends[claim.delivery.id] < claim.lease_until - LEASE_MARGIN
    assert rx.requests == []
    # The three attempts waited on one lookup: a stalled name holds one thread.
    assert stalled.started == 1


@each_transport
@each_driver
def test_a_handshake_whose_lookup_stalls_fails_at_its_deadline(
    driver: str, http: str, stalled: StalledResolver, rx: LoopbackReceiver
) -> None:
    store = MemoryStore()
    endpoint = operations.add_endpoint(
        store, f"http://{STALLED}:{rx.port}/hook", 0.0, allow_http=True
    )
    began = time.monotonic()

    def answered() -> bool:
        current = store.get_endpoint(endpoint.id)
        return current is not None and current.state is not EndpointState.VERIFYING

    run(driver, http, store, answered)
    took = time.monotonic() - began
    current = store.get_endpoint(endpoint.id)
    assert current is not None and current.state is EndpointState.UNVERIFIED, current
    assert current.last_error is not None and "timeout" in current.last_error
    assert took <= DEADLINE + 2.0
    assert rx.requests == []


# -- the blocking lookup itself -----------------------------------------------------------


def test_a_stalled_lookup_is_abandoned_when_its_time_is_up(stalled: StalledResolver) -> None:
    began = time.monotonic()
    with pytest.raises(LookupTimeout, match=r"resolving 'stall\.test'"):
        resolve_vetted_sync(STALLED, 80, LOOPBACK, timeout=0.3)
    assert 0.3 <= time.monotonic() - began < 1.0
    # A second caller joins the lookup under way rather than starting another,
    # and other names are not held up behind it.
    with pytest.raises(LookupTimeout):
        resolve_vetted_sync(STALLED, 80, LOOPBACK, timeout=0.1)
    assert resolve_vetted_sync("localhost", 80, LOOPBACK, timeout=5.0) == ["127.0.0.1"]
    assert stalled.started == 1
    stalled.released.set()
    assert resolve_vetted_sync(STALLED, 80, LOOPBACK, timeout=5.0) == ["127.0.0.1"]


def test_stalled_lookups_take_at_most_the_lookup_threads(stalled: StalledResolver) -> None:
    names = [f"n{i}.{STALLED}" for i in range(LOOKUP_THREADS + 4)]
    for name in names:
        with pytest.raises(LookupTimeout):
            resolve_vetted_sync(name, 80, LOOPBACK, timeout=0.0)
    limit = time.monotonic() + 5.0
    while stalled.waiting < LOOKUP_THREADS and time.monotonic() < limit:
        time.sleep(0.01)
    time.sleep(0.1)
    assert stalled.waiting == LOOKUP_THREADS
    # Released, the pool works through the names that waited for a thread.
    stalled.released.set()
    assert resolve_vetted_sync(names[-1], 80, LOOPBACK, timeout=5.0) == ["127.0.0.1"]
    assert stalled.started == len(names)


def test_a_forked_child_does_not_wait_for_the_parents_lookups(stalled: StalledResolver) -> None:
    with pytest.raises(LookupTimeout):
        resolve_vetted_sync(STALLED, 80, LOOPBACK, timeout=0.1)
    pid = os.fork()
    if pid == 0:  # the child: the stalled lookup's thread was left behind in the parent
        stalled.released.set()
        try:
            answer = resolve_vetted_sync(STALLED, 80, LOOPBACK, timeout=2.0)
            os._exit(0 if answer == ["127.0.0.1"] else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
