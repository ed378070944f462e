"""A hypothesis state machine drives the threaded service against a model.

Rules publish events, change what each receiver answers (2xx, 5xx, 410,
``Retry-After``, timeouts, refused connections, redirects), let virtual time
pass with a dispatcher running (a new worker, or the last one restarted) or
with none, and crash workers: a crashed worker claims due deliveries through
the store (``store.claim``) and dies before sending them, or after sending
them but before writing the results (what a killed process leaves behind), or
freezes there and writes its results later, perhaps after its lease ran out
and a dispatcher or another worker took the claim over. Dispatchers are
stopped gracefully at the end of each run, so between rules nothing is in
flight but the crashed workers' claims.

After every rule, and once more when every lease has run out and every retry
has been made, the store is checked against what the model published and
what the receiver saw:

* nothing lost: each (event, subscribed active endpoint) pair has exactly one
  delivery, and nothing else has one;
* each delivery's attempts are exactly the requests sent for it by
  dispatchers and by frozen workers whose late write was accepted, in order,
  with the answers the receiver gave; never more than the policy's attempts,
  never more abandoned attempts than crashed claims or than ``max_abandoned``;
* a late write is accepted exactly for the claims no one took over;
* no delivery succeeds twice: at most one successful attempt, it is the last,
  and ``delivered`` means it happened; the receiver saw at least that success;
* ``in_flight`` only under a crashed worker's claim; at the end every delivery
  is finished, and a failed one failed for a reason the policy gives (attempts
  used up, abandoned too often, ``410 Gone``, endpoint disabled).

Virtual time: the clock does not jump by itself during a run. The test moves
it from one due time to the next and waits at each until the store shows the
dispatcher has settled (nothing due, nothing in flight but crashed claims,
every ``410`` turned into a disabled endpoint), so runs are reproducible.
"""

from __future__ import annotations

import itertools
import math
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests import pg
from transports.clocks import VirtualClock
from transports.http.transport import HttpResponse, TransportError, attempt_result
from transports.stores.interface import DeliveryFilter, Store
from transports.stores.memory import MemoryStore
from transports.stores.sqlite import SQLiteStore
from transports.sync.service import ThreadedWebhookService
from transports.testing import RecordingReceiver
from webhook_core import (
    VERIFICATION_EVENT,
    Delivery,
    DeliveryState,
    EndpointState,
    Finish,
    HttpRequest,
    Outcome,
    RetryPolicy,
    begin_attempt,
    delivery_machine,
)

EPOCH = 1_700_000_000.0
POLICY = RetryPolicy(schedule=(60.0, 300.0, 900.0), max_abandoned=2)
LEASE = 60.0  # the service's default lease for a 30 s deadline; crashed workers take the same
MAX_MOMENTS = 1000  # due times one run may pass through
SETTLE = 10.0  # real seconds a dispatcher may take to settle one virtual moment
EVERYTHING = DeliveryFilter()
LIVE = "live"

# (URL, event patterns, the published events those patterns select): the fan-out
# depends on the event's name.
ENDPOINTS = (
    (
        "https://a.receiver.example/hook",
        ("*",),
        {"message.sent", "payment.processed", "campaign.completed"},
    ),
    ("https://b.receiver.example/hook", ("message.*",), {"message.sent"}),
    (
        "https://c.receiver.example/hook",
        ("payment.processed", "campaign.*"),
        {"payment.processed", "campaign.completed"},
    ),
)
EVENTS = {
    "message.sent": {"message_id": "m1", "channel": "sms", "to": "+919800000000", "status": "sent"},
    "payment.processed": {
        "payment_id": "p1",
        "amount": 100,
        "currency": "INR",
        "status": "processed",
    },
    "campaign.completed": {
        "campaign_id": "c1",
        "name": "Diwali",
        "channel": "sms",
        "status": "completed",
    },
}
FAILURES = (
    500,
    503,
    410,
    301,
    HttpResponse(503, (("Retry-After", "120"),), b""),
    HttpResponse(429, (("Retry-After", "0"),), b""),
    Outcome.TIMEOUT,
    Outcome.CONNECT_ERROR,
)
THEN = (200, 204, 500, Outcome.TIMEOUT)  # what an endpoint answers after its failures
RUN_FOR = (0.0, 30.0, 61.0, 120.0, 400.0, 1000.0, 2000.0)

Answer = int | HttpResponse | Outcome


@attrs.frozen
class Sent:
    """One delivery request the receiver answered."""

    delivery_id: str
    url: str
    attempt: int
    answer: int | Outcome  # the status, or the error the exchange ended with
    worker: str  # LIVE for a running dispatcher, else the crashed worker's name


@attrs.frozen
class Stalled:
    """A worker that froze after sending its claims, and may still write the results."""

    name: str
    lease_until: float
    records: list[Delivery]


