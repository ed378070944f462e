"""Fan-out to subscribed active endpoints, and the signed requests the core asks for."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools

import pytest

from webhook_core import Verifier, endpoint
from webhook_core.delivery_machine import (
    AttemptResult,
    Delivery,
    DeliveryState,
    Finish,
    Start,
    new_delivery,
)
from webhook_core.delivery_machine import apply as apply_delivery
from webhook_core.endpoint_machine import (
    BeginVerification,
    Disable,
    Endpoint,
    EndpointSecret,
    EndpointState,
    HandshakeResult,
    rotate_secret,
)
from webhook_core.envelope import Event
from webhook_core.errors import VerificationError
from webhook_core.fanout import fan_out, fan_out_many
from webhook_core.request import USER_AGENT, HttpRequest, delivery_request
from webhook_core.retry import RetryPolicy

NOW = 1_700_000_000.75
BODY = (
    b'{"event":"message.delivered","timestamp":"2023-11-14T22:13:20Z",'
    b'"data":{"message_id":"m_1"},"id":"evt_1"}'
)
EVENT = Event(id="evt_1", name="message.delivered", created_at=1_700_000_000.0, body=BODY)


def make_endpoint(
    endpoint_id: str,
    filters: tuple[str, ...] = ("*",),
    state: EndpointState = EndpointState.ACTIVE,
    secret: str = "s3cret",
    headers: tuple[tuple[str, str], ...] = (),
) -> Endpoint:
    e = Endpoint(
        endpoint_id,
        f"https://{endpoint_id}.example.com/hook",
        (EndpointSecret(secret, 0.0),),
        0.0,
        filters=filters,
        headers=headers,
    )
    if state is EndpointState.UNVERIFIED:
        return e
    e = endpoint.apply(e, BeginVerification("tok", 1.0))
    if state is EndpointState.VERIFYING:
        return e
    e = endpoint.apply(e, HandshakeResult(2.0, 200, b"tok"))
    if state is EndpointState.DISABLED:
        e = endpoint.apply(e, Disable("operator", 3.0))
    assert e.state is state
    return e


def counter_ids() -> itertools.count[int]:
    return itertools.count(1)


def test_fan_out_only_to_active_subscribed_endpoints() -> None:
    endpoints = [
        make_endpoint("all"),
        make_endpoint("exact", ("message.delivered",)),
        make_endpoint("prefix", ("message.*",)),
        make_endpoint("several", ("payment.failed", "message.delivered")),
        make_endpoint("other_event", ("message.sent",)),
        make_endpoint("other_family", ("payment.*",)),
        make_endpoint("unverified", state=EndpointState.UNVERIFIED),
        make_endpoint("verifying", state=EndpointState.VERIFYING),
        make_endpoint("disabled", state=EndpointState.DISABLED),
    ]
    numbers = counter_ids()
    deliveries = fan_out(EVENT, endpoints, new_id=lambda: f"dlv_{next(numbers)}", now=NOW)
    assert deliveries == [
        Delivery("dlv_1", "evt_1", "all", NOW, DeliveryState.PENDING, NOW),
        Delivery("dlv_2", "evt_1", "exact", NOW, DeliveryState.PENDING, NOW),
        Delivery("dlv_3", "evt_1", "prefix", NOW, DeliveryState.PENDING, NOW),
        Delivery("dlv_4", "evt_1", "several", NOW, DeliveryState.PENDING, NOW),
    ]
    assert all(d == new_delivery(d.id, "evt_1", d.endpoint_id, NOW) for d in deliveries)


def test_fan_out_to_nobody() -> None:
    assert fan_out(EVENT, [], new_id=lambda: "x", now=NOW) == []
    only_disabled = [make_endpoint("d", state=EndpointState.DISABLED)]
    assert fan_out(EVENT, only_disabled, new_id=lambda: "x", now=NOW) == []


def test_fan_out_many_is_fan_out_of_each_event() -> None:
    endpoints = [
        make_endpoint("all"),
        make_endpoint("delivered", ("message.delivered",)),
        make_endpoint("messages", ("message.*",)),
        make_endpoint("payments", ("payment.*",)),
        make_endpoint("disabled", state=EndpointState.DISABLED),
    ]
    names = ["message.delivered", "payment.failed", "message.sent", "message.delivered"]
    events = [Event(f"evt_{i}", name, NOW, b"{}") for i, name in enumerate(names)]
    many, one = counter_ids(), counter_ids()
    fanned = fan_out_many(events, endpoints, new_id=lambda: f"dlv_{next(many)}", now=NOW)
    assert fanned == [
        (e, fan_out(e, endpoints, new_id=lambda: f"dlv_{next(one)}", now=NOW)) for e in events
    ]
    assert [[d.endpoint_id for d in ds] for _, ds in fanned] == [
        ["all", "delivered", "messages"],
        ["all", "payments"],
        ["all", "messages"],
        ["all", "delivered", "messages"],
    ]


def test_fan_out_many_keeps_the_subscribers_it_found_in_the_dict_given() -> None:
    endpoints = [make_endpoint("all"), make_endpoint("payments", ("payment.*",))]
    subscribers: dict[str, list[Endpoint]] = {}
    ids = counter_ids()
    for name in ("payment.failed", "message.sent", "payment.failed"):
        event = Event(f"evt_{name}", name, NOW, b"{}")
        ((_, deliveries),) = fan_out_many(
            [event], endpoints, new_id=lambda: f"dlv_{next(ids)}", now=NOW, subscribers=subscribers
        )
        assert [d.endpoint_id for d in deliveries] == [
            e.id for e in endpoints if e.subscribes_to(name)
        ]
    assert {name: [e.id for e in found] for name, found in subscribers.items()} == {
        "payment.failed": ["all", "payments"],
        "message.sent": ["all"],
    }


# --- request building ------------------------------------------------------------------


def expected_standard(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def expected_platform(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def after_failures(d: Delivery, failures: int) -> Delivery:
    policy = RetryPolicy()
    for _ in range(failures):
        assert d.next_attempt_at is not None
        t = d.next_attempt_at
        d, _ = apply_delivery(d, Start(t), policy)
        d, _ = apply_delivery(d, Finish(AttemptResult(t, t + 1.0, status=500)), policy)
    return d


def test_delivery_request_headers() -> None:
    ep = make_endpoint("acme", headers=(("X-Team", "payments"), ("Authorization", "Bearer t")))
    d = new_delivery("dlv_42", "evt_1", "acme", NOW)
    request = delivery_request(d, EVENT, ep, NOW, timeout=30.0)
    assert isinstance(request, HttpRequest)
    assert request.url == "https://acme.example.com/hook"
    assert request.body == BODY
    assert request.timeout == 30.0
    assert [name for name, _ in request.headers] == [
        "Content-Type",
        "User-Agent",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "X-Netasampark-Signature",
        "X-Netasampark-Event",
        "X-Netasampark-Delivery",
        "X-Netasampark-Attempt",
        "X-Team",
        "Authorization",
    ]
    headers = dict(request.headers)
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("webhooks-delivery/")
    assert headers["webhook-id"] == "evt_1"
    assert headers["webhook-timestamp"] == "1700000000"
    assert headers["webhook-signature"] == expected_standard(b"s3cret", "evt_1", 1700000000, BODY)
    assert headers["X-Netasampark-Signature"] == expected_platform(b"s3cret", BODY)
    assert headers["X-Netasampark-Event"] == "message.delivered"
    assert headers["X-Netasampark-Delivery"] == "dlv_42"
    assert headers["X-Netasampark-Attempt"] == "1"
    assert headers["X-Team"] == "payments"
    assert headers["Authorization"] == "Bearer t"

    # A receiver verifies it with the library's own Verifier.
    verified = Verifier(["s3cret"]).verify(request.body, headers, NOW + 10.0)
    assert verified.msg_id == "evt_1"
    assert verified.timestamp == 1700000000
    Verifier(["s3cret"]).verify_platform(request.body, headers)
    with pytest.raises(VerificationError):
        Verifier(["other"]).verify(request.body, headers, NOW)
    with pytest.raises(VerificationError):
        Verifier(["s3cret"]).verify(request.body + b" ", headers, NOW)


def test_webhook_id_is_the_event_id_across_retries() -> None:
    ep = make_endpoint("acme")
    d = new_delivery("dlv_42", "evt_1", "acme", NOW)
    first = dict(delivery_request(d, EVENT, ep, NOW, timeout=30.0).headers)
    d = after_failures(d, 2)
    later = NOW + 500.0
    retry = dict(delivery_request(d, EVENT, ep, later, timeout=30.0).headers)
    assert first["webhook-id"] == retry["webhook-id"] == "evt_1"
    assert retry["webhook-timestamp"] == "1700000500"
    assert retry["X-Netasampark-Attempt"] == "3"  # attempts made + 1
    assert retry["X-Netasampark-Delivery"] == "dlv_42"
    assert retry["webhook-signature"] == expected_standard(b"s3cret", "evt_1", 1700000500, BODY)


def test_attempt_header_ignores_abandoned_attempts() -> None:
    from webhook_core.delivery_machine import Abandon

    policy = RetryPolicy()
    ep = make_endpoint("acme")
    d = new_delivery("dlv_42", "evt_1", "acme", NOW)
    d, _ = apply_delivery(d, Start(NOW), policy)
    d, _ = apply_delivery(d, Abandon(NOW + 1.0), policy)
    headers = dict(delivery_request(d, EVENT, ep, NOW + 1.0, timeout=30.0).headers)
    assert headers["X-Netasampark-Attempt"] == "1"


def test_rotation_signs_with_both_secrets() -> None:
    ep = make_endpoint("acme", secret="old_secret")
    ep = rotate_secret(ep, "new_secret", NOW - 10.0, grace=3600.0)
    d = new_delivery("dlv_42", "evt_1", "acme", NOW)
    headers = dict(delivery_request(d, EVENT, ep, NOW, timeout=30.0).headers)
    signatures = headers["webhook-signature"].split(" ")
    assert signatures == [
        expected_standard(b"new_secret", "evt_1", 1700000000, BODY),
        expected_standard(b"old_secret", "evt_1", 1700000000, BODY),
    ]
    assert all(s.startswith("v1,") for s in signatures)
    # The platform header carries the newest secret's signature only.
    assert headers["X-Netasampark-Signature"] == expected_platform(b"new_secret", BODY)
    # Receivers holding either secret accept the request.
    Verifier(["old_secret"]).verify(BODY, headers, NOW)
    Verifier(["new_secret"]).verify(BODY, headers, NOW)
    Verifier(["new_secret"]).verify_platform(BODY, headers)
    with pytest.raises(VerificationError):
        Verifier(["old_secret"]).verify_platform(BODY, headers)

    # After the grace period only the new secret signs.
    after = NOW + 3600.0
    headers = dict(delivery_request(d, EVENT, ep, after, timeout=30.0).headers)
    assert headers["webhook-signature"] == expected_standard(
        b"new_secret", "evt_1", int(after), BODY
    )
    with pytest.raises(VerificationError):
        Verifier(["old_secret"]).verify(BODY, headers, after)


def test_verification_request_is_signed_like_a_delivery() -> None:
    from webhook_core.request import verification_request

    body = (
        b'{"event":"webhook.verification","timestamp":"2023-11-14T22:13:20Z",'
        b'"data":{"verification_token":"tok_1"},"id":"vrf_1"}'
    )
    handshake = Event(id="vrf_1", name="webhook.verification", created_at=NOW, body=body)
    ep = make_endpoint("acme", state=EndpointState.UNVERIFIED, headers=(("X-Team", "t"),))
    request = verification_request(ep, handshake, NOW, timeout=10.0)
    assert request.url == "https://acme.example.com/hook"
    assert request.body == body
    assert request.timeout == 10.0
    headers = dict(request.headers)
    assert headers["webhook-id"] == "vrf_1"
    assert headers["X-Netasampark-Event"] == "webhook.verification"
    assert headers["X-Netasampark-Delivery"] == "vrf_1"
    assert headers["X-Netasampark-Attempt"] == "1"
    assert headers["X-Netasampark-Signature"] == expected_platform(b"s3cret", body)
    assert headers["X-Team"] == "t"
    Verifier(["s3cret"]).verify(body, headers, NOW)
