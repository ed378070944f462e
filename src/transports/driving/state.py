"""What every driver decides, in one place: a sans-IO state told ``now``.

Theory of operation
-------------------
A driver (``transports.aio`` for trio and asyncio, ``transports.sync`` for
threads) owns tasks or threads, waits and does I/O. Every decision it makes
about that work is asked of a ``DriverState``, which reads no clock and does
no I/O (as aioquic's protocol objects are told ``now`` and answer
``get_timer()``):

* how many deliveries to claim (``claims_wanted``): up to three times
  ``max_in_flight`` held at once, sent and queued, but no more than the
  workers, at their recent pace, can start while the claims' leases still
  cover their deadline and ``LEASE_MARGIN``. The pace is a moving average of
  attempt times that starts at the deadline (at the default 30 s deadline
  and 60 s lease: 1.83 times ``max_in_flight`` until attempts prove
  quicker). When only a few claims are wanted while others are in flight,
  ``coalesce`` says to wait a moment for more, so a busy driver claims a
  batch at a time rather than one delivery per finished attempt;
* when to look for endpoints left in ``verifying`` (``scan_due``), to
  prune finished deliveries (``prune_due``) and to count the store for the
  observers' gauges (``refresh_due``), and how long the dispatcher may
  sleep (``timer``): until the store's next due time, the poll interval,
  the next prune or the next count, whichever comes first;
* which handshakes to send (``handshake_wanted``): one per endpoint and
  verification token at a time, none once stopping;
* what an attempt means: ``begin`` (the core's ``begin_attempt`` under the
  driver's policy and endpoint gate), ``attempt_ended`` (the gate told, the
  pace updated) and ``finish`` (the core's ``Finish`` applied), whose
  effects the driver carries out through ``DeliveryEffect``'s exhaustive
  match;
* what a store error means (``StoreFaults``): back off, starting at 50 ms
  and doubling to 2 s, and log each activity's failure once per episode,
  then once more when it answers again.

The counters (claims held, results unwritten, handshakes running, writes
made) are what ``drain`` and shutdown wait on. The threaded driver calls a
state under its own lock; the async driver from its one event-loop thread.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable

import attrs

from transports.driving.operations import Retention
from transports.stores.interface import Claimed
from webhook_core import (
    LEASE_MARGIN,
    AttemptResult,
    Delivery,
    Endpoint,
    EndpointGate,
    EndpointState,
    Finish,
    HttpRequest,
    RetryPolicy,
    begin_attempt,
    delivery_machine,
)
from webhook_core.delivery_machine import DeliveryEffect

COALESCE = 0.002  # seconds a nearly busy dispatcher waits for more free workers
_PACE_WEIGHT = 0.05  # of the latest attempt in the moving average of attempt times
_MAX_ROUNDS_AHEAD = 2.0  # claims held beyond max_in_flight, in multiples of it
_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 2.0


class Patience(enum.Enum):
    """How long a driver keeps calling a store that fails."""

    WHILE_RUNNING = "while running"  # gives up once stopping: a lease or a scan brings it back
    LEASE = "for a lease"  # also while stopping, for up to a lease after the first failure
    FOREVER = "until it answers"  # the host is waiting (drain), and bounds the wait itself


@attrs.frozen
class Activity:
    """A store call a driver makes on its own, what it is doing, and how patiently."""

    call: str  # the Store method (or operation) called: the ``store_call`` field of log records
    doing: str
    patience: Patience
    # The async drivers make it on the event loop's thread where the store can without
    # waiting (``Waitless``); each must be safe to make again after ``WouldWait``.
    on_loop: bool = False


ACTIVITIES = {
    a.call: a
    for a in (
        Activity("claim", "claiming due deliveries", Patience.WHILE_RUNNING, on_loop=True),
        Activity("next_due", "reading the next due time", Patience.WHILE_RUNNING, on_loop=True),
        Activity("list_endpoints", "listing endpoints to verify", Patience.WHILE_RUNNING),
        Activity("prune", "pruning finished deliveries", Patience.WHILE_RUNNING),
        Activity("release", "releasing unsent claims", Patience.WHILE_RUNNING),
        Activity("complete", "writing attempt results", Patience.LEASE, on_loop=True),
        Activity("record_handshake", "recording a handshake's answer", Patience.WHILE_RUNNING),
        Activity("disable_endpoint", "disabling an endpoint that asked", Patience.LEASE),
        Activity("count_deliveries", "counting open deliveries", Patience.FOREVER),
        Activity(
            "snapshot", "counting deliveries and endpoints for metrics", Patience.WHILE_RUNNING
        ),
    )
}
"""Every store activity of a driver, by the ``store_call`` its log records carry."""


@attrs.frozen
class Backoff:
    """A store call failed: wait ``delay`` seconds, or give up; log it when ``first``."""

    delay: float
    first: bool
    give_up: bool


class StoreFaults:
    """Back-off and log-once bookkeeping for store calls that fail, by activity."""

    def __init__(self) -> None:
        self._failing: dict[str, tuple[float, float]] = {}  # call -> (delay, first failure)

    def failed(self, activity: Activity, now: float, stopping: bool, lease: float) -> Backoff:
        """``activity``'s store call raised at ``now``: wait, or give up (see ``Patience``)."""
        known = self._failing.get(activity.call)
        delay, since = (
            (_FIRST_BACKOFF, now) if known is None else (min(known[0] * 2, _MAX_BACKOFF), known[1])
        )
        self._failing[activity.call] = (delay, since)
        patience = activity.patience
        give_up = stopping and patience is Patience.WHILE_RUNNING
        if patience is Patience.LEASE:
            give_up = now - since >= lease
        if give_up:
            del self._failing[activity.call]
        return Backoff(delay, known is None, give_up)

    def succeeded(self, activity: Activity) -> bool:
        """``activity``'s store call answered; True when that ends a run of failures."""
        return self._failing.pop(activity.call, None) is not None


