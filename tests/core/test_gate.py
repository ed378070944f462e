"""The endpoint gate (caps, rate limits, circuit breakers) and deferral in the core."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook_core import (
    BreakerState,
    ConfigError,
    Defer,
    DeliveryState,
    EndpointGate,
    EndpointState,
    Event,
    GatePolicy,
    IllegalTransition,
    RetryPolicy,
    begin_attempt,
    delivery_machine,
    new_delivery,
)
from webhook_core.endpoint_machine import Endpoint, EndpointSecret

POLICY = RetryPolicy()
EVENT = Event("evt_1", "message.sent", 0.0, b"{}")
ENDPOINT = Endpoint(
    id="ep_1",
    url="https://example.com/hook",
    secrets=(EndpointSecret("whsec_" + "A" * 32, 0.0),),
    created_at=0.0,
    state=EndpointState.ACTIVE,
)


def test_an_endpoint_earns_its_window_and_loses_it_when_slow_or_failing() -> None:
    gate = EndpointGate(GatePolicy(initial_window=2, slow_after=1.0, busy_retry=0.5))
    assert gate.admit("a", 0.0) is None and gate.admit("a", 0.0) is None
    full = gate.admit("a", 0.0)
    assert full is not None and "window of 2 attempts is full" in full.reason
    gate.finished("a", 0.1, ok=True, started_at=0.0)
    gate.finished("a", 0.1, ok=True, started_at=0.0)
    for _ in range(8):
        assert gate.admit("a", 0.2) is None, "two successes doubled the window twice, to 8"
    assert gate.admit("a", 0.2) is not None
    slow = gate.admit("a", 1.5)
    assert slow is not None and "slow: an attempt has waited 1.3 s" in slow.reason
    for _ in range(7):
        gate.finished("a", 1.6, ok=True, started_at=0.2)
    assert gate.admit("a", 1.6) is None, "one in flight: below the initial window"
    gate.finished("a", 1.7, ok=False, started_at=0.2)
    gate.finished("a", 1.7, ok=True, started_at=1.6)
    for _ in range(4):
        assert gate.admit("a", 1.8) is None, "the failure narrowed it to 2, a success to 4"
    narrowed = gate.admit("a", 1.8)
    assert narrowed is not None and "window of 4" in narrowed.reason


def test_a_window_earned_by_many_successes_stops_growing() -> None:
    gate = EndpointGate()
    for n in range(10_000):
        assert gate.admit("a", float(n)) is None
        gate.finished("a", float(n), ok=True, started_at=float(n))
    at = 10_000.0
    for _ in range(65_536):
        assert gate.admit("a", at) is None
    full = gate.admit("a", at)
    assert full is not None and "window of 65536 attempts is full" in full.reason


def test_the_concurrency_cap_holds_back_the_extra_attempt() -> None:
    gate = EndpointGate(GatePolicy(max_in_flight=2, initial_window=2, busy_retry=0.5))
    assert gate.admit("a", 0.0) is None
    assert gate.admit("a", 0.0) is None
    hold = gate.admit("a", 1.0)
    assert hold is not None and hold.until == 1.5 and "window of 2 attempts is full" in hold.reason
    assert gate.admit("b", 1.0) is None, "other endpoints are not affected"
    gate.finished("a", 2.0, ok=True, started_at=0.0)
    assert gate.admit("a", 2.0) is None
    assert gate.admit("a", 2.0) is not None, "successes never widen it past max_in_flight"


def test_the_rate_limit_refills_over_time() -> None:
    gate = EndpointGate(GatePolicy(max_in_flight=None, rate=2.0, burst=2))
    assert gate.admit("a", 10.0) is None
    assert gate.admit("a", 10.0) is None
    hold = gate.admit("a", 10.0)
    assert hold is not None and hold.until == pytest.approx(10.5) and hold.reason == "rate limit"
    assert gate.admit("a", 10.5) is None


def test_the_breaker_opens_probes_and_closes() -> None:
    gate = EndpointGate(GatePolicy(failures_to_open=3, cooldown=10.0, max_cooldown=25.0))
    for t in range(3):
        assert gate.admit("a", float(t)) is None
        gate.finished("a", float(t), ok=False, started_at=float(t))
    assert gate.breaker("a") is BreakerState.OPEN
    hold = gate.admit("a", 5.0)
    assert hold is not None and hold.until == 12.0 and "circuit open" in hold.reason
    assert gate.admit("a", 12.0) is None, "the probe goes through"
    assert gate.breaker("a") is BreakerState.HALF_OPEN
    second = gate.admit("a", 12.0)
    assert second is not None and "probe is in flight" in second.reason
    gate.finished("a", 13.0, ok=False, started_at=12.0)
    reopened = gate.admit("a", 14.0)
    assert reopened is not None and reopened.until == 33.0, "the cooldown doubled"
    assert gate.admit("a", 33.0) is None
    gate.finished("a", 34.0, ok=False, started_at=33.0)
    capped = gate.admit("a", 35.0)
    assert capped is not None and capped.until == 59.0, "doubling stops at max_cooldown"
    assert gate.admit("a", 59.0) is None
    gate.finished("a", 60.0, ok=True, started_at=59.0)
    assert gate.breaker("a") is BreakerState.CLOSED
    assert gate.admit("a", 60.0) is None


def test_attempts_in_flight_when_the_circuit_opens_do_not_lengthen_it() -> None:
    gate = EndpointGate(GatePolicy(initial_window=8, failures_to_open=5, cooldown=30.0))
    for _ in range(8):
        assert gate.admit("a", 0.0) is None
    for _ in range(8):
        gate.finished("a", 1.0, ok=False, started_at=0.0)
    hold = gate.admit("a", 2.0)
    assert hold is not None and hold.until == 31.0, "opened once, for the first cooldown"
    assert "after 8 failed attempts" in hold.reason


def test_only_the_probe_reopens_a_half_open_circuit() -> None:
    gate = EndpointGate(GatePolicy(initial_window=2, failures_to_open=1, cooldown=10.0))
    assert gate.admit("a", 0.0) is None and gate.admit("a", 0.0) is None
    gate.finished("a", 1.0, ok=False, started_at=0.0)
    assert gate.admit("a", 11.0) is None, "the probe"
    gate.finished("a", 12.0, ok=False, started_at=0.0)
    assert gate.breaker("a") is BreakerState.HALF_OPEN, (
        "a late failure from before is not the probe"
    )
    gate.finished("a", 13.0, ok=False, started_at=11.0)
    hold = gate.admit("a", 14.0)
    assert hold is not None and hold.until == 33.0, "the probe failed: open again, doubled"


def test_a_success_resets_the_run_of_failures() -> None:
    gate = EndpointGate(GatePolicy(failures_to_open=2))
    for ok in (False, True, False, True, False):
        assert gate.admit("a", 0.0) is None
        gate.finished("a", 0.0, ok=ok, started_at=0.0)
    assert gate.breaker("a") is BreakerState.CLOSED


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 1000)), max_size=60))
def test_in_flight_never_exceeds_the_cap_and_never_goes_negative(
    steps: list[tuple[bool, float]],
) -> None:
    gate = EndpointGate(
        GatePolicy(max_in_flight=3, initial_window=1, failures_to_open=4, cooldown=5.0)
    )
    now, running = 0.0, []
    for start, dt in steps:
        now += dt
        if start:
            if gate.admit("a", now) is None:
                running.append(now)
        elif running:
            gate.finished("a", now, ok=dt > 500, started_at=running.pop(0))
        assert 0 <= gate.in_flight("a") == len(running) <= 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"rate": 0.0}, "rate"),
        ({"burst": 0}, "burst"),
        ({"failures_to_open": 0}, "failures_to_open"),
        ({"cooldown": 0.0}, "cooldown"),
        ({"cooldown": 100.0, "max_cooldown": 10.0}, "cooldown"),
        ({"busy_retry": 0.0}, "busy_retry"),
        ({"slow_after": 0.0}, "slow_after"),
        ({"initial_window": 0}, "initial_window"),
        ({"max_in_flight": 2, "initial_window": 3}, "initial_window"),
    ],
)
def test_bad_gate_settings_are_named(options: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GatePolicy(**options)  # type: ignore[arg-type]


def test_defer_moves_a_waiting_delivery_without_using_an_attempt() -> None:
    d = new_delivery("dlv_1", EVENT.id, ENDPOINT.id, 0.0)
    later, effects = delivery_machine.apply(d, Defer(1.0, 31.0, "held back"), POLICY)
    assert later.state is DeliveryState.PENDING and later.next_attempt_at == 31.0
    assert later.attempts == () and later.reason == "held back" and effects == ()
    started, _ = delivery_machine.apply(later, delivery_machine.Start(31.0), POLICY)
    with pytest.raises(IllegalTransition):
        delivery_machine.apply(started, Defer(32.0, 40.0, "x"), POLICY)


def test_begin_attempt_defers_what_the_gate_holds_back() -> None:
    gate = EndpointGate(GatePolicy(max_in_flight=1, initial_window=1))
    d = new_delivery("dlv_1", EVENT.id, ENDPOINT.id, 0.0)
    first, request = begin_attempt(d, EVENT, ENDPOINT, 0.0, POLICY, gate=gate)
    assert request is not None and first.state is DeliveryState.IN_FLIGHT
    other = new_delivery("dlv_2", EVENT.id, ENDPOINT.id, 0.0)
    held, nothing = begin_attempt(other, EVENT, ENDPOINT, 0.0, POLICY, gate=gate)
    assert nothing is None and held.state is DeliveryState.PENDING
    assert held.next_attempt_at == pytest.approx(0.1)
    assert held.reason is not None and "held back" in held.reason


def test_begin_attempt_sends_nothing_when_the_lease_is_too_short() -> None:
    d = new_delivery("dlv_1", EVENT.id, ENDPOINT.id, 0.0)
    late = 100.0 - POLICY.timeout - 4.0
    same, request = begin_attempt(d, EVENT, ENDPOINT, late, POLICY, lease_until=100.0)
    assert request is None and same == d
    _, request = begin_attempt(d, EVENT, ENDPOINT, late - 2, POLICY, lease_until=100.0)
    assert request is not None
