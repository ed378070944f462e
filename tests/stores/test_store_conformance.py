"""One storage conformance suite: memory, SQLite and PostgreSQL behave the same."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests import pg
from transports.driving.operations import Retention, apply_retention, publish, publish_many
from transports.stores import sqlite
from transports.stores.interface import Claimed, DeliveryFilter, DuplicateEvent, Store
from transports.stores.memory import MemoryStore
from transports.stores.sqlite import SQLiteStore
from webhook_core import (
    Attempt,
    AttemptResult,
    ConfigError,
    Delivery,
    DeliveryState,
    Endpoint,
    EndpointSecret,
    EndpointState,
    Event,
    Finish,
    Outcome,
    RetryPolicy,
    begin_attempt,
    delivery_machine,
    platform_catalog,
)

KINDS = ("memory", "sqlite", "postgres")
CATALOG = platform_catalog()
T0 = 1_800_000_000.0
POLICY = RetryPolicy()
LAST_TRY = RetryPolicy(schedule=())  # every attempt is the last


def open_store(kind: str, directory: Path) -> Store:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(directory / "store.db")
    from transports.stores.postgres import PostgresStore

    return PostgresStore(pg.require_postgres(), schema=pg.fresh_schema())


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(request.param, tmp_path)
    yield opened
    opened.close()


def endpoint(n: int = 0, **changes: Any) -> Endpoint:
    made = Endpoint(
        id=f"ep_{n}",
        url=f"https://example.com/{n}",
        secrets=(EndpointSecret("whsec_" + "A" * 32, T0),),
        created_at=T0 + n,
        state=EndpointState.ACTIVE,
    )
    return attrs.evolve(made, **changes)


def message(i: int = 0) -> dict[str, str]:
    return {"message_id": f"msg_{i}", "channel": "sms", "to": "+919876543210", "status": "sent"}


def delivered(delivery: Delivery, started: float, ended: float) -> Delivery:
    """``delivery`` after one successful attempt."""
    attempt = Attempt(1, started, ended, Outcome.SUCCESS, status=200)
    return attrs.evolve(
        delivery, state=DeliveryState.DELIVERED, next_attempt_at=None, attempts=(attempt,)
    )


def unleased(delivery: Delivery) -> Delivery:
    """``delivery`` as a read gives it back: only a claim hands out a lease token."""
    return attrs.evolve(delivery, lease_token=None)


def attempted(claim: Claimed, at: float, status: int, policy: RetryPolicy = POLICY) -> Delivery:
    """The record a worker writes after sending ``claim`` at ``at`` and getting ``status``
    (through the core, as the drivers do: an expired earlier lease is recorded abandoned)."""
    started, request = begin_attempt(claim.delivery, claim.event, claim.endpoint, at, policy)
    assert request is not None
    result = AttemptResult(at, at + 1, status=status)
    return delivery_machine.apply(started, Finish(result), policy)[0]


def publish_one(store: Store, now: float = T0, i: int = 0) -> list[Delivery]:
    result = publish(store, CATALOG, "message.sent", message(i), now)
    return store.list_deliveries(DeliveryFilter(event_id=result.event.id))


def test_endpoints_round_trip_and_delete(store: Store) -> None:
    first, second = endpoint(1, headers=(("X-Team", "a"),)), endpoint(2, filters=("message.*",))
    store.save_endpoint(second)
    store.save_endpoint(first)
    assert store.list_endpoints() == [first, second]
    assert store.get_endpoint("ep_1") == first
    changed = attrs.evolve(first, url="https://example.com/new")
    store.save_endpoint(changed)
    assert store.get_endpoint("ep_1") == changed
    assert store.delete_endpoint("ep_1") is True
    assert store.delete_endpoint("ep_1") is False
    assert store.get_endpoint("ep_1") is None
    assert store.list_endpoints() == [second]


def test_get_endpoints_reads_the_existing_ones_by_id(store: Store) -> None:
    for n in range(3):
        store.save_endpoint(endpoint(n))
    assert store.get_endpoints(["ep_2", "ep_0", "ep_missing"]) == {
        "ep_0": endpoint(0),
        "ep_2": endpoint(2),
    }
    assert store.get_endpoints([]) == {}
    many = [f"ep_missing_{n}" for n in range(1_200)]
    assert store.get_endpoints([*many, "ep_1"]) == {"ep_1": endpoint(1)}


def test_a_claim_wider_than_one_query_of_ids_gets_every_endpoint(store: Store) -> None:
    for n in range(600):
        store.save_endpoint(endpoint(n))
    publish_one(store)
    claimed = store.claim(T0, 1_000, "w1", T0 + 60)
    assert len(claimed) == 600
    assert {c.endpoint.id for c in claimed} == {f"ep_{n}" for n in range(600)}
    assert all(c.endpoint == endpoint(int(c.endpoint.id[3:])) for c in claimed)


def test_a_claim_returns_times_and_bodies_exactly_as_stored(store: Store) -> None:
    store.save_endpoint(endpoint())
    now = 1_795_612_345.123_456_7  # 17 significant digits
    data = {"message_id": "msg_é", "channel": "sms", "to": "+919876543210", "status": "sent 🚀"}
    result = publish(store, CATALOG, "message.sent", data, now)
    (stored,) = store.list_deliveries(DeliveryFilter(event_id=result.event.id))
    (claimed,) = store.claim(now, 10, "w1", now + 60)
    assert claimed.delivery.lease_token is not None
    assert unleased(claimed.delivery) == stored
    assert claimed.delivery.created_at == now and claimed.delivery.next_attempt_at == now
    assert claimed.event == result.event == store.get_event(result.event.id)
    assert "🚀".encode() in claimed.event.body


def test_an_event_and_its_deliveries_are_stored_together(store: Store) -> None:
    for n in range(3):
        store.save_endpoint(endpoint(n))
    deliveries = publish_one(store)
    assert len(deliveries) == 3
    event = store.get_event(deliveries[0].event_id)
    assert event is not None and event.name == "message.sent"
    assert all(d.state is DeliveryState.PENDING and d.next_attempt_at == T0 for d in deliveries)


def test_a_duplicate_event_in_a_batch_stores_nothing(store: Store) -> None:
    store.save_endpoint(endpoint())
    publish(store, CATALOG, "message.sent", message(), T0, event_id="evt_dup")
    with pytest.raises(DuplicateEvent, match="evt_dup"):
        publish_many(
            store,
            CATALOG,
            [("message.sent", message(1), "evt_new"), ("message.sent", message(2), "evt_dup")],
            T0,
        )
    assert store.get_event("evt_new") is None
    assert store.count_deliveries() == 1


def test_claim_leases_due_deliveries_oldest_first_up_to_the_limit(store: Store) -> None:
    store.save_endpoint(endpoint())
    for i in range(5):
        publish_one(store, T0 + i, i)
    assert store.claim(T0 - 1, 10, "w1", T0 + 60) == []
    claimed = store.claim(T0 + 2, 2, "w1", T0 + 60)
    assert [c.delivery.created_at for c in claimed] == [T0, T0 + 1]
    assert all(c.delivery.state is DeliveryState.PENDING for c in claimed)
    assert claimed[0].event.id == claimed[0].delivery.event_id
    assert claimed[0].endpoint == endpoint()
    stored = store.get_delivery(claimed[0].delivery.id)
    assert stored is not None and stored.state is DeliveryState.IN_FLIGHT
    again = store.claim(T0 + 10, 10, "w2", T0 + 70)
    assert [c.delivery.created_at for c in again] == [T0 + 2, T0 + 3, T0 + 4]
    assert store.count_deliveries(DeliveryFilter(state=DeliveryState.IN_FLIGHT)) == 5


def test_claim_takes_the_earliest_due_whatever_order_they_came_in(store: Store) -> None:
    store.save_endpoint(endpoint())
    for n, at in enumerate([T0 + 4, T0 + 1, T0 + 3, T0, T0 + 2]):
        publish_one(store, at, n)
    assert store.next_due() == T0
    claimed = store.claim(T0 + 10, 3, "w1", T0 + 60)
    assert sorted(c.delivery.created_at for c in claimed) == [T0, T0 + 1, T0 + 2]
    store.claim(T0 + 10, 2, "w1", T0 + 30)  # leases that end before the first three's
    assert store.next_due() == T0 + 30
    again = store.claim(T0 + 30, 10, "w2", T0 + 90)
    assert sorted(c.delivery.created_at for c in again) == [T0 + 3, T0 + 4]
    assert store.next_due() == T0 + 60


def test_an_expired_lease_is_claimed_again_as_in_flight(store: Store) -> None:
    store.save_endpoint(endpoint())
    (delivery,) = publish_one(store)
    (first,) = store.claim(T0, 10, "w1", T0 + 60)
    assert store.claim(T0 + 59, 10, "w2", T0 + 120) == []
    assert store.next_due() == T0 + 60
    (second,) = store.claim(T0 + 60, 10, "w2", T0 + 120)
    assert second.delivery.id == delivery.id
    assert second.delivery.state is DeliveryState.IN_FLIGHT
    assert second.event == first.event


def test_a_claim_another_worker_took_over_refuses_the_old_result(store: Store) -> None:
    """w1's lease runs out and w2 claims the delivery: a token new to that claim.
    The first claim's result is refused, whoever reports it (two processes given
    one worker id, say); the second's is written, once."""
    store.save_endpoint(endpoint())
    (delivery,) = publish_one(store)
    (first,) = store.claim(T0, 10, "w1", T0 + 60)
    (second,) = store.claim(T0 + 60, 10, "w2", T0 + 120)
    assert second.delivery.lease_token not in (None, first.delivery.lease_token)
    stale = attempted(first, T0, 503)
    assert store.complete([stale], "w1") == 0
    assert store.complete([stale], "w2") == 0
    stored = store.get_delivery(delivery.id)
    assert stored is not None and stored.state is DeliveryState.IN_FLIGHT
    fresh = attempted(second, T0 + 60, 200)
    assert store.complete([fresh], "w2") == 1
    assert store.get_delivery(delivery.id) == unleased(fresh)
    assert store.complete([fresh], "w2") == 0
    assert store.next_due() is None


