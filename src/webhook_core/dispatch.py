"""The core's side of one attempt and one handshake, as every driver runs them.

A driver claims a delivery, calls ``begin_attempt`` and sends the request it
returns (if any), then feeds the result to ``delivery.apply(..., Finish(...))``.
``begin_attempt`` makes the decisions that come before sending: a claim whose
earlier lease expired records that attempt as abandoned, and a delivery whose
endpoint is no longer active is cancelled instead of sent.
"""

from __future__ import annotations

from webhook_core import delivery_machine
from webhook_core.delivery_machine import (
    IN_FLIGHT,
    Abandon,
    AttemptResult,
    Cancel,
    Defer,
    Delivery,
    Start,
)
from webhook_core.endpoint_machine import ACTIVE, Endpoint, HandshakeResult
from webhook_core.envelope import Event
from webhook_core.gate import EndpointGate
from webhook_core.request import USER_AGENT, HttpRequest, delivery_request
from webhook_core.retry import RetryPolicy

LEASE_MARGIN = 5.0
"""Seconds a lease must outlive an attempt's deadline (so no two workers send at once)."""


def begin_attempt(
    delivery: Delivery,
    event: Event,
    endpoint: Endpoint,
    now: float,
    policy: RetryPolicy,
    user_agent: str = USER_AGENT,
    gate: EndpointGate | None = None,
    lease_until: float | None = None,
) -> tuple[Delivery, HttpRequest | None]:
    """The in-flight record and the request to send; or a record to write back and None.

    ``delivery`` is a claim as the store handed it out: ``pending``,
    ``retry_scheduled``, or ``in_flight`` when an earlier worker's lease expired.
    A terminal result (abandoned too often, or the endpoint is not active) or a
    delivery the ``gate`` holds back (deferred to a later time) is to be
    written back as it is, with nothing sent. So is a claim whose lease
    (``lease_until``) would end less than ``LEASE_MARGIN`` seconds after the
    attempt's deadline: another worker could take it over while it is still
    being sent. An attempt the gate admits must be reported to it with
    ``gate.finished`` when it ends.
    """
    if delivery.state is IN_FLIGHT:
        delivery, _ = delivery_machine.apply(delivery, Abandon(now, "lease expired"), policy)
    if endpoint.state is not ACTIVE and not delivery.is_terminal:
        reason = f"endpoint {endpoint.state.value}"
        delivery, _ = delivery_machine.apply(delivery, Cancel(now, reason), policy)
    if delivery.is_terminal:
        return delivery, None
    if lease_until is not None and now + policy.timeout + LEASE_MARGIN > lease_until:
        return delivery, None
    hold = None if gate is None else gate.admit(endpoint.id, now)
    if hold is not None:
        deferral = Defer(now, hold.until, f"held back: {hold.reason}")
        delivery, _ = delivery_machine.apply(delivery, deferral, policy)
        return delivery, None
    delivery, _ = delivery_machine.apply(delivery, Start(now), policy)
    return delivery, delivery_request(delivery, event, endpoint, now, policy.timeout, user_agent)


def handshake_result(result: AttemptResult, body: bytes) -> HandshakeResult:
    """The endpoint machine's input for a handshake request that ended with ``result``."""
    error = None
    if result.error_kind is not None:
        error = f"{result.error_kind.value}: {result.error}"
    return HandshakeResult(result.ended_at, result.status, body, error)
