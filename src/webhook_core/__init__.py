"""Sans-IO webhook delivery core: events, signing, and the delivery and endpoint state machines.

Nothing here performs I/O, reads a clock or draws randomness: time is always
an argument (``now``, epoch seconds) and ids and tokens are supplied by the caller.
"""

from webhook_core import delivery_machine, endpoint_machine
from webhook_core.canonical import MAX_SAFE_INTEGER, canonical_json, js_number
from webhook_core.catalog import (
    PLATFORM_EVENTS,
    CampaignData,
    EventCatalog,
    EventType,
    GrievanceData,
    MessageData,
    PaymentData,
    platform_catalog,
)
from webhook_core.delivery_machine import (
    Abandon,
    Attempt,
    AttemptResult,
    Cancel,
    Defer,
    Delivery,
    DeliveryState,
    DisableEndpoint,
    Finish,
    Outcome,
    Start,
    new_delivery,
    replay,
)
from webhook_core.dispatch import LEASE_MARGIN, begin_attempt, handshake_result
from webhook_core.endpoint_machine import (
    BeginVerification,
    ChangeUrl,
    DeliveryOutcome,
    Disable,
    Enable,
    Endpoint,
    EndpointSecret,
    EndpointState,
    HandshakeResult,
    HealthPolicy,
    rotate_secret,
    token_matches,
)
from webhook_core.envelope import (
    VERIFICATION_EVENT,
    Event,
    build_event,
    envelope_bytes,
    validate_id,
    verification_event,
)
from webhook_core.errors import (
    ConfigError,
    IllegalTransition,
    InvalidEventName,
    PayloadError,
    UnknownEvent,
    VerificationError,
    WebhookError,
)
from webhook_core.fanout import fan_out, fan_out_many
from webhook_core.gate import BreakerState, EndpointGate, GatePolicy, Hold
from webhook_core.names import pattern_matches, validate_event_name, validate_pattern
from webhook_core.request import USER_AGENT, HttpRequest, delivery_request, verification_request
from webhook_core.retry import DEFAULT_SCHEDULE, RetryPolicy, parse_retry_after
from webhook_core.signing import (
    SIGNATURE_HEADER,
    Secret,
    VerifiedRequest,
    Verifier,
    platform_signature,
    signature_headers,
    standard_signature,
    webhook_signature,
)
from webhook_core.tenants import DEFAULT_TENANT, validate_tenant
from webhook_core.timefmt import parse_rfc3339, rfc3339
from webhook_core.urls import validate_headers, validate_url

# The state machine modules, public as webhook_core.delivery and webhook_core.endpoint.
delivery = delivery_machine
endpoint = endpoint_machine

__all__ = [
    "DEFAULT_SCHEDULE",
    "DEFAULT_TENANT",
    "LEASE_MARGIN",
    "MAX_SAFE_INTEGER",
    "PLATFORM_EVENTS",
    "SIGNATURE_HEADER",
    "USER_AGENT",
    "VERIFICATION_EVENT",
    "Abandon",
    "Attempt",
    "AttemptResult",
    "BeginVerification",
    "BreakerState",
    "CampaignData",
    "Cancel",
    "ChangeUrl",
    "ConfigError",
    "Defer",
    "Delivery",
    "DeliveryOutcome",
    "DeliveryState",
    "Disable",
    "DisableEndpoint",
    "Enable",
    "Endpoint",
    "EndpointGate",
    "EndpointSecret",
    "EndpointState",
    "Event",
    "EventCatalog",
    "EventType",
    "Finish",
    "GatePolicy",
    "GrievanceData",
    "HandshakeResult",
    "HealthPolicy",
    "Hold",
    "HttpRequest",
    "IllegalTransition",
    "InvalidEventName",
    "MessageData",
    "Outcome",
    "PayloadError",
    "PaymentData",
    "RetryPolicy",
    "Secret",
    "Start",
    "UnknownEvent",
    "VerificationError",
    "VerifiedRequest",
    "Verifier",
    "WebhookError",
    "begin_attempt",
    "build_event",
    "canonical_json",
    "delivery",
    "delivery_request",
    "endpoint",
    "envelope_bytes",
    "fan_out",
    "fan_out_many",
    "handshake_result",
    "js_number",
    "new_delivery",
    "parse_retry_after",
    "parse_rfc3339",
    "pattern_matches",
    "platform_catalog",
    "platform_signature",
    "replay",
    "rfc3339",
    "rotate_secret",
    "signature_headers",
    "standard_signature",
    "token_matches",
    "validate_event_name",
    "validate_headers",
    "validate_id",
    "validate_pattern",
    "validate_tenant",
    "validate_url",
    "verification_event",
    "verification_request",
    "webhook_signature",
]