def test_a_stale_result_given_before_the_fresh_one_is_refused(store: Store) -> None:
    """w1's lease runs out and w1 itself claims the delivery again. Its result from
    the first claim (a 503) arrives first: refused, the row stays in flight; then the
    second claim's (the 200 the receiver really sent) is written."""
    store.save_endpoint(endpoint())
    (delivery,) = publish_one(store)
    (first,) = store.claim(T0, 10, "w1", T0 + 60)
    (second,) = store.claim(T0 + 60, 10, "w1", T0 + 120)
    stale = attempted(first, T0, 503)
    fresh = attempted(second, T0 + 60, 200)
    assert store.complete([stale], "w1") == 0
    stored = store.get_delivery(delivery.id)
    assert stored is not None and stored.state is DeliveryState.IN_FLIGHT
    assert stored.attempts == ()
    assert store.complete([fresh], "w1") == 1
    assert store.get_delivery(delivery.id) == unleased(fresh)


def test_a_stale_result_given_after_the_fresh_one_is_refused(store: Store) -> None:
    """w1 claims the delivery again after its lease ran out, and the second claim's
    result (a 503: retry later) is written first. The first claim's result arrives
    afterwards: refused while the row waits, and still refused once w1 has claimed
    the row a third time; that claim's result is written."""
    store.save_endpoint(endpoint())
    (delivery,) = publish_one(store)
    (first,) = store.claim(T0, 10, "w1", T0 + 60)
    (second,) = store.claim(T0 + 60, 10, "w1", T0 + 120)
    stale = attempted(first, T0, 500)
    fresh = attempted(second, T0 + 60, 503)
    assert fresh.state is DeliveryState.RETRY_SCHEDULED and fresh.next_attempt_at is not None
    assert store.complete([fresh], "w1") == 1
    assert store.complete([stale], "w1") == 0
    assert store.get_delivery(delivery.id) == unleased(fresh)
    due = fresh.next_attempt_at
    (third,) = store.claim(due, 10, "w1", due + 60)
    assert unleased(third.delivery) == unleased(fresh)
    assert store.complete([stale], "w1") == 0
    stored = store.get_delivery(delivery.id)
    assert stored is not None and stored.state is DeliveryState.IN_FLIGHT
    assert stored.attempts == fresh.attempts
    last = attempted(third, due, 200)
    assert store.complete([last], "w1") == 1
    assert store.get_delivery(delivery.id) == unleased(last)


