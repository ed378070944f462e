"""The due-queue: due order, caps, backlogs, replacement, discard and deadlines."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from webhook_core.errors import ConfigError
from webhook_core.scheduling import DueQueue


def test_hands_out_in_due_order() -> None:
    q = DueQueue()
    q.push("c", "e1", 30.0)
    q.push("a", "e2", 10.0)
    q.push("b", "e3", 20.0)
    q.push("d", "e1", 20.0)  # same due time as b: first pushed, first out
    assert len(q) == 4
    assert q.take(100.0) == [("a", "e2"), ("b", "e3"), ("d", "e1"), ("c", "e1")]
    assert len(q) == 0
    assert q.in_flight == 4


def test_not_yet_due_is_held() -> None:
    q = DueQueue()
    q.push("a", "e1", 10.0)
    q.push("b", "e1", 20.0)
    assert q.take(9.999) == []
    assert q.take(10.0) == [("a", "e1")]
    assert q.take(19.0) == []
    assert q.next_deadline() == 20.0
    assert q.take(25.0) == [("b", "e1")]
    assert q.take(1e9) == []


def test_limit_argument() -> None:
    q = DueQueue()
    for i in range(5):
        q.push(f"d{i}", f"e{i}", float(i))
    assert q.take(10.0, limit=2) == [("d0", "e0"), ("d1", "e1")]
    assert q.take(10.0, limit=0) == []
    assert q.take(10.0) == [("d2", "e2"), ("d3", "e3"), ("d4", "e4")]


def test_global_cap() -> None:
    q = DueQueue(max_in_flight=2)
    for i in range(4):
        q.push(f"d{i}", f"e{i}", 0.0)
    assert q.take(1.0) == [("d0", "e0"), ("d1", "e1")]
    assert q.take(1.0) == []
    assert q.in_flight == 2
    assert q.next_deadline() is None  # every slot is taken
    q.done("e0")
    assert q.next_deadline() == 0.0
    assert q.take(1.0) == [("d2", "e2")]
    assert q.take(1.0) == []


def test_per_endpoint_cap_with_backlog() -> None:
    q = DueQueue(per_endpoint=1)
    q.push("a1", "A", 1.0)
    q.push("a2", "A", 2.0)
    q.push("a3", "A", 3.0)
    q.push("b1", "B", 4.0)
    assert q.take(10.0) == [("a1", "A"), ("b1", "B")]
    assert len(q) == 2  # a2 and a3 wait in A's backlog
    assert q.take(10.0) == []
    assert q.next_deadline() is None  # nothing could be handed out until A frees a slot
    q.done("A")
    assert q.next_deadline() == 2.0
    assert q.take(10.0) == [("a2", "A")]
    assert q.take(10.0) == []
    q.done("B")
    assert q.take(10.0) == []  # B's slot does not help A
    q.done("A")
    assert q.take(10.0) == [("a3", "A")]
    assert len(q) == 0


def test_caps_override_mapping() -> None:
    q = DueQueue(per_endpoint=1)
    for i in range(4):
        q.push(f"a{i}", "A", float(i))
        q.push(f"b{i}", "B", float(i) + 0.5)
    caps = {"A": 3}
    assert q.take(10.0, caps=caps) == [("a0", "A"), ("b0", "B"), ("a1", "A"), ("a2", "A")]
    q.done("A")
    assert q.take(10.0, caps=caps) == [("a3", "A")]
    # Raising a cap releases the backlog without waiting for a done().
    assert q.take(10.0, caps={"B": 3}) == [("b1", "B"), ("b2", "B")]
    # A cap of zero holds an endpoint's work back, without losing it.
    q2 = DueQueue()
    q2.push("x", "X", 0.0)
    assert q2.take(1.0, caps={"X": 0}) == []
    assert len(q2) == 1
    assert q2.next_deadline() is None
    assert q2.take(1.0) == [("x", "X")]


def test_repush_replaces() -> None:
    q = DueQueue()
    q.push("a", "e1", 10.0)
    q.push("a", "e1", 50.0)
    assert len(q) == 1
    assert q.next_deadline() == 50.0
    assert q.take(20.0) == []
    assert q.take(50.0) == [("a", "e1")]
    assert q.take(100.0) == []
    # Moving it earlier works too.
    q.push("b", "e1", 80.0)
    q.push("b", "e1", 60.0)
    assert q.take(70.0) == [("b", "e1")]
    assert q.take(100.0) == []


def test_repush_with_the_same_due_time_replaces_the_endpoint() -> None:
    q = DueQueue()
    q.push("a", "e1", 5.0)
    q.push("a", "e2", 5.0)
    assert q.take(10.0) == [("a", "e2")]
    assert q.take(10.0) == []
    q.done("e2")
    with pytest.raises(ValueError, match="e1"):
        q.done("e1")


def test_repush_of_a_backlogged_item() -> None:
    q = DueQueue(per_endpoint=1)
    q.push("a", "E", 0.0)
    q.push("b", "E", 1.0)
    assert q.take(5.0) == [("a", "E")]
    q.push("b", "E", 100.0)  # b was in the backlog; now it is due later
    q.done("E")
    assert q.next_deadline() == 100.0
    assert q.take(5.0) == []
    assert q.take(100.0) == [("b", "E")]
    assert len(q) == 0


def test_discard() -> None:
    q = DueQueue()
    q.push("a", "e1", 1.0)
    q.push("b", "e1", 2.0)
    q.discard("a")
    q.discard("never-pushed")
    assert len(q) == 1
    assert q.next_deadline() == 2.0
    assert q.take(10.0) == [("b", "e1")]


def test_discard_in_backlog_does_not_strand_the_rest() -> None:
    # A discarded item ahead of others in an endpoint's backlog must not keep them
    # waiting for a done() that never comes.
    q = DueQueue(per_endpoint=1)
    for name in ("a", "b", "c"):
        q.push(name, "E", 0.0)
    assert q.take(1.0) == [("a", "E")]
    q.discard("b")
    q.done("E")
    assert len(q) == 1
    assert q.next_deadline() == 0.0
    assert q.take(1.0) == [("c", "E")]


def test_next_deadline_semantics() -> None:
    q = DueQueue(max_in_flight=1)
    assert q.next_deadline() is None  # nothing queued
    q.push("a", "e1", 30.0)
    q.push("b", "e2", 10.0)
    assert q.next_deadline() == 10.0  # the earliest, even if not due yet
    q.discard("b")
    assert q.next_deadline() == 30.0  # discarded items do not count
    assert q.take(30.0) == [("a", "e1")]
    q.push("c", "e2", 5.0)
    assert q.next_deadline() is None  # the only slot is taken
    q.done("e1")
    assert q.next_deadline() == 5.0


def test_done_without_in_flight_raises() -> None:
    q = DueQueue()
    with pytest.raises(ValueError, match="no delivery to endpoint 'e1' is in flight"):
        q.done("e1")
    q.push("a", "e1", 0.0)
    q.take(0.0)
    q.done("e1")
    with pytest.raises(ValueError):
        q.done("e1")
    assert q.in_flight == 0


@pytest.mark.parametrize(
    "kwargs", [{"max_in_flight": 0}, {"max_in_flight": -1}, {"per_endpoint": 0}]
)
def test_caps_must_be_positive(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        DueQueue(**kwargs)


# --- stateful test against a simple model ---------------------------------------------

ENDPOINTS = ("e1", "e2", "e3")
GLOBAL_CAP = 4
PER_ENDPOINT = 2


class DueQueueMachine(RuleBasedStateMachine):
    """The queue against a dict model: nothing lost, nothing handed out twice, caps kept."""

    handed_out = Bundle("handed_out")

    def __init__(self) -> None:
        super().__init__()
        self.queue = DueQueue(max_in_flight=GLOBAL_CAP, per_endpoint=PER_ENDPOINT)
        self.queued: dict[str, tuple[str, float]] = {}  # id -> (endpoint, due)
        self.running: Counter[str] = Counter()
        self.in_flight_ids: set[str] = set()
        self.ever_handed: Counter[str] = Counter()
        self.pushes: Counter[str] = Counter()
        self.now = 0.0
        self.caps: dict[str, int] = {}
        self.take_caps: dict[str, int] = {}  # the caps the queue last saw

    def cap(self, endpoint: str, caps: dict[str, int] | None = None) -> int:
        return (self.caps if caps is None else caps).get(endpoint, PER_ENDPOINT)

    @rule(
        n=st.integers(0, 11),
        endpoint=st.sampled_from(ENDPOINTS),
        offset=st.sampled_from([-5.0, 0.0, 0.0, 1.0, 3.0, 10.0]),
    )
    def push(self, n: int, endpoint: str, offset: float) -> None:
        delivery_id = f"d{n}"
        if delivery_id in self.in_flight_ids:
            return  # a delivery is re-queued only after its attempt is done
        self.queue.push(delivery_id, endpoint, self.now + offset)
        self.queued[delivery_id] = (endpoint, self.now + offset)
        self.pushes[delivery_id] += 1

    @rule(n=st.integers(0, 11))
    def discard(self, n: int) -> None:
        self.queue.discard(f"d{n}")
        self.queued.pop(f"d{n}", None)

    @rule(step=st.sampled_from([0.0, 0.5, 1.0, 5.0]))
    def advance(self, step: float) -> None:
        self.now += step

    @rule(
        caps=st.sampled_from(
            [{}, {"e1": 1}, {"e2": 3}, {"e1": 0, "e3": 1}, {"e1": 4, "e2": 4, "e3": 4}]
        )
    )
    def set_caps(self, caps: dict[str, int]) -> None:
        self.caps = caps

    @rule(target=handed_out, limit=st.none() | st.integers(0, 3))
    def take(self, limit: int | None) -> list[tuple[str, str]]:
        taken = self.queue.take(self.now, limit=limit, caps=self.caps)
        self.take_caps = self.caps
        if limit is not None:
            assert len(taken) <= limit
        dues = []
        for delivery_id, endpoint in taken:
            assert delivery_id in self.queued, f"{delivery_id} handed out but not queued"
            queued_endpoint, due = self.queued.pop(delivery_id)
            assert endpoint == queued_endpoint
            assert due <= self.now
            assert delivery_id not in self.in_flight_ids, f"{delivery_id} handed out twice"
            self.in_flight_ids.add(delivery_id)
            self.running[endpoint] += 1
            assert self.running[endpoint] <= self.cap(endpoint)
            self.ever_handed[delivery_id] += 1
            dues.append(due)
        assert sum(self.running.values()) <= GLOBAL_CAP
        # Work-conserving: whatever is still due was held back by a cap or the limit.
        if limit is None or len(taken) < limit:
            global_full = sum(self.running.values()) >= GLOBAL_CAP
            for endpoint, due in self.queued.values():
                if due <= self.now and not global_full:
                    assert self.running[endpoint] >= self.cap(endpoint), (
                        f"due work for {endpoint} left behind with a free slot"
                    )
        return taken

    @rule(batch=consumes(handed_out))
    def finish(self, batch: list[tuple[str, str]]) -> None:
        for delivery_id, endpoint in batch:
            self.queue.done(endpoint)
            self.running[endpoint] -= 1
            self.in_flight_ids.discard(delivery_id)

    @precondition(lambda self: self.queued or self.in_flight_ids)
    @rule()
    def deadline_is_honest(self) -> None:
        deadline = self.queue.next_deadline()
        if sum(self.running.values()) >= GLOBAL_CAP:
            assert deadline is None
            return
        # next_deadline() cannot know caps changed since the last take(): judge it by
        # the caps that take() last saw.
        startable = [
            due
            for endpoint, due in self.queued.values()
            if self.running[endpoint] < self.cap(endpoint, self.take_caps)
        ]
        if startable:
            # The driver must be woken no later than the first startable item is due.
            assert deadline is not None
            assert deadline <= min(startable)
        if deadline is not None:
            assert deadline >= min(due for _, due in self.queued.values())

    @invariant()
    def counts_agree(self) -> None:
        assert len(self.queue) == len(self.queued)
        assert self.queue.in_flight == sum(self.running.values())
        assert self.queue.in_flight <= GLOBAL_CAP

    def teardown(self) -> None:
        # Nothing is lost: finishing everything and raising the caps drains the queue,
        # handing out exactly what the model still holds.
        for endpoint, count in self.running.items():
            for _ in range(count):
                self.queue.done(endpoint)
        drained: list[tuple[str, str]] = []
        for _ in range(100):
            batch = self.queue.take(self.now + 1e6)
            if not batch:
                break
            drained.extend(batch)
            for _, endpoint in batch:
                self.queue.done(endpoint)
        assert sorted(drained) == sorted((i, e) for i, (e, _) in self.queued.items())
        assert len(self.queue) == 0
        assert self.queue.next_deadline() is None


DueQueueMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
test_due_queue_against_model = DueQueueMachine.TestCase
