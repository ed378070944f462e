"""Operations on stored deliveries: replaying failed ones in bulk, on every store."""

from __future__ import annotations

import attrs
import pytest

from tests.stores.test_store_conformance import T0, endpoint, finish, publish_one, store
from transports.driving.operations import NotFound, replay_failed_since
from transports.stores.interface import DeliveryFilter, Store
from webhook_core import ConfigError, DeliveryState, EndpointState

__all__ = ["store"]


def test_replay_failed_since_replays_in_batches_and_reports_progress(store: Store) -> None:
    store.save_endpoint(endpoint(1))
    store.save_endpoint(endpoint(2))
    old = publish_one(store, T0, 0)
    finish(store, old, DeliveryState.FAILED, T0)
    failed = []
    for i in range(1, 6):
        batch = publish_one(store, T0 + 100 + i, i)
        finish(store, batch, DeliveryState.FAILED, T0 + 100 + i)
        failed += batch
    delivered = publish_one(store, T0 + 200, 9)
    finish(store, delivered, DeliveryState.DELIVERED, T0 + 200)
    store.save_endpoint(endpoint(2, state=EndpointState.DISABLED))
    progress: list[tuple[int, int]] = []

    count = replay_failed_since(
        store, T0 + 100, T0 + 300, on_progress=lambda *p: progress.append(p), batch_size=3
    )

    replayable = [d for d in failed if d.endpoint_id == "ep_1"]
    assert count == len(replayable) == 5
    assert progress == [(3, 10), (6, 10), (9, 10), (10, 10)]
    fresh = store.list_deliveries(DeliveryFilter(state=DeliveryState.PENDING), limit=100)
    assert sorted(d.replay_of or "" for d in fresh) == sorted(d.id for d in replayable)
    assert all(d.created_at == T0 + 300 and d.attempts == () for d in fresh)
    assert {d.event_id for d in fresh} == {d.event_id for d in replayable}


def test_replay_failed_since_for_one_endpoint(store: Store) -> None:
    store.save_endpoint(endpoint(1))
    store.save_endpoint(endpoint(2))
    batch = publish_one(store, T0, 0)
    finish(store, batch, DeliveryState.FAILED, T0)
    assert replay_failed_since(store, T0, T0 + 10, endpoint_id="ep_2") == 1
    (fresh,) = store.list_deliveries(DeliveryFilter(state=DeliveryState.PENDING))
    assert fresh.endpoint_id == "ep_2"


def test_replay_failed_since_refuses_an_unknown_or_inactive_endpoint(store: Store) -> None:
    store.save_endpoint(attrs.evolve(endpoint(1), state=EndpointState.DISABLED))
    with pytest.raises(NotFound, match="ep_9"):
        replay_failed_since(store, T0, T0 + 10, endpoint_id="ep_9")
    with pytest.raises(ConfigError, match="ep_1 is disabled"):
        replay_failed_since(store, T0, T0 + 10, endpoint_id="ep_1")