class DriverState:
    """The decisions of one running driver (see the module)."""

    def __init__(
        self,
        *,
        policy: RetryPolicy,
        lease: float,
        max_in_flight: int,
        poll_interval: float,
        user_agent: str,
        retention: Retention | None,
        retention_interval: float,
        gate: EndpointGate | None,
        refresh_interval: float | None = None,
    ) -> None:
        self.policy = policy
        self.lease = lease
        self.max_in_flight = max_in_flight
        self.poll_interval = poll_interval
        self.user_agent = user_agent
        self.retention = retention
        self.retention_interval = retention_interval
        self.gate = gate
        self.refresh_interval = refresh_interval
        self.faults = StoreFaults()
        self.stopping = False
        self.held = 0  # claims taken from the store and not yet ended: queued or being sent
        self.unwritten = 0  # finished records not yet written
        self.writes = 0  # batches written (or given up on) so far
        self.progress = 0  # wake-ups so far: what drain waits on
        self.unstarted: list[str] = []  # claims a worker took once stopping: released at exit
        self.verifying: set[tuple[str, str | None]] = set()
        self._attempt_time = policy.timeout
        self._claim_batch = max(1, max_in_flight // 8)
        self._next_scan = -math.inf
        self._next_prune = -math.inf
        self._next_refresh = -math.inf

    # -- store faults --------------------------------------------------------------

    def store_failed(self, call: str, now: float) -> Backoff:
        """The store call ``call`` (a key of ``ACTIVITIES``) raised at ``now``."""
        return self.faults.failed(ACTIVITIES[call], now, self.stopping, self.lease)

    def store_answered(self, call: str) -> bool:
        """The store call ``call`` answered; True when that ends a run of failures."""
        return self.faults.succeeded(ACTIVITIES[call])

    # -- claiming and sleeping ---------------------------------------------------

    def claim_limit(self) -> int:
        """How many claims to hold, sent and queued (see the module)."""
        budget = self.lease - self.policy.timeout - LEASE_MARGIN
        rounds = min(_MAX_ROUNDS_AHEAD, budget / max(self._attempt_time, 0.001))
        return self.max_in_flight + int(self.max_in_flight * rounds)

    def claims_wanted(self) -> int:
        """How many more deliveries to claim now (0 once stopping)."""
        return 0 if self.stopping else max(self.claim_limit() - self.held, 0)

    def coalesce(self, wanted: int) -> bool:
        """True when ``wanted`` is a few claims while others are held: wait ``COALESCE`` first."""
        return 0 < wanted < self._claim_batch and self.held > 0

    def claimed(self, count: int) -> None:
        """``count`` claims were taken and handed to the workers."""
        self.held += count

    def ended(self, count: int = 1, queued: bool = False) -> None:
        """``count`` held claims ended: sent and finished, written back unsent, or released;
        ``queued``: one record was handed to the writer (unwritten until ``written``, which
        may come first: the claim was still held meanwhile, so nothing looked idle)."""
        self.held -= count
        if queued:
            self.unwritten += 1

    def scan_due(self, now: float) -> bool:
        """True when endpoints should be listed for handshakes left undone (then rescheduled)."""
        if now < self._next_scan:
            return False
        self._next_scan = now + self.poll_interval
        return True

    def prune_due(self, now: float) -> Retention | None:
        """The retention settings when a sweep is due now (the next one is then scheduled)."""
        if self.retention is None or now < self._next_prune:
            return None
        self._next_prune = now + self.retention_interval
        return self.retention

    def refresh_due(self, now: float) -> bool:
        """True when the store should be counted for the observers (the next count is then
        scheduled)."""
        if self.refresh_interval is None or now < self._next_refresh:
            return False
        self._next_refresh = now + self.refresh_interval
        return True

    def timer(self, now: float, next_due: float | None) -> float:
        """Seconds the dispatcher may sleep: poll interval, next prune or count, or next due."""
        timeout = self.poll_interval
        if self.retention is not None:
            timeout = min(timeout, max(self._next_prune - now, 0.0))
        if self.refresh_interval is not None:
            timeout = min(timeout, max(self._next_refresh - now, 0.0))
        if next_due is not None:
            timeout = min(timeout, max(next_due - now, 0.0))
        return timeout

    # -- handshakes --------------------------------------------------------------

    def handshake_wanted(self, endpoint: Endpoint) -> bool:
        """True (and the handshake counted as running) if ``endpoint`` should be sent one now.

        One handshake per endpoint and token at a time: a new token (a changed
        URL, a retried verification) gets its own at once, and the answer to the
        old one is then stale (``operations.record_handshake`` ignores it).
        """
        key = (endpoint.id, endpoint.verification_token)
        if endpoint.state is not EndpointState.VERIFYING or self.stopping or key in self.verifying:
            return False
        self.verifying.add(key)
        return True

    def handshake_ended(self, endpoint: Endpoint) -> None:
        """The handshake ``handshake_wanted`` admitted is over, whatever its outcome."""
        self.verifying.discard((endpoint.id, endpoint.verification_token))

    # -- attempts ----------------------------------------------------------------

    def begin(self, claim: Claimed, now: float) -> tuple[Delivery, HttpRequest | None]:
        """The core's start of an attempt at ``claim``: the request to send, or none if
        the record is to be written back unsent (gate, stale lease, endpoint not active)."""
        return begin_attempt(
            claim.delivery,
            claim.event,
            claim.endpoint,
            now,
            self.policy,
            self.user_agent,
            self.gate,
            claim.lease_until,
        )

    def attempt_ended(self, claim: Claimed, result: AttemptResult, begun_at: float) -> None:
        """The attempt ``begin`` started at ``begun_at`` ended with ``result``: the gate
        (which knows the attempt by ``begun_at``) and the pace are told."""
        if self.gate is not None:
            ok = result.status is not None and 200 <= result.status <= 299
            self.gate.finished(claim.endpoint.id, result.ended_at, ok, begun_at)
        took = result.ended_at - result.started_at
        self._attempt_time += _PACE_WEIGHT * (took - self._attempt_time)

    def finish(
        self, delivery: Delivery, result: AttemptResult
    ) -> tuple[Delivery, tuple[DeliveryEffect, ...]]:
        """The record after the attempt ``begin`` started ended with ``result``, and the
        effects to carry out (reads only the policy: asked without the state's lock)."""
        return delivery_machine.apply(delivery, Finish(result), self.policy)

    def abandoned(self, claim: Claimed, now: float, begun_at: float) -> None:
        """The attempt ``begin`` started at ``begun_at`` ended without a result (the driver
        failed): the gate is told."""
        if self.gate is not None:
            self.gate.finished(claim.endpoint.id, now, False, begun_at)

    # -- results and idleness ------------------------------------------------------

    def written(self, count: int) -> None:
        """The writer is done with ``count`` records (written, or given up on)."""
        self.unwritten -= count
        self.writes += 1

    def unsent(self, claims: Iterable[Claimed]) -> None:
        """``claims`` were taken once stopping: they are released at exit, unsent."""
        self.unstarted.extend(c.delivery.id for c in claims)

    def signalled(self) -> None:
        """Something changed that the dispatcher or ``drain`` may be waiting for."""
        self.progress += 1

    @property
    def idle(self) -> bool:
        """True when nothing is held, unwritten or being verified."""
        return not (self.held or self.unwritten or self.verifying)
