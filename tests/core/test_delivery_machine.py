"""The delivery state machine: every (state, input) pair, the retry schedule, Retry-After,
410 Gone, jitter, abandoned attempts and replays."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook_core import delivery_machine
from webhook_core.delivery_machine import (
    ERROR_KINDS,
    TRANSITIONS,
    Abandon,
    AttemptResult,
    Cancel,
    Defer,
    Delivery,
    DeliveryInput,
    DeliveryState,
    DisableEndpoint,
    Finish,
    Outcome,
    RetryNow,
    Start,
    new_delivery,
    replay,
)
from webhook_core.errors import ConfigError, IllegalTransition
from webhook_core.retry import DEFAULT_SCHEDULE, RetryPolicy, parse_retry_after

P = DeliveryState.PENDING
IF = DeliveryState.IN_FLIGHT
RS = DeliveryState.RETRY_SCHEDULED
D = DeliveryState.DELIVERED
F = DeliveryState.FAILED

INPUT_KINDS: tuple[type, ...] = (Start, Finish, Abandon, Cancel, Defer, RetryNow)
FAILURE_STATUSES = st.one_of(st.integers(100, 199), st.integers(300, 409), st.integers(411, 999))
# Every error kind an attempt can end with (ABANDONED is fed as Abandon, not Finish).
ERROR_KIND_LIST = sorted(ERROR_KINDS, key=lambda o: o.value)


def step(d: Delivery, event: DeliveryInput, policy: RetryPolicy) -> Delivery:
    new, _ = delivery_machine.apply(d, event, policy)
    return new


def abandoned_count(d: Delivery) -> int:
    return sum(1 for a in d.attempts if a.outcome is Outcome.ABANDONED)


def snapshot(d: Delivery) -> dict[str, Any]:
    return attrs.asdict(d, recurse=True)


# --- strategies -----------------------------------------------------------------------

policies = st.builds(
    RetryPolicy,
    schedule=st.lists(st.floats(0, 7200, allow_nan=False), min_size=1, max_size=4).map(tuple),
    jitter=st.sampled_from([0.0, 0.1, 0.5]),
    seed=st.integers(0, 2**32),
    retry_after_max=st.floats(0, 7200, allow_nan=False),
    max_abandoned=st.integers(2, 5),
)
durations = st.floats(0, 30, allow_nan=False)
delays = st.floats(0, 500, allow_nan=False)


@st.composite
def attempt_results(draw: st.DrawFn, started_at: float, kind: str = "any") -> AttemptResult:
    """A result for an attempt started at ``started_at``.

    ``kind``: "success" (2xx), "gone" (410), "failure" (any other failure, 410 excluded)
    or "any" (all of them, every status class and every error kind).
    """
    if kind == "any":
        kind = draw(st.sampled_from(["success", "gone", "failure"]))
    ended_at = started_at + draw(durations)
    retry_after = draw(
        st.one_of(
            st.none(),
            st.integers(0, 10_000).map(str),
            st.just("Sun, 06 Nov 1994 08:49:37 GMT"),
            st.text(max_size=5),
        )
    )
    excerpt = draw(st.none() | st.text(max_size=20))
    if kind == "success":
        return AttemptResult(
            started_at, ended_at, status=draw(st.integers(200, 299)), response_excerpt=excerpt
        )
    if kind == "gone":
        return AttemptResult(started_at, ended_at, status=410, retry_after=retry_after)
    if draw(st.booleans()):
        return AttemptResult(
            started_at,
            ended_at,
            status=draw(FAILURE_STATUSES),
            retry_after=retry_after,
            response_excerpt=excerpt,
        )
    return AttemptResult(
        started_at,
        ended_at,
        error_kind=draw(st.sampled_from(ERROR_KIND_LIST)),
        error=draw(st.none() | st.text(max_size=10)),
    )


@st.composite
def delivery_in(draw: st.DrawFn, target: DeliveryState) -> tuple[Delivery, RetryPolicy]:
    """A delivery in ``target``, built by walking legal transitions with a random history."""
    policy = draw(policies)
    clock = draw(st.floats(0, 2e9, allow_nan=False))
    d = new_delivery("dlv_1", "evt_1", "ep_1", clock)

    def start(d: Delivery) -> Delivery:
        nonlocal clock
        assert d.next_attempt_at is not None
        clock = max(clock, d.next_attempt_at) + draw(delays)
        return step(d, Start(clock), policy)

    def finish(d: Delivery, kind: str) -> Delivery:
        nonlocal clock
        d = start(d)
        result = draw(attempt_results(clock, kind))
        clock = result.ended_at
        return step(d, Finish(result), policy)

    def fail(d: Delivery) -> Delivery:
        return finish(d, "failure")

    def abandon(d: Delivery) -> Delivery:
        nonlocal clock
        d = start(d)
        clock += draw(delays)
        return step(d, Abandon(clock), policy)

    # A prefix of rounds that keeps one failed attempt and one abandonment in hand, so
    # every target stays reachable. PENDING only survives while no attempt has counted.
    fail_budget = 0 if target is P else policy.max_attempts - 2
    abandon_budget = policy.max_abandoned - 2
    for _ in range(draw(st.integers(0, 6))):
        moves: list[Callable[[Delivery], Delivery]] = []
        if d.attempts_made < fail_budget:
            moves.append(fail)
        if abandoned_count(d) < abandon_budget:
            moves.append(abandon)
        if not moves:
            break
        d = draw(st.sampled_from(moves))(d)
    assert d.state in (P, RS)

    if target is P:
        assert d.state is P
    elif target is IF:
        d = start(d)
    elif target is RS:
        if d.state is P or draw(st.booleans()):
            d = fail(d)
    elif target is D:
        d = finish(d, "success")
    else:
        how = draw(st.sampled_from(["cancel", "gone", "exhaust", "abandon"]))
        if how == "cancel":
            d = step(d, Cancel(clock + draw(delays), "endpoint disabled"), policy)
        elif how == "gone":
            d = finish(d, "gone")
        elif how == "exhaust":
            while d.state is not F:
                d = fail(d)
        else:
            while d.state is not F:
                d = abandon(d)
    assert d.state is target, (d.state, target)
    return attrs.evolve(d, lease_token=draw(st.sampled_from([None, "lease_1"]))), policy


@st.composite
def inputs_of(draw: st.DrawFn, kind: type, d: Delivery) -> DeliveryInput:
    base = d.next_attempt_at if d.next_attempt_at is not None else d.created_at
    now = base + draw(st.floats(-100, 100, allow_nan=False))
    if kind is Start:
        return Start(now)
    if kind is Finish:
        return Finish(draw(attempt_results(now)))
    if kind is Abandon:
        return Abandon(now, draw(st.sampled_from(["lease expired", "shutdown"])))
    if kind is Defer:
        # Drivers defer only claims that are due (``begin_attempt``), so not before ``base``.
        now = base + draw(st.floats(0, 100, allow_nan=False))
        return Defer(now, now + draw(st.floats(-100, 500, allow_nan=False)), "held back")
    if kind is RetryNow:
        return RetryNow(now)
    return Cancel(now, "endpoint removed")


# --- (a) every (state, input) pair ---------------------------------------------------


@pytest.mark.parametrize("kind", INPUT_KINDS, ids=lambda k: k.__name__)
@pytest.mark.parametrize("state", list(DeliveryState), ids=lambda s: s.value)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_every_state_and_input(state: DeliveryState, kind: type, data: st.DataObject) -> None:
    d, policy = data.draw(delivery_in(state))
    event = data.draw(inputs_of(kind, d))
    before = copy.deepcopy(d)
    before_dict = snapshot(d)
    allowed = TRANSITIONS.get((state, kind))

    not_due = (
        isinstance(event, Start) and d.next_attempt_at is not None and event.now < d.next_attempt_at
    )
    if allowed is None or not_due:
        with pytest.raises(IllegalTransition) as info:
            delivery_machine.apply(d, event, policy)
        assert info.value.state == state.value
        assert d == before
        assert snapshot(d) == before_dict
        assert d.state is state
        return

    new, effects = delivery_machine.apply(d, event, policy)
    assert new.state in allowed
    # The original record is untouched: changes are new records.
    assert d == before
    assert snapshot(d) == before_dict
    # So is the claim it came from: the store writes a result only under that claim's token.
    assert (new.id, new.event_id, new.endpoint_id, new.created_at, new.lease_token) == (
        d.id,
        d.event_id,
        d.endpoint_id,
        d.created_at,
        d.lease_token,
    )
    check_semantics(d, event, policy, new, effects)


def check_semantics(
    d: Delivery,
    event: DeliveryInput,
    policy: RetryPolicy,
    new: Delivery,
    effects: tuple[object, ...],
) -> None:
    """What each legal input must do, independently of the transition table."""
    if isinstance(event, Start):
        assert new.state is IF
        assert new.attempts == d.attempts
        assert effects == ()
        return
    if isinstance(event, Cancel):
        assert new.state is F
        assert new.reason == event.reason
        assert new.attempts == d.attempts
        assert new.next_attempt_at is None
        return
    if isinstance(event, Abandon):
        assert new.attempts[:-1] == d.attempts
        assert new.attempts[-1].outcome is Outcome.ABANDONED
        assert new.attempts_made == d.attempts_made
        if abandoned_count(new) >= policy.max_abandoned:
            assert new.state is F
        else:
            assert new.state is (RS if d.attempts_made else P)
            assert new.next_attempt_at == event.now
        assert effects == ()
        return
    if isinstance(event, Defer):
        # Nothing is sent and no attempt is used up; the delivery waits at least until
        # ``until`` and is never made due earlier than it already was.
        assert new.state is d.state
        assert new.attempts == d.attempts
        assert new.reason == event.reason
        assert new.next_attempt_at is not None
        assert new.next_attempt_at >= event.until
        assert d.next_attempt_at is None or new.next_attempt_at >= d.next_attempt_at
        assert effects == ()
        return
    if isinstance(event, RetryNow):
        # An operator's "now": due at once, nothing else changes.
        assert new == attrs.evolve(d, next_attempt_at=event.now)
        assert effects == ()
        return
    result = event.result
    assert len(new.attempts) == len(d.attempts) + 1
    assert new.attempts[:-1] == d.attempts
    attempt = new.attempts[-1]
    assert attempt.number == d.attempts_made + 1
    assert (attempt.started_at, attempt.ended_at) == (result.started_at, result.ended_at)
    assert new.attempts_made == d.attempts_made + 1
    status = result.status
    if status is not None and 200 <= status <= 299:
        assert new.state is D
        assert attempt.outcome is Outcome.SUCCESS
        assert effects == ()
    elif status == 410:
        assert new.state is F
        assert effects == (DisableEndpoint("ep_1", "endpoint answered 410 Gone"),)
    elif new.attempts_made >= policy.max_attempts:
        assert new.state is F
        assert f"all {policy.max_attempts} attempts failed" in (new.reason or "")
        assert effects == ()
    else:
        assert new.state is RS
        assert new.next_attempt_at is not None
        assert new.next_attempt_at >= result.ended_at
        assert effects == ()
    if status is None:
        assert attempt.outcome is result.error_kind
    elif 300 <= status <= 399:
        assert attempt.outcome is Outcome.REDIRECT
    elif not 200 <= status <= 299:
        assert attempt.outcome is Outcome.HTTP_ERROR


def test_start_before_due_raises_and_changes_nothing() -> None:
    policy = RetryPolicy()
    d = new_delivery("dlv_1", "evt_1", "ep_1", 1000.0)
    d = step(d, Start(1000.0), policy)
    d = step(d, Finish(AttemptResult(1000.0, 1002.0, status=500)), policy)
    assert d.next_attempt_at == 1062.0
    before = copy.deepcopy(d)
    for early in (1002.0, 1061.0, 1061.999):
        with pytest.raises(IllegalTransition, match=r"not due until 1062\.0"):
            delivery_machine.apply(d, Start(early), policy)
        assert d == before
    assert step(d, Start(1062.0), policy).state is IF

    fresh = new_delivery("dlv_2", "evt_1", "ep_1", 500.0)
    with pytest.raises(IllegalTransition):
        delivery_machine.apply(fresh, Start(499.5), policy)
    assert fresh == new_delivery("dlv_2", "evt_1", "ep_1", 500.0)


def test_terminal_states_accept_nothing() -> None:
    policy = RetryPolicy()
    d = new_delivery("dlv_1", "evt_1", "ep_1", 0.0)
    d = step(step(d, Start(0.0), policy), Finish(AttemptResult(0.0, 1.0, status=204)), policy)
    assert d.state is D
    assert d.is_terminal
    for event in (
        Start(10.0),
        Finish(AttemptResult(1.0, 2.0, status=200)),
        Abandon(10.0),
        Cancel(10.0, "x"),
    ):
        with pytest.raises(IllegalTransition, match="'delivered'"):
            delivery_machine.apply(d, event, policy)


def test_abandoned_is_not_a_finish_error_kind() -> None:
    # An attempt without a result is fed as Abandon; a Finish carrying ABANDONED would
    # be retried for ever without using up the retry budget.
    with pytest.raises(ValueError, match="not an error kind"):
        AttemptResult(0.0, 1.0, error_kind=Outcome.ABANDONED)
    with pytest.raises(ValueError, match="exactly one"):
        AttemptResult(0.0, 1.0)
    with pytest.raises(ValueError, match="exactly one"):
        AttemptResult(0.0, 1.0, status=500, error_kind=Outcome.TIMEOUT)
    with pytest.raises(ValueError, match="out of range"):
        AttemptResult(0.0, 1.0, status=1000)
    with pytest.raises(ValueError, match="end before"):
        AttemptResult(2.0, 1.0, status=200)


# --- (b) the default schedule, in literal times ----------------------------------------


def test_default_schedule_walked_with_literal_times() -> None:
    policy = RetryPolicy()
    # Each attempt takes 2.0 s; retries are due 1 min, 5 min, 15 min and 1 h after
    # the previous attempt ENDED:
    #   1: 1000.0 -> 1002.0;  2: 1002.0 + 60   = 1062.0 -> 1064.0
    #   3: 1064.0 + 300  = 1364.0 -> 1366.0;   4: 1366.0 + 900 = 2266.0 -> 2268.0
    #   5: 2268.0 + 3600 = 5868.0 -> 5870.0, then failed.
    expected_starts = [1000.0, 1062.0, 1364.0, 2266.0, 5868.0]
    d = new_delivery("dlv_1", "evt_1", "ep_1", 1000.0)
    assert d.state is P
    assert d.next_attempt_at == 1000.0
    starts: list[float] = []
    while not d.is_terminal:
        assert d.next_attempt_at is not None
        t = d.next_attempt_at
        starts.append(t)
        d = step(d, Start(t), policy)
        assert d.state is IF
        d, effects = delivery_machine.apply(
            d, Finish(AttemptResult(t, t + 2.0, status=500)), policy
        )
        assert effects == ()
    assert starts == expected_starts
    assert d.state is F
    assert d.attempts_made == 5
    assert [a.number for a in d.attempts] == [1, 2, 3, 4, 5]
    assert [a.outcome for a in d.attempts] == [Outcome.HTTP_ERROR] * 5
    assert d.next_attempt_at is None
    assert d.reason == "all 5 attempts failed; last: HTTP 500"
    assert "5 attempts" in d.reason


def test_retry_scheduled_records_reason_and_due_time() -> None:
    policy = RetryPolicy()
    d = step(new_delivery("dlv_1", "evt_1", "ep_1", 10.0), Start(10.0), policy)
    d = step(
        d,
        Finish(AttemptResult(10.0, 40.0, error_kind=Outcome.TIMEOUT, error="30 s deadline")),
        policy,
    )
    assert d.state is RS
    assert d.next_attempt_at == 100.0
    assert d.reason == "timeout: 30 s deadline"
    assert d.attempts[0].outcome is Outcome.TIMEOUT
    assert d.attempts[0].latency == 30.0


def test_error_kinds_are_failures() -> None:
    policy = RetryPolicy()
    for kind in ERROR_KIND_LIST:
        d = step(new_delivery("dlv_1", "evt_1", "ep_1", 0.0), Start(0.0), policy)
        d = step(d, Finish(AttemptResult(0.0, 1.0, error_kind=kind)), policy)
        assert d.state is RS, kind
        assert d.attempts[-1].outcome is kind
        assert d.next_attempt_at == 61.0


def test_response_excerpt_is_capped() -> None:
    policy = RetryPolicy()
    d = step(new_delivery("dlv_1", "evt_1", "ep_1", 0.0), Start(0.0), policy)
    d = step(d, Finish(AttemptResult(0.0, 1.0, status=500, response_excerpt="x" * 70_000)), policy)
    assert d.attempts[0].response_excerpt == "x" * 65_536


def test_custom_schedule_sets_attempt_cap() -> None:
    policy = RetryPolicy(schedule=(5.0, 7.0))
    assert policy.max_attempts == 3
    d = new_delivery("dlv_1", "evt_1", "ep_1", 0.0)
    starts = []
    while not d.is_terminal:
        assert d.next_attempt_at is not None
        t = d.next_attempt_at
        starts.append(t)
        d = step(step(d, Start(t), policy), Finish(AttemptResult(t, t + 1.0, status=502)), policy)
    assert starts == [0.0, 6.0, 14.0]
    assert d.reason == "all 3 attempts failed; last: HTTP 502"


# --- (c) statuses, Retry-After, jitter, configuration ----------------------------------


def first_attempt(
    status: int, retry_after: str | None = None, policy: RetryPolicy | None = None
) -> tuple[Delivery, tuple[object, ...]]:
    policy = policy or RetryPolicy()
    d = step(new_delivery("dlv_1", "evt_1", "ep_1", 1000.0), Start(1000.0), policy)
    result = AttemptResult(1000.0, 1002.0, status=status, retry_after=retry_after)
    return delivery_machine.apply(d, Finish(result), policy)


def test_every_2xx_delivers() -> None:
    for status in range(200, 300):
        d, effects = first_attempt(status)
        assert d.state is D, status
        assert d.attempts[0].outcome is Outcome.SUCCESS
        assert d.reason is None
        assert effects == ()


def test_every_other_status_is_a_failure() -> None:
    for status in [*range(100, 200), *range(300, 410), *range(411, 1000)]:
        d, effects = first_attempt(status)
        assert d.state is RS, status
        assert effects == ()
        expected = Outcome.REDIRECT if 300 <= status <= 399 else Outcome.HTTP_ERROR
        assert d.attempts[0].outcome is expected, status
        assert d.reason == f"HTTP {status}"


def test_3xx_is_a_redirect_failure() -> None:
    d, _ = first_attempt(301)
    assert d.attempts[0].outcome is Outcome.REDIRECT
    assert d.state is RS
    assert d.next_attempt_at == 1062.0


def test_410_fails_at_once_and_disables_the_endpoint() -> None:
    d, effects = first_attempt(410, retry_after="5")
    assert d.state is F
    assert d.attempts_made == 1
    assert d.reason == "endpoint answered 410 Gone"
    assert effects == (DisableEndpoint("ep_1", "endpoint answered 410 Gone"),)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_honoured(status: int) -> None:
    d, _ = first_attempt(status, retry_after="120")
    assert d.next_attempt_at == 1122.0
    d, _ = first_attempt(status, retry_after="  7 ")
    assert d.next_attempt_at == 1009.0
    d, _ = first_attempt(status, retry_after="0")
    assert d.next_attempt_at == 1002.0


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_http_date_is_honoured(status: int) -> None:
    # 784111777 is Sun, 06 Nov 1994 08:49:37 GMT (the RFC 9110 example).
    policy = RetryPolicy()
    d = step(new_delivery("dlv_1", "evt_1", "ep_1", 784111700.0), Start(784111700.0), policy)
    for value in (
        "Sun, 06 Nov 1994 08:51:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:51:37 GMT",  # obsolete RFC 850 format
        "Sun Nov  6 08:51:37 1994",  # obsolete asctime format
    ):
        result = AttemptResult(784111700.0, 784111777.0, status=status, retry_after=value)
        new = step(d, Finish(result), policy)
        assert new.next_attempt_at == 784111897.0, value
    # A date in the past means "now".
    past = AttemptResult(
        784111700.0, 784111777.0, status=status, retry_after="Sun, 06 Nov 1994 08:00:00 GMT"
    )
    assert step(d, Finish(past), policy).next_attempt_at == 784111777.0


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_clamped(status: int) -> None:
    policy = RetryPolicy(retry_after_max=600.0)
    d, _ = first_attempt(status, retry_after="7200", policy=policy)
    assert d.next_attempt_at == 1602.0
    d, _ = first_attempt(status, retry_after="9999999999", policy=policy)
    assert d.next_attempt_at == 1602.0
    d, _ = first_attempt(status, retry_after="Fri, 01 Jan 2100 00:00:00 GMT", policy=policy)
    assert d.next_attempt_at == 1602.0
    # The default bound is an hour.
    d, _ = first_attempt(status, retry_after="86400")
    assert d.next_attempt_at == 4602.0


@pytest.mark.parametrize("status", [500, 502, 504, 404, 408, 425, 301, 302, 200])
def test_retry_after_on_other_statuses_is_ignored(status: int) -> None:
    d, _ = first_attempt(status, retry_after="5")
    if status == 200:
        assert d.state is D
    else:
        assert d.next_attempt_at == 1062.0


@pytest.mark.parametrize(
    "value",
    [
        "soon",
        "-5",
        "1.5",
        "",
        "12345678901",
        "\u0661\u0662",  # Arabic-Indic digits
        "Sun, 06 Nov 1994 25:00:00 GMT",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "2030-01-01T00:00:00Z",
    ],
)
def test_malformed_retry_after_falls_back_to_the_schedule(value: str) -> None:
    assert parse_retry_after(value, 1002.0) is None
    d, _ = first_attempt(429, retry_after=value)
    assert d.state is RS
    assert d.next_attempt_at == 1062.0


def test_parse_retry_after_literals() -> None:
    assert parse_retry_after(None, 0.0) is None
    assert parse_retry_after("120", 0.0) == 120.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:02:00 GMT", 60.0) == 60.0
    # A two-digit year more than 50 years ahead belongs to the previous century.
    now_2024 = 1704067200.0  # 2024-01-01T00:00:00Z
    assert parse_retry_after("Friday, 01-Jan-99 00:00:00 GMT", now_2024) == 0.0  # 1999
    assert parse_retry_after("Thursday, 01-Jan-70 00:00:00 GMT", now_2024) == 1451692800.0
    assert (
        parse_retry_after("Tuesday, 01-Jan-74 00:00:00 GMT", now_2024) == 1577923200.0
    )  # 18263 days
    assert parse_retry_after("Wednesday, 01-Jan-75 00:00:00 GMT", now_2024) == 0.0  # 1975
    assert parse_retry_after("Monday, 01-Jan-24 00:01:00 GMT", now_2024) == 60.0


def test_jitter_is_off_by_default() -> None:
    policy = RetryPolicy()
    assert policy.jitter == 0.0
    assert policy.schedule == (60.0, 300.0, 900.0, 3600.0)
    assert DEFAULT_SCHEDULE == (60.0, 300.0, 900.0, 3600.0)
    assert policy.timeout == 30.0
    for n in range(50):
        for attempt, expected in enumerate((60.0, 300.0, 900.0, 3600.0), start=1):
            assert policy.delay_after(attempt, f"dlv_{n}") == expected


def test_jitter_is_deterministic_and_bounded() -> None:
    policy = RetryPolicy(jitter=0.25, seed=42)
    again = RetryPolicy(jitter=0.25, seed=42)
    other_seed = RetryPolicy(jitter=0.25, seed=43)
    delays = []
    for n in range(200):
        for attempt, base in enumerate(DEFAULT_SCHEDULE, start=1):
            delay = policy.delay_after(attempt, f"dlv_{n}")
            assert delay == policy.delay_after(attempt, f"dlv_{n}")
            assert delay == again.delay_after(attempt, f"dlv_{n}")
            assert base * 0.75 <= delay <= base * 1.25
            delays.append(delay / base)
    # Jitter really moves delays around: spread over the band, not all on one point.
    assert min(delays) < 0.85
    assert max(delays) > 1.15
    assert len(set(delays)) > 700
    # Different seeds give different delays for the same delivery.
    differ = sum(
        policy.delay_after(1, f"dlv_{n}") != other_seed.delay_after(1, f"dlv_{n}")
        for n in range(50)
    )
    assert differ == 50
    # Retry-After is not jittered.
    assert policy.delay_after(1, "dlv_1", retry_after=30.0) == 30.0


def test_jitter_flows_into_the_delivery() -> None:
    policy = RetryPolicy(jitter=0.5, seed=7)
    d, _ = first_attempt(500, policy=policy)
    assert d.next_attempt_at == 1002.0 + policy.delay_after(1, "dlv_1")
    assert d.next_attempt_at != 1062.0
    assert 1032.0 <= d.next_attempt_at <= 1092.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"schedule": (60.0, -1.0)},
        {"schedule": 60},
        {"schedule": (math.nan,)},
        {"schedule": (math.inf,)},
        {"schedule": ("60",)},
        {"schedule": (True,)},
        {"schedule": (1.0,) * 101},
        {"timeout": 0.0},
        {"timeout": -1.0},
        {"timeout": math.nan},
        {"timeout": math.inf},
        {"retry_after_max": -1.0},
        {"retry_after_max": math.nan},
        {"retry_after_max": math.inf},
        {"jitter": 1.0},
        {"jitter": 1.5},
        {"jitter": -0.1},
        {"jitter": math.nan},
        {"jitter": math.inf},
        {"max_abandoned": 0},
        {"seed": 1.5},
    ],
)
def test_retry_policy_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)


def test_retry_policy_accepts_edges() -> None:
    assert RetryPolicy(schedule=()).max_attempts == 1
    assert RetryPolicy(schedule=[0, 1.5]).schedule == (0, 1.5)
    assert RetryPolicy(jitter=0.999).jitter == 0.999
    assert RetryPolicy(retry_after_max=0.0).delay_after(1, "x", retry_after=50.0) == 0.0


# --- (d) abandoned attempts ------------------------------------------------------------


def test_abandon_is_recorded_and_due_at_once() -> None:
    policy = RetryPolicy()
    d = step(new_delivery("dlv_1", "evt_1", "ep_1", 1000.0), Start(1000.0), policy)
    d = step(d, Abandon(1010.0, "lease expired"), policy)
    assert d.state is P
    assert d.next_attempt_at == 1010.0
    assert d.attempts_made == 0
    assert len(d.attempts) == 1
    assert d.attempts[0].outcome is Outcome.ABANDONED
    assert d.attempts[0].error == "lease expired"
    assert d.reason == "lease expired"
    # Due immediately: starting at the abandon time is fine.
    d = step(d, Start(1010.0), policy)
    d = step(d, Finish(AttemptResult(1010.0, 1011.0, status=500)), policy)
    assert d.attempts_made == 1
    assert d.attempts[-1].number == 1
    assert d.next_attempt_at == 1071.0
    d = step(step(d, Start(1071.0), policy), Abandon(1080.0), policy)
    assert d.state is RS
    assert d.next_attempt_at == 1080.0
    assert d.attempts_made == 1


def test_abandon_does_not_use_up_attempts() -> None:
    policy = RetryPolicy(max_abandoned=100)
    d = new_delivery("dlv_1", "evt_1", "ep_1", 0.0)
    t = 0.0
    for _ in range(20):
        d = step(step(d, Start(t), policy), Abandon(t + 1), policy)
        t += 1
    assert d.state is P
    assert d.attempts_made == 0
    assert len(d.attempts) == 20
    d = step(step(d, Start(t), policy), Finish(AttemptResult(t, t + 1, status=200)), policy)
    assert d.state is D


def test_max_abandoned_fails_the_delivery() -> None:
    policy = RetryPolicy(max_abandoned=3)
    d = new_delivery("dlv_1", "evt_1", "ep_1", 0.0)
    d = step(step(d, Start(0.0), policy), Abandon(1.0, "crash"), policy)
    d = step(step(d, Start(1.0), policy), Abandon(2.0, "crash"), policy)
    assert d.state is P
    d = step(step(d, Start(2.0), policy), Abandon(3.0, "shutdown"), policy)
    assert d.state is F
    assert d.reason == "abandoned 3 times; last: shutdown"
    assert d.is_terminal


def test_cancel_fails_a_waiting_delivery() -> None:
    policy = RetryPolicy()
    d = new_delivery("dlv_1", "evt_1", "ep_1", 0.0)
    cancelled = step(d, Cancel(5.0, "endpoint disabled"), policy)
    assert cancelled.state is F
    assert cancelled.reason == "endpoint disabled"
    assert cancelled.next_attempt_at is None
    in_flight = step(d, Start(0.0), policy)
    with pytest.raises(IllegalTransition, match="Cancel is not allowed in state 'in_flight'"):
        delivery_machine.apply(in_flight, Cancel(5.0, "x"), policy)


# --- (e) replay ------------------------------------------------------------------------


def test_replay_makes_a_new_linked_pending_delivery() -> None:
    policy = RetryPolicy(schedule=())
    d = step(new_delivery("dlv_1", "evt_1", "ep_1", 0.0), Start(0.0), policy)
    failed = step(d, Finish(AttemptResult(0.0, 1.0, status=500)), policy)
    assert failed.state is F
    again = replay(failed, "dlv_2", 5000.0)
    assert again == Delivery(
        "dlv_2", "evt_1", "ep_1", 5000.0, P, 5000.0, (), None, replay_of="dlv_1"
    )
    assert failed.state is F  # history is not rewritten
    assert len(failed.attempts) == 1

    delivered = step(
        step(new_delivery("dlv_3", "evt_2", "ep_2", 0.0), Start(0.0), policy),
        Finish(AttemptResult(0.0, 1.0, status=200)),
        policy,
    )
    assert replay(delivered, "dlv_4", 9.0).replay_of == "dlv_3"


def test_replay_of_a_non_terminal_delivery_raises() -> None:
    policy = RetryPolicy()
    pending = new_delivery("dlv_1", "evt_1", "ep_1", 0.0)
    in_flight = step(pending, Start(0.0), policy)
    scheduled = step(in_flight, Finish(AttemptResult(0.0, 1.0, status=500)), policy)
    for d in (pending, in_flight, scheduled):
        with pytest.raises(IllegalTransition, match="replay"):
            replay(d, "dlv_2", 10.0)


@given(
    fields=st.tuples(
        st.text(max_size=5),
        st.text(max_size=5),
        st.text(max_size=5),
        st.floats(allow_nan=False),
        st.sampled_from(list(DeliveryState)),
        st.none() | st.floats(allow_nan=False),
        st.just(()),
        st.none() | st.text(max_size=5),
        st.none() | st.text(max_size=5),
        st.none() | st.text(max_size=5),
    )
)
def test_delivery_of_builds_what_the_constructor_builds(fields: tuple[Any, ...]) -> None:
    built, constructed = delivery_machine.delivery_of(*fields), Delivery(*fields)
    assert type(built) is Delivery
    assert built == constructed and hash(built) == hash(constructed)
    assert attrs.astuple(built, recurse=False) == fields
    assert repr(built) == repr(constructed)
    assert copy.deepcopy(built) == constructed
    assert attrs.evolve(built, reason="changed").reason == "changed"
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        built.state = DeliveryState.FAILED  # type: ignore[misc]


def test_delivery_of_takes_keywords_and_defaults_as_the_constructor_does() -> None:
    built = delivery_machine.delivery_of("dlv_1", "evt_1", "ep_1", 1.0, reason="why")
    assert built == Delivery("dlv_1", "evt_1", "ep_1", 1.0, reason="why")
    with pytest.raises(TypeError, match=r"Delivery\.__init__\(\) missing"):
        delivery_machine.delivery_of("dlv_1", "evt_1")  # type: ignore[call-arg]


def test_attempt_of_builds_what_the_constructor_builds() -> None:
    fields = (2, 1.0, 1.5, Outcome.HTTP_ERROR, 503, None, "busy")
    built, constructed = delivery_machine.attempt_of(*fields), delivery_machine.Attempt(*fields)
    assert type(built) is delivery_machine.Attempt
    assert built == constructed and repr(built) == repr(constructed)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        built.status = 200  # type: ignore[misc]


def _frozen(name: str, fields: Any, **options: Any) -> type:
    return attrs.make_class(name, fields, slots=True, frozen=True, weakref_slot=False, **options)


def test_record_builder_keeps_aliases_and_keyword_only_fields() -> None:
    from webhook_core.statemachine import record_builder

    record: Any = _frozen(
        "Aliased", {"a": attrs.field(alias="why"), "b": attrs.field(default=0, kw_only=True)}
    )
    build = record_builder(record)
    assert build(why=1, b=2) == record(why=1, b=2)
    assert type(build(1)) is record and build(1).b == 0
    with pytest.raises(TypeError):
        build(1, 2)


@attrs.frozen(weakref_slot=False)
class _Base:
    a: int


@attrs.frozen(weakref_slot=False)
class _Derived(_Base):
    b: int


@pytest.mark.parametrize(
    "record",
    [
        attrs.make_class("Weak", ["a"], slots=True, frozen=True),
        attrs.make_class("Mutable", ["a"], slots=True, weakref_slot=False),
        _frozen("Checked", {"a": attrs.field(validator=attrs.validators.instance_of(int))}),
        _frozen("Converted", {"a": attrs.field(converter=int)}),
        _frozen("Uninitialised", {"a": attrs.field(init=False, default=0)}),
        _frozen("Hashed", ["a"], cache_hash=True),
        _frozen(
            "PreInit",
            ["a"],
            bases=(type("Hook", (), {"__slots__": (), "__attrs_pre_init__": lambda self: None}),),
        ),
        _Derived,
    ],
    ids=lambda r: r.__name__,
)
def test_record_builder_refuses_records_it_would_build_wrongly(record: type) -> None:
    from webhook_core.statemachine import record_builder

    with pytest.raises(TypeError, match=r"does more than set its fields|through a twin"):
        record_builder(record)