def test_an_acknowledged_last_attempt_ends_delivered_whichever_result_comes_first(
    store: Store,
) -> None:
    """Two deliveries on their last attempt: w1's first claim of each failed (the
    record says ``failed``), its second claim of each got a 200 (``delivered``). For
    one the stale result is given first, for the other the fresh one: both end
    delivered, never failed."""
    store.save_endpoint(endpoint(1))
    store.save_endpoint(endpoint(2))
    publish_one(store)
    firsts = store.claim(T0, 10, "w1", T0 + 60)
    seconds = store.claim(T0 + 60, 10, "w1", T0 + 120)
    stale = {c.delivery.id: attempted(c, T0, 500, LAST_TRY) for c in firsts}
    fresh = {c.delivery.id: attempted(c, T0 + 60, 200, LAST_TRY) for c in seconds}
    assert {d.state for d in stale.values()} == {DeliveryState.FAILED}
    assert {d.state for d in fresh.values()} == {DeliveryState.DELIVERED}
    stale_first, fresh_first = sorted(stale)
    assert store.complete([stale[stale_first]], "w1") == 0
    assert store.complete([fresh[stale_first], fresh[fresh_first]], "w1") == 2
    assert store.complete([stale[fresh_first]], "w1") == 0
    for delivery_id, record in fresh.items():
        assert store.get_delivery(delivery_id) == unleased(record)
    assert store.count_deliveries(DeliveryFilter(state=DeliveryState.FAILED)) == 0


