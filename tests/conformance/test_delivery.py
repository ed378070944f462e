"""The delivery conformance suite: every driver, store and HTTP transport, over loopback HTTP."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.harness import (
    DRIVERS,
    STORES,
    TRANSPORTS,
    make_store,
    message,
    running,
    verifying,
    wait_endpoint,
)
from transports.testing import (
    CloseWithoutResponse,
    Drip,
    Handler,
    Hang,
    LoopbackReceiver,
    ReceivedRequest,
    Reset,
    Respond,
)
from webhook_core import (
    SIGNATURE_HEADER,
    ConfigError,
    DeliveryState,
    EndpointState,
    Outcome,
    RetryPolicy,
    Verifier,
)

SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItY29uZm9ybWFuY2UtdGVzdHM="
FAST = RetryPolicy(schedule=(0.2, 0.2, 0.2, 0.2), timeout=1.0)
DONE = (DeliveryState.DELIVERED, DeliveryState.FAILED)

pytestmark = [
    pytest.mark.parametrize("driver", DRIVERS),
    pytest.mark.parametrize("store_kind", STORES),
    pytest.mark.parametrize("transport", TRANSPORTS),
]


def deliveries_at(rx: LoopbackReceiver, path: str) -> list[ReceivedRequest]:
    """Requests to ``path`` that are deliveries, not handshakes."""
    return [
        r
        for r in rx.requests_for(path)
        if r.header("X-Netasampark-Event") != "webhook.verification"
    ]


def test_both_signatures_verify_on_the_receiving_side(
    driver: str, store_kind: str, transport: str
) -> None:
    verifier = Verifier([SECRET])
    checked: list[str] = []

    def check(request: ReceivedRequest) -> Respond:
        headers = dict(request.headers)
        verifier.verify(request.body, headers, time.time())
        verifier.verify_platform(request.body, headers)
        checked.append(request.header(SIGNATURE_HEADER) or "")
        return Respond(200)

    with (
        LoopbackReceiver(default=verifying(Handler(check))) as rx,
        running(driver, store_kind, transport) as hooks,
    ):
        endpoint = hooks.add_endpoint(rx.url("/hook"), secret=SECRET)
        wait_endpoint(hooks, endpoint.id, EndpointState.ACTIVE)
        result = hooks.publish("message.delivered", message(1))
        hooks.drain()
        assert result.deliveries == 1
        assert not rx.errors
        assert len(checked) == 1
        delivered = rx.requests_for("/hook")[-1]
        assert delivered.body == result.event.body
        assert delivered.header("webhook-id") == result.event.id
        assert delivered.header("X-Netasampark-Event") == "message.delivered"
        assert delivered.header("Content-Type") == "application/json"


def test_fan_out_honours_filters_and_wildcards(
    driver: str, store_kind: str, transport: str
) -> None:
    patterns = {
        "/all": ["*"],
        "/messages": ["message.*"],
        "/exact": ["payment.processed"],
        "/two": ["grievance.created", "campaign.*"],
    }
    with (
        LoopbackReceiver(default=verifying()) as rx,
        running(driver, store_kind, transport) as hooks,
    ):
        for path, events in patterns.items():
            endpoint = hooks.add_endpoint(rx.url(path), events=events)
            wait_endpoint(hooks, endpoint.id, EndpointState.ACTIVE)
        hooks.publish("message.sent", message(1))
        hooks.publish(
            "payment.processed",
            {"payment_id": "p", "amount": 100, "currency": "INR", "status": "processed"},
        )
        hooks.publish(
            "campaign.started",
            {"campaign_id": "c", "name": "n", "channel": "sms", "status": "running"},
        )
        hooks.drain()

        def events_at(path: str) -> list[str]:
            return sorted(
                r.json()["event"]
                for r in rx.requests_for(path)
                if r.json()["event"] != "webhook.verification"
            )

        assert events_at("/all") == ["campaign.started", "message.sent", "payment.processed"]
        assert events_at("/messages") == ["message.sent"]
        assert events_at("/exact") == ["payment.processed"]
        assert events_at("/two") == ["campaign.started"]


@pytest.mark.parametrize(
    "answer",
    [
        Respond(200, b"wrong-token"),
        Respond(200, b""),
        Respond(500, b"x"),
        Respond(200, b'{"verification_token": "nope"}'),
    ],
    ids=["wrong-token", "empty", "server-error", "wrong-json"],
)
def test_a_failed_handshake_leaves_the_endpoint_unverified(
    driver: str, store_kind: str, transport: str, answer: Respond
) -> None:
    with LoopbackReceiver(default=answer) as rx, running(driver, store_kind, transport) as hooks:
        endpoint = hooks.add_endpoint(rx.url("/hook"))
        failed = wait_endpoint(hooks, endpoint.id, EndpointState.UNVERIFIED)
        assert failed.last_error and "verification failed" in failed.last_error
        result = hooks.publish("message.sent", message())
        hooks.drain()
        assert result.deliveries == 0
        assert [r.json()["event"] for r in rx.requests] == ["webhook.verification"]


def test_json_token_answer_verifies(driver: str, store_kind: str, transport: str) -> None:
    def json_answer(request: ReceivedRequest) -> Respond:
        token = request.json()["data"]["verification_token"]
        return Respond(200, b'{"verification_token": "%s"}' % token.encode())

    with (
        LoopbackReceiver(default=Handler(json_answer)) as rx,
        running(driver, store_kind, transport) as hooks,
    ):
        endpoint = hooks.add_endpoint(rx.url("/hook"))
        wait_endpoint(hooks, endpoint.id, EndpointState.ACTIVE)


@pytest.mark.parametrize(
    "failure",
    [Respond(500), Hang(5.0), Reset(), CloseWithoutResponse()],
    ids=["500", "timeout", "reset", "closed"],
)
def test_retries_after_a_failure_then_delivers(
    driver: str, store_kind: str, transport: str, failure: Any
) -> None:
    with (
        LoopbackReceiver(default=verifying()) as rx,
        running(driver, store_kind, transport, policy=FAST) as hooks,
    ):
        endpoint = hooks.add_endpoint(rx.url("/hook"))
        wait_endpoint(hooks, endpoint.id, EndpointState.ACTIVE)
        rx.route("/hook", failure, Respond(200))
        result = hooks.publish("message.sent", message())
        hooks.drain()
        (delivery,) = hooks.list_deliveries()
        assert delivery.event_id == result.event.id
        assert delivery.state is DeliveryState.DELIVERED
        first, second = delivery.attempts
        assert first.outcome is not Outcome.SUCCESS
        assert second.outcome is Outcome.SUCCESS
        assert second.started_at >= first.ended_at + 0.2 - 0.05
        ids = {r.header("webhook-id") for r in deliveries_at(rx, "/hook")}
        assert ids == {result.event.id}


def test_a_refused_handshake_leaves_the_endpoint_unverified(
    driver: str, store_kind: str, transport: str
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with running(driver, store_kind, transport) as hooks:
        endpoint = hooks.add_endpoint(f"http://127.0.0.1:{port}/hook")
        unverified = wait_endpoint(hooks, endpoint.id, EndpointState.UNVERIFIED)
        assert "connect_error" in (unverified.last_error or "")


def test_the_outbound_guard_blocks_loopback_unless_allowed(
    driver: str, store_kind: str, transport: str
) -> None:
    with (
        LoopbackReceiver(default=verifying()) as rx,
        running(driver, store_kind, transport, allowed_networks=()) as hooks,
    ):
        with pytest.raises(ConfigError, match=r"127\.0\.0\.1 is loopback"):
            hooks.add_endpoint(rx.url("/hook"))  # an address literal: refused at once
        # A host name is resolved and vetted when connecting.
        endpoint = hooks.add_endpoint(rx.url("/hook").replace("127.0.0.1", "localhost"))
        unverified = wait_endpoint(hooks, endpoint.id, EndpointState.UNVERIFIED)
        assert "blocked: refused to connect to localhost" in (unverified.last_error or "")
        assert "is loopback" in (unverified.last_error or "")
        assert rx.requests == []


def test_refused_connection_counts_as_a_failed_attempt(
    driver: str, store_kind: str, transport: str
) -> None:
    policy = RetryPolicy(schedule=(0.1, 0.1), timeout=1.0)
    with (
        LoopbackReceiver(default=verifying()) as rx,
        running(driver, store_kind, transport, policy=policy) as hooks,
    ):
        endpoint = hooks.add_endpoint(rx.url("/hook"))
        wait_endpoint(hooks, endpoint.id, EndpointState.ACTIVE)
        rx.close()
        hooks.publish("message.sent", message())
        hooks.drain()
        (delivery,) = hooks.list_deliveries()
        assert delivery.state is DeliveryState.FAILED
        assert [a.outcome for a in delivery.attempts] == [Outcome.CONNECT_ERROR] * 3


def test_gone_disables_the_endpoint(driver: str, store_kind: str, transport: str) -> None:
    with (
        LoopbackReceiver(default=verifying()) as rx,
        running(driver, store_kind, transport, policy=FAST) as hooks,
    ):
        endpoint = hooks.add_endpoint(rx.url("/hook"))
        wait_endpoint(hooks, endpoint.id, EndpointState.ACTIVE)
        rx.route("/hook", Respond(410))
        hooks.publish("message.sent", message(1))
        hooks.drain()
        (delivery,) = hooks.list_deliveries()
        assert delivery.state is DeliveryState.FAILED
        assert len(delivery.attempts) == 1
        disabled = wait_endpoint(hooks, endpoint.id, EndpointState.DISABLED)
        assert "410" in (disabled.disabled_reason or "")
        assert hooks.publish("message.sent", message(2)).deliveries == 0


def test_retry_after_is_honoured(driver: str, store_kind: str, transport: str) -> None:
    policy = RetryPolicy(schedule=(30.0,), timeout=1.0)
    with (
        LoopbackReceiver(default=verifying()) as rx,
        running(driver, store_kind, transport, policy=policy) as hooks,
    ):
        endpoint = hooks.add_endpoint(rx.url("/hook"))
        wait_endpoint(hooks, endpoint.id, EndpointState.ACTIVE)
        rx.route("/hook", Respond(429, headers=(("Retry-After", "1"),)), Respond(200))
        hooks.publish("message.sent", message())
        hooks.drain()
        (delivery,) = hooks.list_deliveries()
        assert delivery.state is DeliveryState.DELIVERED
        first, second = delivery.attempts
        assert first.status == 429
        gap = second.started_at - first.ended_at
        assert 0.9 <= gap < 5.0


def test_a_dripping_receiver_is_cut_off_at_the_deadline(
    driver: str, store_kind: str, transport: str
) -> None:
    policy = RetryPolicy(schedule=(0.1,), timeout=1.0)
    with (
        LoopbackReceiver(default=verifying()) as rx,
        running(driver, store_kind, transport, policy=policy) as hooks,
    ):
        endpoint = hooks.add_endpoint(rx.url("/hook"))
        wait_endpoint(hooks, endpoint.id, EndpointState.ACTIVE)
        rx.route("/hook", Drip(200, b"x" * 40, interval=0.1), Respond(200))
        hooks.publish("message.sent", message())
        hooks.drain()
        (delivery,) = hooks.list_deliveries()
        first = delivery.attempts[0]
        assert first.outcome is Outcome.TIMEOUT
        assert 0.9 <= first.latency <= 1.6
        assert delivery.state is DeliveryState.DELIVERED


def test_graceful_shutdown_loses_nothing(
    driver: str, store_kind: str, transport: str, tmp_path: Path
) -> None:
    from transports.testing import Delay

    store = make_store(store_kind, tmp_path)
    with LoopbackReceiver(default=verifying()) as rx:
        with running(driver, store_kind, transport, store=store, policy=FAST) as hooks:
            endpoint = hooks.add_endpoint(rx.url("/hook"))
            wait_endpoint(hooks, endpoint.id, EndpointState.ACTIVE)
            rx.route("/hook", Delay(0.5, Respond(200)))
            ids = [hooks.publish("message.sent", message(i)).event.id for i in range(5)]
            rx.wait_for_path("/hook", 1, timeout=5)
        deliveries = store.list_deliveries()
        assert sorted(d.event_id for d in deliveries) == sorted(ids)
        for d in deliveries:
            assert d.state in (
                DeliveryState.DELIVERED,
                DeliveryState.PENDING,
                DeliveryState.RETRY_SCHEDULED,
            ) or (d.state is DeliveryState.IN_FLIGHT), d
        with running(driver, store_kind, transport, store=store, policy=FAST, lease=7.0) as hooks:
            hooks.drain()
        assert {d.state for d in store.list_deliveries()} == {DeliveryState.DELIVERED}
        received = {r.header("webhook-id") for r in deliveries_at(rx, "/hook")}
        assert received == set(ids)
