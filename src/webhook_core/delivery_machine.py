"""The delivery state machine: one event on its way to one endpoint.

Theory of operation
-------------------
A delivery is created ``pending`` and due at once. A driver that claims it
feeds ``Start(now)`` (legal only once it is due) and it becomes ``in_flight``;
the driver makes the HTTP attempt and feeds ``Finish(result)``. A 2xx makes it
``delivered``. Any other outcome is a failed attempt: while attempts remain it
becomes ``retry_scheduled``, due ``policy.delay_after(...)`` after the attempt
ended; after the last attempt it is ``failed``. ``410 Gone`` fails it at once
and emits ``DisableEndpoint``. If the driver loses an attempt without a result
(crash, lease expiry, shutdown) it feeds ``Abandon(now)``: the attempt is
recorded as abandoned, does not use up the retry budget, and the delivery is
due again at once; ``policy.max_abandoned`` of those fail it. ``Cancel`` fails
a waiting delivery (its endpoint was disabled or removed). ``Defer(until)``
moves a claimed, waiting delivery to a later time without an attempt (the
endpoint gate held it back: breaker open, endpoint busy or rate-limited).
``RetryNow`` makes a waiting delivery (``pending``, perhaps deferred by the
gate, or ``retry_scheduled``) due at once (an operator asked for it), keeping
its attempts.

Every transition keeps the record's ``lease_token``: the store's claim sets it,
and the finished record carries it back so the store can tell a result of this
claim from one of an earlier claim of the same delivery.

``delivered`` and ``failed`` are terminal. A replay is a new delivery
(``replay``) that points back at the old one, so history is never rewritten.

Every rule is in ``TRANSITIONS``; ``apply`` raises ``IllegalTransition`` and
leaves the record untouched for any (state, input) pair the table lacks.
"""

from __future__ import annotations

import attrs

from webhook_core.errors import IllegalTransition
from webhook_core.retry import RETRY_AFTER_STATUSES, RetryPolicy, parse_retry_after
from webhook_core.statemachine import Symbol, check_table, record_builder

RESPONSE_EXCERPT_LIMIT = 64 * 1024