def test_a_result_from_no_claim_of_the_row_is_refused(store: Store) -> None:
    """Only the claim holding the row writes it: not a worker that never claimed it,
    nor, even in the holder's name, a record that came from no claim (read back from
    the store, or with a made-up token)."""
    store.save_endpoint(endpoint())
    (delivery,) = publish_one(store)
    (claim,) = store.claim(T0, 10, "w1", T0 + 60)
    done = attempted(claim, T0, 200)
    assert store.complete([done], "w2") == 0
    read_back = store.get_delivery(delivery.id)
    assert read_back is not None and read_back.lease_token is None
    assert store.complete([attrs.evolve(done, lease_token=None)], "w1") == 0
    assert store.complete([attrs.evolve(done, lease_token="made-up")], "w1") == 0
    assert store.get_delivery(delivery.id) == read_back
    assert store.complete([done], "w1") == 1
    written = store.get_delivery(delivery.id)
    assert written is not None and written.state is DeliveryState.DELIVERED
    assert written.lease_token is None  # the claim's token is not part of the stored record
    assert [d.lease_token for d in store.list_deliveries()] == [None]
    assert store.get_delivery(delivery.id) == unleased(done)


def test_a_released_claims_result_is_refused_once_the_row_is_claimed_again(
    store: Store,
) -> None:
    """``release`` ends the claim: after w1 released the delivery and claimed it
    again, the released claim's result is refused and the new one's written."""
    store.save_endpoint(endpoint())
    (delivery,) = publish_one(store)
    (first,) = store.claim(T0, 10, "w1", T0 + 60)
    store.release([delivery.id], "w1")
    (second,) = store.claim(T0, 10, "w1", T0 + 60)
    assert store.complete([attempted(first, T0, 500)], "w1") == 0
    fresh = attempted(second, T0, 200)
    assert store.complete([fresh], "w1") == 1
    assert store.get_delivery(delivery.id) == unleased(fresh)


