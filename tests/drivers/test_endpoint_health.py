"""Automatic disable of unhealthy endpoints, through the store operations, on real stores.

Deliveries are claimed, attempted (the result is fed in, no network) and
completed exactly as the drivers do; ``operations.record_outcomes`` then
updates each endpoint's run of failures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from transports.driving import operations
from transports.stores.interface import DeliveryFilter, Store
from transports.stores.memory import MemoryStore
from transports.stores.sqlite import SQLiteStore
from webhook_core import (
    AttemptResult,
    Delivery,
    DeliveryState,
    Endpoint,
    EndpointState,
    Finish,
    HandshakeResult,
    HealthPolicy,
    Outcome,
    RetryPolicy,
    begin_attempt,
    delivery_machine,
    endpoint_machine,
    platform_catalog,
)

ONE_ATTEMPT = RetryPolicy(schedule=())
HOUR = 3600.0
MESSAGE = {"message_id": "m1", "channel": "sms", "to": "+919800000000", "status": "sent"}


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    chosen: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "h.db")
    yield chosen
    chosen.close()


def active_endpoint(store: Store, url: str, now: float) -> Endpoint:
    endpoint = operations.add_endpoint(store, url, now)
    token = endpoint.verification_token
    assert token is not None
    endpoint = endpoint_machine.apply(endpoint, HandshakeResult(now, 200, token.encode()))
    store.save_endpoint(endpoint)
    return endpoint


def run_once(store: Store, now: float, status_for: dict[str, int]) -> list[Delivery]:
    """Publish one event, attempt every due delivery once, complete, record outcomes."""
    operations.publish(store, platform_catalog(), "message.sent", MESSAGE, now)
    finished: list[Delivery] = []
    for claim in store.claim(now, 100, "wrk_test", now + 60):
        delivery, request = begin_attempt(
            claim.delivery, claim.event, claim.endpoint, now, ONE_ATTEMPT, "test"
        )
        assert request is not None
        status = status_for[claim.endpoint.id]
        result = (
            AttemptResult(now, now + 1, status=status)
            if status
            else AttemptResult(now, now + 1, error_kind=Outcome.CONNECT_ERROR, error="refused")
        )
        delivery, _ = delivery_machine.apply(delivery, Finish(result), ONE_ATTEMPT)
        finished.append(delivery)
    assert store.complete(finished, "wrk_test") == len(finished)
    return finished


def test_a_dead_endpoint_is_disabled_and_the_hook_is_told(store: Store) -> None:
    policy = HealthPolicy(max_failures=3, period=2.5 * HOUR)
    dead = active_endpoint(store, "https://dead.example/hook", 0.0)
    healthy = active_endpoint(store, "https://ok.example/hook", 0.0)
    statuses = {dead.id: 0, healthy.id: 200}
    told: list[Endpoint] = []
    for hour in range(3):
        finished = run_once(store, hour * HOUR, statuses)
        assert operations.record_outcomes(store, finished, policy, told.append) == []
    current = store.get_endpoint(dead.id)
    assert current is not None and current.state is EndpointState.ACTIVE
    assert (current.failures, current.failing_since) == (3, 1.0)

    finished = run_once(store, 3 * HOUR, statuses)
    # Published while the last attempts were in flight: still waiting when the
    # endpoint is disabled, so it fails with it (the healthy endpoint's does not).
    operations.publish(store, platform_catalog(), "message.sent", MESSAGE, 3 * HOUR + 0.5)
    disabled = operations.record_outcomes(store, finished, policy, told.append)
    assert [e.id for e in disabled] == [dead.id] == [e.id for e in told]
    current = store.get_endpoint(dead.id)
    assert current is not None and current.state is EndpointState.DISABLED
    assert current.disabled_reason is not None
    assert current.disabled_reason.startswith("4 deliveries in a row failed over 3.0 hours")
    assert store.list_deliveries(DeliveryFilter(DeliveryState.PENDING, dead.id)) == []
    [cancelled] = [
        d
        for d in store.list_deliveries(DeliveryFilter(DeliveryState.FAILED, dead.id))
        if not d.attempts
    ]
    assert cancelled.reason is not None and "endpoint disabled" in cancelled.reason
    assert len(store.list_deliveries(DeliveryFilter(DeliveryState.PENDING, healthy.id))) == 1
    other = store.get_endpoint(healthy.id)
    assert other is not None and other.state is EndpointState.ACTIVE and other.failures == 0
    assert (
        operations.publish(store, platform_catalog(), "message.sent", MESSAGE, 4 * HOUR).deliveries
        == 1
    )


def test_a_success_clears_the_run(store: Store) -> None:
    policy = HealthPolicy(max_failures=2, period=1.5 * HOUR)
    flaky = active_endpoint(store, "https://flaky.example/hook", 0.0)
    for hour, status in enumerate([0, 200, 0, 0]):
        finished = run_once(store, hour * HOUR, {flaky.id: status})
        assert operations.record_outcomes(store, finished, policy) == []
    current = store.get_endpoint(flaky.id)
    assert current is not None and current.state is EndpointState.ACTIVE
    assert current.failures == 2 and current.failing_since == 2 * HOUR + 1
    finished = run_once(store, 4 * HOUR, {flaky.id: 0})
    assert [e.id for e in operations.record_outcomes(store, finished, policy)] == [flaky.id]


def test_retrying_deliveries_and_removed_endpoints_do_not_count(store: Store) -> None:
    policy = HealthPolicy(max_failures=1, period=0.0)
    endpoint = active_endpoint(store, "https://retry.example/hook", 0.0)
    operations.publish(store, platform_catalog(), "message.sent", MESSAGE, 0.0)
    [claim] = store.claim(0.0, 10, "wrk_test", 60.0)
    retrying, _ = begin_attempt(claim.delivery, claim.event, claim.endpoint, 0.0, RetryPolicy())
    retrying, _ = delivery_machine.apply(
        retrying, Finish(AttemptResult(0.0, 1.0, status=500)), RetryPolicy()
    )
    assert retrying.state is DeliveryState.RETRY_SCHEDULED
    store.complete([retrying], "wrk_test")
    assert operations.record_outcomes(store, [retrying], policy) == []
    current = store.get_endpoint(endpoint.id)
    assert current is not None and current.failures == 0
    gone = active_endpoint(store, "https://gone.example/hook", 2.0)
    [failed] = [
        d for d in run_once(store, 3.0, {endpoint.id: 0, gone.id: 0}) if d.endpoint_id == gone.id
    ]
    assert failed.state is DeliveryState.FAILED
    operations.remove_endpoint(store, gone.id, 4.0)
    assert operations.record_outcomes(store, [failed], policy) == []