class Receiver:
    """The receivers' side: scripted answers (a ``RecordingReceiver``) and a log of
    which delivery got which answer, as the threaded driver's transport."""

    def __init__(self, clock: VirtualClock) -> None:
        self.recording = RecordingReceiver(clock)
        self._lock = threading.Lock()
        self.log: list[Sent] = []

    def answer(self, url: str, *answers: Answer) -> None:
        self.recording.script(url, *answers)

    def send(self, request: HttpRequest) -> HttpResponse:
        return self._exchange(request, LIVE)

    def send_for(self, worker: str, request: HttpRequest) -> HttpResponse | TransportError:
        try:
            return self._exchange(request, worker)
        except TransportError as exc:
            return exc

    def close(self) -> None:
        return None

    def _exchange(self, request: HttpRequest, worker: str) -> HttpResponse:
        headers = dict(request.headers)
        handshake = headers["X-Netasampark-Event"] == VERIFICATION_EVENT
        answer: int | Outcome
        try:
            response = self.recording.handle(request)
            answer = response.status
        except TransportError as exc:
            answer = exc.kind
            raise
        finally:
            if not handshake:
                sent = Sent(
                    headers["X-Netasampark-Delivery"],
                    request.url,
                    int(headers["X-Netasampark-Attempt"]),
                    answer,
                    worker,
                )
                with self._lock:
                    self.log.append(sent)
        return response

    def sent(self, delivery_id: str) -> list[Sent]:
        with self._lock:
            return [s for s in self.log if s.delivery_id == delivery_id]


def _key(attempt_status: int | None, outcome: Outcome) -> int | Outcome:
    return attempt_status if attempt_status is not None else outcome