def test_batches_wider_than_one_statement_are_written_whole(store: Store) -> None:
    """600 deliveries published, claimed and finished a call each (several statements
    each in SQL stores), and 250 saved at once, some new and some replacing."""
    for n in range(4):
        store.save_endpoint(endpoint(n))
    publish_many(store, CATALOG, [("message.sent", message(i), None) for i in range(150)], T0)
    claimed = store.claim(T0, 1000, "w1", T0 + 60)
    assert len(claimed) == 600
    assert store.count_deliveries(DeliveryFilter(state=DeliveryState.IN_FLIGHT)) == 600
    done = [delivered(c.delivery, T0, T0 + i / 1000) for i, c in enumerate(claimed)]
    assert store.complete(done, "w1") == 600
    assert store.complete(done, "w1") == 0
    assert sorted(store.list_deliveries(limit=1000), key=lambda d: d.id) == sorted(
        map(unleased, done), key=lambda d: d.id
    )
    failed = [attrs.evolve(d, state=DeliveryState.FAILED, reason="replaced") for d in done[:150]]
    fresh = [
        attrs.evolve(d, id=f"dlv_new_{i:03d}", state=DeliveryState.PENDING, attempts=())
        for i, d in enumerate(done[:100])
    ]
    store.save_deliveries(failed + fresh)
    assert store.count_deliveries(DeliveryFilter(state=DeliveryState.FAILED)) == 150
    assert store.count_deliveries(DeliveryFilter(state=DeliveryState.PENDING)) == 100
    assert store.get_delivery(fresh[-1].id) == unleased(fresh[-1])
    assert store.get_delivery(failed[-1].id) == unleased(failed[-1])


def test_a_batch_of_every_kind_of_result_is_written_each_as_given(store: Store) -> None:
    """Delivered (no due time, no reason), retrying (a due time) and failed (a reason)
    records in one call, interleaved, each read back as written."""
    for n in range(3):
        store.save_endpoint(endpoint(n))
    publish_many(store, CATALOG, [("message.sent", message(i), None) for i in range(20)], T0)
    claimed = store.claim(T0, 100, "w1", T0 + 60)
    assert len(claimed) == 60
    kinds = [
        lambda c: attempted(c, T0, 200),
        lambda c: attempted(c, T0, 503),
        lambda c: attempted(c, T0, 503, LAST_TRY),
    ]
    done = [kinds[i % 3](c) for i, c in enumerate(claimed)]
    assert {d.state for d in done} == {
        DeliveryState.DELIVERED,
        DeliveryState.RETRY_SCHEDULED,
        DeliveryState.FAILED,
    }
    assert all(d.reason for d in done if d.state is DeliveryState.FAILED)
    assert store.complete(done, "w1") == 60
    for d in done:
        assert store.get_delivery(d.id) == unleased(d)


def test_a_result_given_twice_in_a_batch_is_written_as_first_given(store: Store) -> None:
    store.save_endpoint(endpoint())
    (delivery,) = publish_one(store)
    (claim,) = store.claim(T0, 10, "w1", T0 + 60)
    done = delivered(claim.delivery, T0, T0 + 1)
    other = attrs.evolve(done, state=DeliveryState.FAILED, reason="second")
    assert store.complete([done, other], "w1") == 1
    assert store.get_delivery(delivery.id) == unleased(done)


def test_a_retry_scheduled_result_becomes_due_at_its_time(store: Store) -> None:
    store.save_endpoint(endpoint())
    publish_one(store)
    (first,) = store.claim(T0, 10, "w1", T0 + 60)
    attempt = Attempt(1, T0, T0 + 1, Outcome.HTTP_ERROR, status=503)
    later = attrs.evolve(
        first.delivery,
        state=DeliveryState.RETRY_SCHEDULED,
        next_attempt_at=T0 + 61,
        attempts=(attempt,),
    )
    assert store.complete([later], "w1") == 1
    assert store.next_due() == T0 + 61
    assert store.claim(T0 + 60, 10, "w1", T0 + 120) == []
    (claimed,) = store.claim(T0 + 61, 10, "w1", T0 + 121)
    assert unleased(claimed.delivery) == unleased(later)


def test_release_makes_claims_due_again_at_once(store: Store) -> None:
    store.save_endpoint(endpoint())
    publish_one(store, T0, 0)
    publish_one(store, T0 + 1, 1)
    claimed = store.claim(T0 + 5, 10, "w1", T0 + 60)
    store.release([c.delivery.id for c in claimed], "w2")
    assert store.claim(T0 + 5, 10, "w3", T0 + 60) == []
    store.release([c.delivery.id for c in claimed], "w1")
    again = store.claim(T0 + 5, 10, "w3", T0 + 60)
    assert sorted(c.delivery.id for c in again) == sorted(c.delivery.id for c in claimed)
    assert all(c.delivery.state is DeliveryState.PENDING for c in again)


