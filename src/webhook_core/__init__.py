"""Sans-IO webhook delivery core: events, signing, and the delivery and endpoint state machines.

Nothing here performs I/O, reads a clock or draws randomness: time is always
an argument (``now``, epoch seconds) and ids and tokens are supplied by the caller.
"""

from webhook_core import delivery, endpoint
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
from webhook_core.delivery import (
    Abandon,
    Attempt,
    AttemptResult,
    Cancel,
    Delivery,
    DeliveryState,
    DisableEndpoint,
    Finish,
    Outcome,
    Start,
    new_delivery,
    replay,
)
from webhook_core.dispatch import begin_attempt, handshake_result
from webhook_core.endpoint import (
    BeginVerification,
    ChangeUrl,
    Disable,
    Enable,
    Endpoint,
    EndpointSecret,
    EndpointState,
    HandshakeResult,
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
from webhook_core.fanout import fan_out
from webhook_core.names import pattern_matches, validate_event_name, validate_pattern
from webhook_core.request import USER_AGENT, HttpRequest, delivery_request, verification_request
from webhook_core.retry import DEFAULT_SCHEDULE, RetryPolicy, parse_retry_after
from webhook_core.scheduling import DueQueue
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
from webhook_core.timefmt import parse_rfc3339, rfc3339
from webhook_core.urls import validate_headers, validate_url

__all__ = [
    "DEFAULT_SCHEDULE",
    "MAX_SAFE_INTEGER",
    "PLATFORM_EVENTS",
    "SIGNATURE_HEADER",
    "USER_AGENT",
    "VERIFICATION_EVENT",
    "Abandon",
    "Attempt",
    "AttemptResult",
    "BeginVerification",
    "CampaignData",
    "Cancel",
    "ChangeUrl",
    "ConfigError",
    "Delivery",
    "DeliveryState",
    "Disable",
    "DisableEndpoint",
    "DueQueue",
    "Enable",
    "Endpoint",
    "EndpointSecret",
    "EndpointState",
    "Event",
    "EventCatalog",
    "EventType",
    "Finish",
    "GrievanceData",
    "HandshakeResult",
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
    "validate_url",
    "verification_event",
    "verification_request",
    "webhook_signature",
]
