"""The endpoint gate: whether an attempt to an endpoint may start now.

Theory of operation
-------------------
One bad endpoint must not use up the capacity every endpoint shares. Before a
driver sends an attempt it asks ``gate.admit(endpoint_id, now)``; the answer
is ``None`` (go; the attempt now counts against the endpoint) or a ``Hold``
naming the time to try again and why; the driver then defers the delivery to
that time (the core's ``Defer``: no attempt is used up, nothing is sent).
Every admitted attempt is reported back with
``finished(endpoint_id, now, ok, started_at)``.

Four rules, each per endpoint:

* a concurrency window, earned: an endpoint starts with ``initial_window``
  attempts at once; each success doubles it (up to ``max_in_flight``, by
  default up to 65,536: more than a driver sends at once, so a healthy
  endpoint may use all the capacity there is); a failure narrows it back
  to ``initial_window``, and so does an attempt in flight for longer than
  ``slow_after`` seconds while it lasts (a dead or hanging endpoint keeps a
  few slots, not all of them, even before its breaker opens; what it holds
  back waits as long as that attempt has);
* a rate limit: a token bucket refilled at ``rate`` per second, holding at
  most ``burst`` tokens;
* a circuit breaker, ``closed`` while attempts succeed. After
  ``failures_to_open`` failed attempts in a row it is ``open`` for
  ``cooldown`` seconds (doubling on each reopening, up to ``max_cooldown``)
  and every attempt is deferred to the end of that time. Then it is
  ``half_open``: one probe attempt is let through; success closes it, failure
  opens it again. Attempts admitted before the circuit opened that fail
  later count as failures but neither lengthen nor reopen it (a success of
  any attempt closes it).

The gate is per driver process, in memory: after a restart every breaker is
closed again, which costs at most one more run of failures. It reads no
clock; time is an argument.
"""

from __future__ import annotations

import bisect
import math

import attrs

from webhook_core.errors import ConfigError
from webhook_core.statemachine import Symbol


class BreakerState(Symbol):
    """Where an endpoint's circuit breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


@attrs.frozen
class GatePolicy:
    """Per-endpoint limits; ``None`` turns a limit off."""

    max_in_flight: int | None = None
    initial_window: int = 4
    slow_after: float = 1.0
    rate: float | None = None
    burst: int = 20
    failures_to_open: int | None = 5
    cooldown: float = 30.0
    max_cooldown: float = 600.0
    busy_retry: float = 0.1

    def __attrs_post_init__(self) -> None:
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ConfigError("max_in_flight per endpoint must be at least 1 (or None)")
        if not self.slow_after > 0:
            raise ConfigError("slow_after must be a positive number of seconds")
        if self.initial_window < 1 or (
            self.max_in_flight is not None and self.initial_window > self.max_in_flight
        ):
            raise ConfigError("initial_window must be at least 1 and at most max_in_flight")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise ConfigError("rate must be a positive number of attempts per second (or None)")
        if self.burst < 1:
            raise ConfigError("burst must be at least 1")
        if self.failures_to_open is not None and self.failures_to_open < 1:
            raise ConfigError("failures_to_open must be at least 1 (or None)")
        if not 0 < self.cooldown <= self.max_cooldown:
            raise ConfigError("cooldown must be positive and at most max_cooldown")
        if not self.busy_retry > 0:
            raise ConfigError("busy_retry must be a positive number of seconds")


@attrs.frozen
class Hold:
    """The gate's answer when an attempt may not start now: try again at ``until``."""

    until: float
    reason: str


@attrs.define
class _Endpoint:
    window: int
    in_flight: int = 0
    started: list[float] = attrs.Factory(list)  # start times of attempts in flight
    tokens: float = 0.0
    refilled_at: float = -math.inf
    breaker: BreakerState = CLOSED
    failures: int = 0
    open_until: float = -math.inf
    cooldown: float = 0.0
    probing: bool = False
    probe_at: float = -math.inf  # when the half-open probe was admitted


_MAX_WINDOW = 1 << 16
"""The widest window without ``max_in_flight``: more than any driver sends at once, and an
int that stays small (doubled on every success, it would grow a bit per success)."""


class EndpointGate:
    """Per-endpoint concurrency caps, rate limits and circuit breakers (see the module)."""

    def __init__(self, policy: GatePolicy | None = None) -> None:
        self.policy = policy or GatePolicy()
        self._endpoints: dict[str, _Endpoint] = {}

    def _get(self, endpoint_id: str) -> _Endpoint:
        state = self._endpoints.get(endpoint_id)
        if state is None:
            state = self._endpoints[endpoint_id] = _Endpoint(
                window=self.policy.initial_window, tokens=float(self.policy.burst)
            )
        return state

    def breaker(self, endpoint_id: str) -> BreakerState:
        """The endpoint's breaker state."""
        return self._get(endpoint_id).breaker

    def in_flight(self, endpoint_id: str) -> int:
        """Admitted attempts not yet reported finished."""
        return self._get(endpoint_id).in_flight

    def admit(self, endpoint_id: str, now: float) -> Hold | None:
        """``None`` if an attempt may start now (it is then counted), else a ``Hold``."""
        policy, e = self.policy, self._get(endpoint_id)
        if e.breaker is OPEN:
            if now < e.open_until:
                return Hold(e.open_until, f"circuit open after {e.failures} failed attempts")
            e.breaker, e.probing = HALF_OPEN, False
        if e.breaker is HALF_OPEN and e.probing:
            return Hold(now + policy.busy_retry, "circuit half open: a probe is in flight")
        if e.started and now - e.started[0] > policy.slow_after:
            if e.in_flight >= policy.initial_window:
                waited = now - e.started[0]
                return Hold(
                    now + max(policy.busy_retry, waited),
                    f"slow: an attempt has waited {waited:.1f} s",
                )
        elif e.in_flight >= e.window:
            return Hold(now + policy.busy_retry, f"its window of {e.window} attempts is full")
        if policy.rate is not None:
            e.tokens = min(policy.burst, e.tokens + (now - e.refilled_at) * policy.rate)
            e.refilled_at = now
            if e.tokens < 1:
                return Hold(now + (1 - e.tokens) / policy.rate, "rate limit")
            e.tokens -= 1
        if e.breaker is HALF_OPEN:
            e.probing, e.probe_at = True, now
        e.in_flight += 1
        bisect.insort(e.started, now)
        return None

    def finished(self, endpoint_id: str, now: float, ok: bool, started_at: float) -> None:
        """Report the end of the attempt admitted at ``started_at`` (``ok``: it got a 2xx)."""
        policy, e = self.policy, self._get(endpoint_id)
        e.in_flight = max(e.in_flight - 1, 0)
        index = bisect.bisect_left(e.started, started_at)
        if index < len(e.started) and e.started[index] == started_at:
            del e.started[index]
        if ok:
            e.failures, e.cooldown, e.probing = 0, 0.0, False
            e.breaker = CLOSED
            e.window = min(e.window * 2, policy.max_in_flight or _MAX_WINDOW)
            return
        e.failures += 1
        e.window = policy.initial_window
        threshold = policy.failures_to_open
        if e.breaker is CLOSED:
            opens = threshold is not None and e.failures >= threshold
        else:
            # Attempts admitted before the circuit opened change nothing; the probe's does.
            opens = e.breaker is HALF_OPEN and e.probing and started_at == e.probe_at
        if opens:
            e.cooldown = (
                policy.cooldown if e.cooldown == 0 else min(e.cooldown * 2, policy.max_cooldown)
            )
            e.breaker, e.open_until, e.probing = OPEN, now + e.cooldown, False