class DeliveryMachine(RuleBasedStateMachine):
    """Publishing, receivers, time and crashes against one store; see the module doc."""

    open_store: Callable[[Path], Store]

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="webhooks-stateful-"))
        self.store = self.open_store(self.tmp)
        self.clock = VirtualClock(EPOCH, autojump=False)
        self.receiver = Receiver(self.clock)
        self.service = self._new_service()
        self.endpoint_ids: list[str] = []
        self.disabled: set[str] = set()  # endpoints that answered a live 410
        self.expected: set[tuple[str, str]] = set()  # (event id, endpoint id)
        self.dead_claims: Counter[str] = Counter()  # delivery id -> claims by crashed workers
        self.dead_leases: dict[str, float] = {}  # delivery id -> when the last crashed claim ends
        self.holder: dict[str, str] = {}  # delivery id -> the crashed worker that holds it
        self.dead_workers = itertools.count(1)
        self.stalled: list[Stalled] = []
        self.written_late: set[tuple[str, str]] = set()  # (stalled worker, delivery id)

    def _new_service(self) -> ThreadedWebhookService:
        return ThreadedWebhookService(
            self.store, http=self.receiver, clock=self.clock, policy=POLICY, lease=LEASE
        )

    # -- rules ---------------------------------------------------------------------

    @initialize()
    def verified_endpoints(self) -> None:
        self.service.start()
        try:
            for url, patterns, _ in ENDPOINTS:
                self.endpoint_ids.append(self.service.add_endpoint(url, events=patterns).id)
            self.service.drain(timeout=SETTLE)
        finally:
            self.service.stop(timeout=SETTLE)
        for endpoint_id in self.endpoint_ids:
            endpoint = self.store.get_endpoint(endpoint_id)
            assert endpoint is not None and endpoint.state is EndpointState.ACTIVE

    @rule(names=st.lists(st.sampled_from(sorted(EVENTS)), min_size=1, max_size=3))
    def publish(self, names: list[str]) -> None:
        results = self.service.publish_many((name, EVENTS[name], None) for name in names)
        for name, result in zip(names, results, strict=True):
            subscribed = {
                endpoint_id
                for endpoint_id, (_, _, selected) in zip(self.endpoint_ids, ENDPOINTS, strict=True)
                if endpoint_id not in self.disabled and name in selected
            }
            assert result.deliveries == len(subscribed)
            self.expected |= {(result.event.id, endpoint_id) for endpoint_id in subscribed}

    @rule(
        endpoint=st.integers(0, len(ENDPOINTS) - 1),
        failures=st.lists(st.sampled_from(FAILURES), max_size=3),
        then=st.sampled_from(THEN),
    )
    def receiver_answers(self, endpoint: int, failures: list[Answer], then: Answer) -> None:
        """The endpoint answers its next requests with ``failures``, then ``then`` for ever."""
        self.receiver.answer(ENDPOINTS[endpoint][0], *failures, then)

    @rule(seconds=st.sampled_from(RUN_FOR), restart=st.booleans())
    def run(self, seconds: float, restart: bool) -> None:
        """A dispatcher (the last one restarted, or a new worker) runs for ``seconds``."""
        if not restart:
            self.service = self._new_service()
        self._run_until(self.clock.now() + seconds)

    def _run_until(self, target: float) -> None:
        """Run the dispatcher, moving the clock from one due time to the next up to ``target``."""
        self.service.start()
        try:
            for _ in range(MAX_MOMENTS):
                self._wait_until_settled()
                due = self.store.next_due()
                if due is None or due > target:
                    break
                self.clock.jump_to(due)
            else:
                raise AssertionError(
                    f"still busy after {MAX_MOMENTS} due times: {self._deliveries()}"
                )
            if math.isfinite(target):
                self.clock.jump_to(target)
        finally:
            self.service.stop(timeout=SETTLE)
        now = self.clock.now()  # the dispatcher took over every claim whose lease ran out
        self.holder = {d: w for d, w in self.holder.items() if self.dead_leases[d] > now}

    @precondition(lambda self: self.something_due())
    @rule(limit=st.integers(1, 5), how=st.sampled_from(["before sending", "after", "stalls"]))
    def dispatcher_dies(self, limit: int, how: str) -> None:
        """A worker claims due deliveries and dies before sending them, or after sending
        them but before writing the results, or stalls there (and may write later)."""
        worker = self._crash(limit, send=how != "before sending")
        if how == "stalls" and worker.records:
            self.stalled.append(worker)

    def _crash(self, limit: int, *, send: bool) -> Stalled:
        now = self.clock.now()
        worker = Stalled(f"dead-{next(self.dead_workers)}", now + LEASE, [])
        for claim in self.store.claim(now, limit, worker.name, worker.lease_until):
            self.dead_claims[claim.delivery.id] += 1
            self.dead_leases[claim.delivery.id] = worker.lease_until
            self.holder[claim.delivery.id] = worker.name
            record, request = begin_attempt(
                claim.delivery, claim.event, claim.endpoint, now, POLICY
            )
            if send and request is not None:
                response = self.receiver.send_for(worker.name, request)
                result, _ = attempt_result(now, now, response)
                record, _ = delivery_machine.apply(record, Finish(result), POLICY)
            if record.state is not DeliveryState.IN_FLIGHT:
                worker.records.append(record)
        return worker

    @precondition(lambda self: self.stalled)
    @rule(data=st.data())
    def stalled_worker_writes(self, data: st.DataObject) -> None:
        """A stalled worker wakes and writes its results (accepted for claims no one took over)."""
        self._write_late(self.stalled.pop(data.draw(st.integers(0, len(self.stalled) - 1))))

    @precondition(lambda self: self.something_due())
    @rule(
        limit=st.integers(1, 5),
        seconds=st.sampled_from(RUN_FOR),
        taken_over_by=st.sampled_from(["a dispatcher", "a worker that dies", "nobody"]),
    )
    def worker_stalls_past_its_lease(self, limit: int, seconds: float, taken_over_by: str) -> None:
        """A worker sends its claims and freezes past its lease; a dispatcher takes them
        over, or another worker claims them and dies, or no one runs meanwhile; then the
        frozen worker wakes and writes its results (accepted only where no one took over)."""
        worker = self._crash(limit, send=True)
        if taken_over_by == "a dispatcher":
            self.run(LEASE + seconds, restart=False)
        else:
            self.clock.jump_to(worker.lease_until + seconds)
            if taken_over_by == "a worker that dies":
                self._crash(limit, send=seconds > 0)
        self._write_late(worker)

    @rule(seconds=st.sampled_from(RUN_FOR))
    def no_dispatcher_runs(self, seconds: float) -> None:
        """Time passes with every dispatcher down."""
        self.clock.advance(seconds)

    def _write_late(self, worker: Stalled) -> None:
        mine = [d for d in worker.records if self.holder.get(d.id) == worker.name]
        written = self.store.complete(worker.records, worker.name)
        assert written == len(mine), (
            f"{worker.name} wrote {written} of {len(worker.records)} results; "
            f"it still held the claim of {len(mine)}"
        )
        self.written_late |= {(worker.name, d.id) for d in mine}
        for d in mine:
            del self.holder[d.id]

    def something_due(self) -> bool:
        """Whether a delivery is due (or a lease has run out): a crash then leaves work behind."""
        due = self.store.next_due()
        return due is not None and due <= self.clock.now()

    # -- checks --------------------------------------------------------------------

    def _wait_until_settled(self) -> None:
        """Wait (real time) until the running dispatcher has done all it can at this moment."""
        deadline = time.monotonic() + SETTLE
        while not self._settled():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the dispatcher did not settle within {SETTLE:g} s at "
                    f"t={self.clock.now() - EPOCH:g}: {self._deliveries()}"
                )
            time.sleep(0.002)

    def _settled(self) -> bool:
        now = self.clock.now()
        due = self.store.next_due()
        if due is not None and due <= now:
            return False
        in_flight = self.store.list_deliveries(
            DeliveryFilter(state=DeliveryState.IN_FLIGHT), limit=10**6
        )
        # A crashed worker's claim stays in flight until its lease ends; any other claim
        # is the live dispatcher's, and time must not pass under a running attempt.
        if any(self.dead_leases.get(d.id, now) <= now for d in in_flight):
            return False
        gone = {s.url for s in self.receiver.log if s.worker == LIVE and s.answer == 410}
        for endpoint_id, (url, _, _) in zip(self.endpoint_ids, ENDPOINTS, strict=True):
            if url in gone:
                endpoint = self.store.get_endpoint(endpoint_id)
                assert endpoint is not None
                if endpoint.state is not EndpointState.DISABLED:
                    return False
                self.disabled.add(endpoint_id)
        return True

    def _deliveries(self) -> list[Delivery]:
        return self.store.list_deliveries(EVERYTHING, limit=10**6)

    @invariant()
    def store_matches_model_and_receiver(self) -> None:
        self.check(final=False)

    def check(self, *, final: bool) -> None:
        deliveries = self._deliveries()
        pairs = Counter((d.event_id, d.endpoint_id) for d in deliveries)
        assert set(pairs) == self.expected, "deliveries lost or invented"
        assert all(n == 1 for n in pairs.values()), f"duplicate deliveries: {pairs}"
        for d in deliveries:
            self._check_delivery(d, final=final)

    def _check_delivery(self, d: Delivery, *, final: bool) -> None:
        sent = self.receiver.sent(d.id)
        live = [s for s in sent if s.worker == LIVE or (s.worker, d.id) in self.written_late]
        made = [a for a in d.attempts if a.outcome is not Outcome.ABANDONED]
        abandoned = len(d.attempts) - len(made)
        context = f"{d!r}\nreceiver saw {sent!r}"
        assert len(made) <= POLICY.max_attempts, context
        assert abandoned <= min(POLICY.max_abandoned, self.dead_claims[d.id]), context
        assert [_key(a.status, a.outcome) for a in made] == [s.answer for s in live], context
        assert [a.number for a in made] == [s.attempt for s in live], context
        successes = [a for a in made if a.outcome is Outcome.SUCCESS]
        assert len(successes) <= 1, f"succeeded twice: {context}"
        assert not successes or made[-1] is successes[0], context
        assert (d.state is DeliveryState.DELIVERED) == bool(successes), context
        received = sum(1 for s in sent if isinstance(s.answer, int) and 200 <= s.answer <= 299)
        assert received >= len(successes), context
        if d.state is DeliveryState.IN_FLIGHT:
            assert not final and d.id in self.dead_claims, f"in flight with no claim: {context}"
        if final:
            assert d.is_terminal, f"left unfinished: {context}"
        if d.state is DeliveryState.FAILED:
            assert (
                len(made) == POLICY.max_attempts
                or abandoned == POLICY.max_abandoned
                or (made and made[-1].status == 410)
                or d.endpoint_id in self.disabled
            ), f"gave up early: {context}"

    def teardown(self) -> None:
        try:
            # Until every lease has run out and every retry is made. Not drain(): the
            # threaded driver's can return while a claim made during its counts is open.
            self.service = self._new_service()
            self._run_until(math.inf)
            self.check(final=True)
        finally:
            self.store.close()
            shutil.rmtree(self.tmp, ignore_errors=True)