def test_deliveries_of_a_deleted_endpoint_are_not_claimed(store: Store) -> None:
    store.save_endpoint(endpoint(1))
    store.save_endpoint(endpoint(2))
    publish_one(store)
    store.delete_endpoint("ep_1")
    claimed = store.claim(T0, 10, "w1", T0 + 60)
    assert [c.endpoint.id for c in claimed] == ["ep_2"]
    assert store.next_due() == T0 + 60


def test_listing_and_counting_filter_by_state_endpoint_event_and_time(store: Store) -> None:
    store.save_endpoint(endpoint(1))
    store.save_endpoint(endpoint(2))
    first = publish_one(store, T0, 0)
    second = publish_one(store, T0 + 10, 1)
    store.claim(T0, 1, "w1", T0 + 60)
    assert store.count_deliveries() == 4
    assert store.count_deliveries(DeliveryFilter(state=DeliveryState.IN_FLIGHT)) == 1
    assert store.count_deliveries(DeliveryFilter(state=DeliveryState.PENDING)) == 3
    by_endpoint = store.list_deliveries(DeliveryFilter(endpoint_id="ep_2"))
    assert [d.event_id for d in by_endpoint] == [first[0].event_id, second[0].event_id]
    by_event = DeliveryFilter(event_id=second[0].event_id)
    assert {d.id for d in store.list_deliveries(by_event)} == {d.id for d in second}
    assert store.count_deliveries(DeliveryFilter(created_since=T0 + 5)) == 2
    assert store.count_deliveries(DeliveryFilter(created_before=T0 + 5)) == 2
    everything = store.list_deliveries(limit=10)
    assert [d.created_at for d in everything] == sorted(d.created_at for d in everything)
    assert store.list_deliveries(limit=2, offset=1) == everything[1:3]


def test_save_deliveries_replaces_and_clears_the_lease(store: Store) -> None:
    store.save_endpoint(endpoint())
    (delivery,) = publish_one(store)
    (claim,) = store.claim(T0, 10, "w1", T0 + 60)
    cancelled = attrs.evolve(
        delivery, state=DeliveryState.FAILED, next_attempt_at=None, reason="cancelled"
    )
    store.save_deliveries([cancelled])
    assert store.get_delivery(delivery.id) == cancelled
    assert store.complete([claim.delivery], "w1") == 0
    assert store.claim(T0 + 100, 10, "w2", T0 + 160) == []


def finish(store: Store, deliveries: list[Delivery], state: DeliveryState, at: float) -> None:
    ids = {d.id for d in deliveries}
    claimed = [c.delivery for c in store.claim(at, 1000, "w", at + 60) if c.delivery.id in ids]
    assert len(claimed) == len(ids)
    store.complete(
        [attrs.evolve(d, state=state, next_attempt_at=None, reason="x") for d in claimed], "w"
    )


def test_retention_prunes_old_finished_deliveries_and_their_events(store: Store) -> None:
    store.save_endpoint(endpoint())
    old = publish_one(store, T0, 0)
    finish(store, old, DeliveryState.DELIVERED, T0)
    old_failed = publish_one(store, T0 + 1, 1)
    finish(store, old_failed, DeliveryState.FAILED, T0 + 1)
    recent = publish_one(store, T0 + 1000, 2)
    finish(store, recent, DeliveryState.DELIVERED, T0 + 1000)
    waiting = publish_one(store, T0 + 2, 3)
    pruned = apply_retention(store, Retention(delivered=500), T0 + 1100)
    assert pruned == 1
    assert store.get_delivery(old[0].id) is None
    assert store.get_event(old[0].event_id) is None
    for kept in (old_failed, recent, waiting):
        assert store.get_delivery(kept[0].id) is not None
    assert apply_retention(store, Retention(delivered=None, failed=500), T0 + 1100) == 1
    assert store.get_delivery(waiting[0].id) is not None
    with pytest.raises(ConfigError, match="pending"):
        store.prune(DeliveryState.PENDING, T0 + 10_000, 10)


def test_pruning_keeps_an_event_that_still_has_deliveries(store: Store) -> None:
    store.save_endpoint(endpoint(1))
    store.save_endpoint(endpoint(2))
    first, second = publish_one(store)
    finish(store, [first], DeliveryState.DELIVERED, T0)
    assert store.prune(DeliveryState.DELIVERED, T0 + 1, 10) == 1
    assert store.get_event(first.event_id) is not None
    assert store.get_delivery(second.id) is not None


