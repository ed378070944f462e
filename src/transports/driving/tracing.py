"""OpenTelemetry spans of a driver (the ``otel`` extra: ``opentelemetry-api``).

With ``tracing=True`` a driver makes one ``webhook.attempt`` span (kind
CLIENT) per attempt through the global tracer provider; without an SDK
configured by the host these are no-ops. Publishing stores the span current
at ``publish`` with the event, as a W3C ``traceparent`` string beside the
event (never in its body: the bytes receivers get do not change), and each
attempt's span links to it: the attempts of an event may run much later, in
another process, so they are linked to the publishing trace rather than made
its children. With ``traceparent=True`` the attempt's own span context goes
to the receiver in a ``traceparent`` header (not signed; off by default).
"""

from __future__ import annotations

from typing import Any

import attrs
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from transports.driving.observe import Observer
from transports.stores.interface import Claimed
from webhook_core import Delivery, HttpRequest, Outcome

TRACER_NAME = "webhooks-delivery"
_PROPAGATOR = TraceContextTextMapPropagator()


class Tracing(Observer):
    """A ``webhook.attempt`` span per attempt, linked to the publishing span (see the module)."""

    def __init__(self, *, traceparent: bool = False) -> None:
        self.traceparent = traceparent
        self.tracer = trace.get_tracer(TRACER_NAME)

    def publishing(self) -> str | None:
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return carrier.get("traceparent")

    def attempt_started(self, claim: Claimed, request: HttpRequest) -> tuple[HttpRequest, Any]:
        links = []
        if claim.event.trace_context is not None:
            parent = trace.get_current_span(
                _PROPAGATOR.extract({"traceparent": claim.event.trace_context})
            ).get_span_context()
            if parent.is_valid:
                links.append(trace.Link(parent))
        delivery = claim.delivery
        span = self.tracer.start_span(
            "webhook.attempt",
            kind=trace.SpanKind.CLIENT,
            links=links,
            attributes={
                "webhook.event": claim.event.name,
                "webhook.event_id": delivery.event_id,
                "webhook.delivery_id": delivery.id,
                "webhook.endpoint_id": delivery.endpoint_id,
                "webhook.attempt": len(delivery.attempts) + 1,
            },
        )
        if self.traceparent and span.get_span_context().is_valid:
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
            request = attrs.evolve(request, headers=(*request.headers, *carrier.items()))
        return request, span

    def attempt_ended(self, claim: Claimed, delivery: Delivery, token: Any) -> None:
        span: trace.Span = token
        attempt = delivery.attempts[-1]
        span.set_attribute("webhook.outcome", attempt.outcome.value)
        if attempt.status is not None:
            span.set_attribute("http.response.status_code", attempt.status)
        if attempt.outcome is not Outcome.SUCCESS:
            span.set_status(trace.StatusCode.ERROR, attempt.error or attempt.outcome.value)
        span.end()

    def attempt_abandoned(self, claim: Claimed, token: Any) -> None:
        span: trace.Span = token
        span.set_status(trace.StatusCode.ERROR, "attempt abandoned")
        span.end()