def _memory(_: Path) -> Store:
    return MemoryStore()


def _sqlite(directory: Path) -> Store:
    return SQLiteStore(directory / "webhooks.db")


RUNS = settings(
    max_examples=50,  # about 15 s each on memory and SQLite
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    # No "explain" phase (it traces every line, threads included: minutes per failure);
    # one minimal failing run is enough.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    report_multiple_bugs=False,
)


@pytest.mark.parametrize("open_store", [_memory, _sqlite], ids=["memory", "sqlite"])
def test_nothing_lost_or_sent_twice(open_store: Callable[[Path], Store]) -> None:
    machine = type("Machine", (DeliveryMachine,), {"open_store": staticmethod(open_store)})
    run_state_machine_as_test(machine, settings=RUNS)


@pytest.mark.postgres
def test_nothing_lost_or_sent_twice_postgres() -> None:
    url = pg.require_postgres()
    from transports.stores.postgres import PostgresStore

    def postgres(_: Path) -> Store:
        return PostgresStore(url, schema=pg.fresh_schema())

    machine = type("Machine", (DeliveryMachine,), {"open_store": staticmethod(postgres)})
    # Fewer examples: stopping a dispatcher waits for the store's LISTEN thread (up to 0.5 s).
    run_state_machine_as_test(machine, settings=settings(RUNS, max_examples=10))