def test_schema_status_is_current(store: Store) -> None:
    status = store.schema_status()
    assert status.version == status.latest and status.pending == 0


def test_concurrent_claimers_never_share_a_delivery(store: Store) -> None:
    store.save_endpoint(endpoint())
    publish_many(store, CATALOG, [("message.sent", message(i), None) for i in range(200)], T0)
    got: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        mine = got.setdefault(name, [])
        while claimed := store.claim(T0, 7, name, T0 + 60):
            mine.extend(c.delivery.id for c in claimed)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    everything = [d for ids in got.values() for d in ids]
    assert len(everything) == 200
    assert len(set(everything)) == 200


def test_event_bodies_round_trip_byte_for_byte(store: Store) -> None:
    body = '{"event":"x","data":{"text":"नमस्ते \\u2028 \u00e9"}}'.encode()
    store.add_events([(Event("evt_bytes", "message.sent", T0, body), [])])
    stored = store.get_event("evt_bytes")
    assert stored is not None and stored.body == body


Published = tuple[str, dict[str, str], str | None]


def publish_from_threads(
    store: Store, calls: Sequence[Sequence[Sequence[Published]]]
) -> list[Exception | None]:
    """Thread ``n`` makes the ``publish_many`` calls ``calls[n]``, all threads starting
    together; the error each thread met."""
    errors: list[Exception | None] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def worker(n: int) -> None:
        start.wait()
        try:
            for batch in calls[n]:
                publish_many(store, CATALOG, batch, T0)
        except Exception as exc:
            errors[n] = exc

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


def test_threads_publishing_at_once_store_every_event_once(store: Store) -> None:
    for n in range(3):
        store.save_endpoint(endpoint(n))
    calls = [[[("message.sent", message(i), f"evt_{t}_{i}")] for i in range(25)] for t in range(16)]
    assert publish_from_threads(store, calls) == [None] * 16
    stored = store.list_deliveries(limit=10_000)
    assert len(stored) == 16 * 25 * 3
    assert len({d.id for d in stored}) == len(stored)
    expected = {event_id for thread in calls for ((_, _, event_id),) in thread}
    assert {d.event_id for d in stored} == expected
    assert all(store.get_event(str(event_id)) is not None for event_id in expected)


def test_a_duplicate_among_concurrent_publishers_fails_only_its_own_batch(store: Store) -> None:
    store.save_endpoint(endpoint())
    publish(store, CATALOG, "message.sent", message(), T0, event_id="evt_dup")
    calls = [[[("message.sent", message(t), f"evt_{t}")]] for t in range(8)]
    calls[3] = [[("message.sent", message(3), "evt_3"), ("message.sent", message(), "evt_dup")]]
    errors = publish_from_threads(store, calls)
    assert isinstance(errors[3], DuplicateEvent)
    assert errors[:3] + errors[4:] == [None] * 7
    stored = {d.event_id for d in store.list_deliveries(limit=100)}
    assert stored == {"evt_dup"} | {f"evt_{t}" for t in range(8) if t != 3}
    assert store.get_event("evt_3") is None


@pytest.mark.parametrize(
    "check",
    [
        test_a_claim_another_worker_took_over_refuses_the_old_result,
        test_a_stale_result_given_before_the_fresh_one_is_refused,
        test_a_stale_result_given_after_the_fresh_one_is_refused,
        test_an_acknowledged_last_attempt_ends_delivered_whichever_result_comes_first,
        test_a_result_from_no_claim_of_the_row_is_refused,
        test_batches_wider_than_one_statement_are_written_whole,
        test_a_result_given_twice_in_a_batch_is_written_as_first_given,
    ],
)
def test_sqlite_results_are_written_alike_without_update_from(
    check: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite before 3.33 has no ``UPDATE ... FROM``: results then take a statement each."""
    monkeypatch.setattr(sqlite, "_UPDATE_FROM", False)
    store = SQLiteStore(tmp_path / "store.db")
    try:
        check(store)
    finally:
        store.close()