class DeliveryState(Symbol):
    """Where a delivery stands."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    RETRY_SCHEDULED = "retry_scheduled"
    DELIVERED = "delivered"
    FAILED = "failed"


class Outcome(Symbol):
    """How one attempt ended."""

    SUCCESS = "success"  # 2xx
    HTTP_ERROR = "http_error"  # any other status but 3xx
    REDIRECT = "redirect"  # 3xx: never followed
    TIMEOUT = "timeout"  # the total deadline passed
    CONNECT_ERROR = "connect_error"  # refused, unreachable, DNS failure
    TLS_ERROR = "tls_error"  # handshake or certificate failure
    NETWORK_ERROR = "network_error"  # reset or closed mid-exchange
    PROTOCOL_ERROR = "protocol_error"  # not valid HTTP, or over the size caps
    BLOCKED = "blocked"  # the outbound guard refused the address
    ABANDONED = "abandoned"  # no result: the driver crashed, shut down or lost its lease


# The kinds an ``AttemptResult`` may carry instead of a status. ``ABANDONED`` is not
# one: an attempt without a result is fed as ``Abandon``, which does not use up the
# retry budget, and a ``Finish`` carrying it would retry for ever uncounted.
SUCCESS, HTTP_ERROR, REDIRECT, ABANDONED = (
    Outcome.SUCCESS,
    Outcome.HTTP_ERROR,
    Outcome.REDIRECT,
    Outcome.ABANDONED,
)
ERROR_KINDS = frozenset(Outcome) - {SUCCESS, HTTP_ERROR, REDIRECT, ABANDONED}


@attrs.frozen(weakref_slot=False)  # no __weakref__ slot: see record_builder
class Attempt:
    """One recorded attempt."""

    number: int
    started_at: float
    ended_at: float
    outcome: Outcome
    status: int | None = None
    error: str | None = None
    response_excerpt: str | None = None

    @property
    def latency(self) -> float:
        """Seconds from the start of the attempt to its end."""
        return self.ended_at - self.started_at


attempt_of = record_builder(Attempt)
"""What ``Attempt(...)`` builds, for less (see ``record_builder``)."""


@attrs.frozen
class AttemptResult:
    """What the driver observed: a status (with ``Retry-After``), or an error kind."""

    started_at: float
    ended_at: float
    status: int | None = None
    error_kind: Outcome | None = None
    error: str | None = None
    response_excerpt: str | None = None
    retry_after: str | None = None

    def __attrs_post_init__(self) -> None:
        if (self.status is None) == (self.error_kind is None):
            raise ValueError("an AttemptResult has exactly one of status and error_kind")
        if self.error_kind is not None and self.error_kind not in ERROR_KINDS:
            raise ValueError(f"{self.error_kind} is not an error kind")
        if self.status is not None and not 100 <= self.status <= 999:
            raise ValueError(f"HTTP status {self.status} is out of range")
        if self.ended_at < self.started_at:
            raise ValueError("an attempt cannot end before it starts")


@attrs.frozen
class Start:
    """The driver is about to send an attempt."""

    now: float


@attrs.frozen
class Finish:
    """The attempt ended with ``result``."""

    result: AttemptResult


@attrs.frozen
class Abandon:
    """The attempt was lost without a result (crash, shutdown, lease expiry)."""

    now: float
    reason: str = "attempt abandoned"


@attrs.frozen
class Cancel:
    """Stop a waiting delivery for good (its endpoint was disabled or removed)."""

    now: float
    reason: str


@attrs.frozen
class Defer:
    """Leave a waiting delivery unsent until ``until`` (no attempt is used up)."""

    now: float
    until: float
    reason: str


@attrs.frozen
class RetryNow:
    """Make a delivery waiting for its next attempt due at ``now`` (an operator's request)."""

    now: float


DeliveryInput = Start | Finish | Abandon | Cancel | Defer | RetryNow


@attrs.frozen
class DisableEndpoint:
    """Effect: the endpoint asked to be left alone (410 Gone)."""

    endpoint_id: str
    reason: str


DeliveryEffect = DisableEndpoint
"""Every effect ``apply`` may return: drivers match on it exhaustively (``assert_never``)."""


@attrs.frozen(weakref_slot=False)  # no __weakref__ slot: see record_builder
class Delivery:
    """One event's delivery to one endpoint, with its attempt history."""

    id: str
    event_id: str
    endpoint_id: str
    created_at: float
    state: DeliveryState = DeliveryState.PENDING
    next_attempt_at: float | None = None
    attempts: tuple[Attempt, ...] = ()
    reason: str | None = None
    replay_of: str | None = None
    lease_token: str | None = None
    """The claim this record came from (set by the store's ``claim``): results are
    written only while the stored row is still leased under the same token."""

    @property
    def attempts_made(self) -> int:
        """Attempts that count against the retry budget (abandoned ones do not)."""
        return sum(1 for a in self.attempts if a.outcome is not ABANDONED) if self.attempts else 0

    @property
    def is_terminal(self) -> bool:
        """True once the delivery is delivered or failed."""
        return self.state in TERMINAL


delivery_of = record_builder(Delivery)
"""What ``Delivery(...)`` builds, for less (see ``record_builder``)."""


def new_delivery(delivery_id: str, event_id: str, endpoint_id: str, now: float) -> Delivery:
    """A pending delivery, due at ``now``."""
    return delivery_of(delivery_id, event_id, endpoint_id, now, PENDING, now)


def replay(original: Delivery, delivery_id: str, now: float) -> Delivery:
    """A fresh pending delivery of the same event to the same endpoint, linked to ``original``."""
    if not original.is_terminal:
        raise IllegalTransition(
            "delivery", original.state.value, "replay", "only delivered or failed deliveries"
        )
    return Delivery(
        delivery_id,
        original.event_id,
        original.endpoint_id,
        now,
        DeliveryState.PENDING,
        now,
        replay_of=original.id,
    )


PENDING, IN_FLIGHT, RETRY_SCHEDULED, DELIVERED, FAILED = (
    DeliveryState.PENDING,
    DeliveryState.IN_FLIGHT,
    DeliveryState.RETRY_SCHEDULED,
    DeliveryState.DELIVERED,
    DeliveryState.FAILED,
)
TERMINAL = frozenset({DELIVERED, FAILED})

TRANSITIONS: dict[tuple[DeliveryState, type], frozenset[DeliveryState]] = {
    (PENDING, Start): frozenset({IN_FLIGHT}),
    (RETRY_SCHEDULED, Start): frozenset({IN_FLIGHT}),
    (IN_FLIGHT, Finish): frozenset({DELIVERED, RETRY_SCHEDULED, FAILED}),
    (IN_FLIGHT, Abandon): frozenset({PENDING, RETRY_SCHEDULED, FAILED}),
    (PENDING, Cancel): frozenset({FAILED}),
    (RETRY_SCHEDULED, Cancel): frozenset({FAILED}),
    (PENDING, Defer): frozenset({PENDING}),
    (RETRY_SCHEDULED, Defer): frozenset({RETRY_SCHEDULED}),
    (PENDING, RetryNow): frozenset({PENDING}),
    (RETRY_SCHEDULED, RetryNow): frozenset({RETRY_SCHEDULED}),
}
check_table("delivery", TRANSITIONS, DeliveryState, PENDING, TERMINAL)


def _moved(
    d: Delivery,
    state: DeliveryState,
    next_attempt_at: float | None,
    attempts: tuple[Attempt, ...],
    reason: str | None,
) -> Delivery:
    return delivery_of(
        d.id,
        d.event_id,
        d.endpoint_id,
        d.created_at,
        state,
        next_attempt_at,
        attempts,
        reason,
        d.replay_of,
        d.lease_token,
    )


def _start(
    d: Delivery, event: Start, _: RetryPolicy
) -> tuple[Delivery, tuple[DeliveryEffect, ...]]:
    if d.next_attempt_at is not None and event.now < d.next_attempt_at:
        raise IllegalTransition(
            "delivery", d.state.value, "Start", f"not due until {d.next_attempt_at}"
        )
    return _moved(d, IN_FLIGHT, None, d.attempts, d.reason), ()


def _finish(
    d: Delivery, event: Finish, policy: RetryPolicy
) -> tuple[Delivery, tuple[DeliveryEffect, ...]]:
    result = event.result
    number = d.attempts_made + 1
    status = result.status
    if status is None:
        outcome = result.error_kind
        assert outcome is not None
    elif 200 <= status <= 299:
        outcome = SUCCESS
    elif 300 <= status <= 399:
        outcome = REDIRECT
    else:
        outcome = HTTP_ERROR
    excerpt = result.response_excerpt
    if excerpt is not None and len(excerpt) > RESPONSE_EXCERPT_LIMIT:
        excerpt = excerpt[:RESPONSE_EXCERPT_LIMIT]
    attempt = attempt_of(
        number, result.started_at, result.ended_at, outcome, status, result.error, excerpt
    )
    attempts = (*d.attempts, attempt)
    if outcome is SUCCESS:
        return _moved(d, DELIVERED, None, attempts, None), ()
    if status == 410:
        reason = "endpoint answered 410 Gone"
        return (
            _moved(d, FAILED, None, attempts, reason),
            (DisableEndpoint(d.endpoint_id, reason),),
        )
    if number >= policy.max_attempts:
        reason = f"all {number} attempts failed; last: {_describe(attempt)}"
        return _moved(d, FAILED, None, attempts, reason), ()
    retry_after = None
    if status in RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(result.retry_after, result.ended_at)
    due = result.ended_at + policy.delay_after(number, d.id, retry_after)
    return (
        _moved(d, RETRY_SCHEDULED, due, attempts, _describe(attempt)),
        (),
    )


def _abandon(
    d: Delivery, event: Abandon, policy: RetryPolicy
) -> tuple[Delivery, tuple[DeliveryEffect, ...]]:
    started = event.now
    attempt = attempt_of(d.attempts_made + 1, started, started, ABANDONED, None, event.reason, None)
    attempts = (*d.attempts, attempt)
    abandoned = sum(1 for a in attempts if a.outcome is ABANDONED)
    if abandoned >= policy.max_abandoned:
        reason = f"abandoned {abandoned} times; last: {event.reason}"
        return _moved(d, FAILED, None, attempts, reason), ()
    state = RETRY_SCHEDULED if d.attempts_made else PENDING
    return (
        _moved(d, state, event.now, attempts, event.reason),
        (),
    )


def _cancel(
    d: Delivery, event: Cancel, _: RetryPolicy
) -> tuple[Delivery, tuple[DeliveryEffect, ...]]:
    return _moved(d, FAILED, None, d.attempts, event.reason), ()


def _defer(
    d: Delivery, event: Defer, _: RetryPolicy
) -> tuple[Delivery, tuple[DeliveryEffect, ...]]:
    due = max(event.until, event.now)
    if d.next_attempt_at is not None:
        due = max(due, d.next_attempt_at)
    return _moved(d, d.state, due, d.attempts, event.reason), ()


def _retry_now(
    d: Delivery, event: RetryNow, _: RetryPolicy
) -> tuple[Delivery, tuple[DeliveryEffect, ...]]:
    return _moved(d, d.state, event.now, d.attempts, d.reason), ()


def _describe(attempt: Attempt) -> str:
    if attempt.status is not None:
        return f"HTTP {attempt.status}"
    detail = f": {attempt.error}" if attempt.error else ""
    return f"{attempt.outcome.value}{detail}"


_HANDLERS = {
    Start: _start,
    Finish: _finish,
    Abandon: _abandon,
    Cancel: _cancel,
    Defer: _defer,
    RetryNow: _retry_now,
}


def apply(
    delivery: Delivery, event: DeliveryInput, policy: RetryPolicy
) -> tuple[Delivery, tuple[DeliveryEffect, ...]]:
    """Feed ``event`` to ``delivery``; return the new record and the effects to carry out.

    Raises ``IllegalTransition`` (and changes nothing) when the table has no
    rule for the delivery's state and this kind of input.
    """
    targets = TRANSITIONS.get((delivery.state, type(event)))
    if targets is None:
        raise IllegalTransition("delivery", delivery.state.value, type(event).__name__)
    new, effects = _HANDLERS[type(event)](delivery, event, policy)  # type: ignore[operator]
    assert new.state in targets, (delivery.state, event, new.state)
    return new, effects
