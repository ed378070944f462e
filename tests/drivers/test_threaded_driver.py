"""The threaded driver against real HTTP receivers (and a fake transport for virtual time)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from transports.clocks import VirtualClock
from transports.http.transport import HttpResponse
from transports.stores.interface import Claimed, DeliveryFilter
from transports.stores.memory import MemoryStore
from transports.sync.service import ThreadedWebhookService
from transports.testing import (
    LOOPBACK_NETWORKS,
    Behaviour,
    Delay,
    Drip,
    Handler,
    Hang,
    LoopbackReceiver,
    ReceivedRequest,
    Reset,
    Respond,
)
from webhook_core import (
    DEFAULT_SCHEDULE,
    ConfigError,
    Delivery,
    DeliveryState,
    Endpoint,
    EndpointState,
    HttpRequest,
    Outcome,
    RetryPolicy,
    Verifier,
)

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MESSAGE = {"message_id": "m1", "channel": "sms", "to": "+919800000000", "status": "sent"}
PAYMENT = {"payment_id": "p1", "amount": 100, "currency": "INR", "status": "processed"}
FAST = RetryPolicy(schedule=(0.2, 0.2), timeout=1.0)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    yield
    leaked = [t.name for t in threading.enumerate() if t.name.startswith("webhooks-")]
    assert leaked == []


@pytest.fixture
def rx() -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver() as receiver:
        yield receiver


def receiver(*behaviours: Behaviour, token: str | None = None, slow: float = 0.0) -> Handler:
    """Answer the handshake (with ``token`` if given, after ``slow`` seconds), then act
    out ``behaviours`` for events (the last one repeats)."""
    script = list(behaviours) or [Respond(200)]
    lock = threading.Lock()

    def answer(request: ReceivedRequest) -> Behaviour:
        body = request.json()
        if body["event"] == "webhook.verification":
            sent = body["data"]["verification_token"]
            reply = Respond(200, json.dumps({"verification_token": token or sent}).encode())
            return Delay(slow, reply)
        with lock:
            return script.pop(0) if len(script) > 1 else script[0]

    return Handler(answer)


def events(rx: LoopbackReceiver, path: str | None = None) -> list[ReceivedRequest]:
    """Requests other than handshakes."""
    return [
        r
        for r in rx.requests
        if (path is None or r.path == path) and r.json()["event"] != "webhook.verification"
    ]


def service(**options: Any) -> ThreadedWebhookService:
    options.setdefault("allow_http", True)
    options.setdefault("store", MemoryStore())
    options.setdefault("allowed_networks", LOOPBACK_NETWORKS)
    options.setdefault("policy", FAST)
    options.setdefault("lease", 10.0)
    return ThreadedWebhookService(**options)


def verified(hooks: ThreadedWebhookService, url: str, **options: Any) -> Endpoint:
    endpoint = hooks.add_endpoint(url, **options)
    hooks.drain(timeout=5)
    current = hooks.get_endpoint(endpoint.id)
    assert current is not None and current.state is EndpointState.ACTIVE, current
    return current


def state_of(hooks: ThreadedWebhookService, endpoint: Endpoint) -> EndpointState:
    current = hooks.get_endpoint(endpoint.id)
    assert current is not None
    return current.state


def only_delivery(hooks: ThreadedWebhookService) -> Delivery:
    [delivery] = hooks.list_deliveries()
    return delivery


def outcomes(delivery: Delivery) -> list[Outcome]:
    return [a.outcome for a in delivery.attempts]


# -- configuration and lifecycle ---------------------------------------------------


def test_configuration_is_validated() -> None:
    with pytest.raises(ConfigError, match="lease"):
        ThreadedWebhookService(MemoryStore(), policy=RetryPolicy(timeout=30), lease=35)
    with pytest.raises(ConfigError, match="max_in_flight"):
        ThreadedWebhookService(MemoryStore(), max_in_flight=0)
    hooks = ThreadedWebhookService(MemoryStore(), policy=RetryPolicy(timeout=2))
    assert hooks.lease == 32 and hooks.poll_interval == float("inf") and hooks.max_in_flight == 32


def test_start_stop_and_restart() -> None:
    hooks = service()
    hooks.stop()  # stopping a service that never started is harmless
    hooks.start()
    with pytest.raises(RuntimeError):
        hooks.start()
    hooks.stop()
    hooks.stop()
    with pytest.raises(RuntimeError):
        hooks.drain()
    with hooks:
        hooks.drain(timeout=1)


# -- handshake ----------------------------------------------------------------------


def test_handshake_makes_the_endpoint_active(rx: LoopbackReceiver) -> None:
    rx.route("/hook", receiver())
    with service() as hooks:
        endpoint = hooks.add_endpoint(rx.url("/hook"))
        assert endpoint.state is EndpointState.VERIFYING
        again = verified(hooks, rx.url("/hook"), allow_duplicate=True)
        assert again.verified_url == rx.url("/hook")
        [first, _] = rx.requests
        assert first.json()["event"] == "webhook.verification"
        assert first.header("X-Netasampark-Signature") is not None


def test_endpoint_added_before_start_is_verified_at_start(rx: LoopbackReceiver) -> None:
    rx.route("/hook", receiver())
    hooks = service()
    endpoint = hooks.add_endpoint(rx.url("/hook"))
    with hooks:
        hooks.drain(timeout=5)
        assert state_of(hooks, endpoint) is EndpointState.ACTIVE


def test_stale_handshake_answer_is_ignored(rx: LoopbackReceiver) -> None:
    rx.route("/slow", receiver(slow=0.5))
    rx.route("/fast", receiver())
    with service() as hooks:
        endpoint = hooks.add_endpoint(rx.url("/slow"))
        rx.wait_for_path("/slow", 1)
        hooks.change_endpoint(endpoint.id, url=rx.url("/fast"))  # a new token, sent at once
        rx.wait_for_path("/fast", 1)
        hooks.drain(timeout=5)
        current = hooks.get_endpoint(endpoint.id)
    assert current is not None and current.state is EndpointState.ACTIVE
    assert current.verified_url == rx.url("/fast")


def test_wrong_token_leaves_the_endpoint_unverified(rx: LoopbackReceiver) -> None:
    rx.route("/hook", receiver(token="not-the-token"))
    with service() as hooks:
        endpoint = hooks.add_endpoint(rx.url("/hook"))
        hooks.drain(timeout=5)
        current = hooks.get_endpoint(endpoint.id)
        assert current is not None and current.state is EndpointState.UNVERIFIED
        assert "verification failed" in (current.last_error or "")
        assert hooks.publish("message.sent", MESSAGE).deliveries == 0
        hooks.drain(timeout=1)
    assert events(rx) == []


# -- delivery -----------------------------------------------------------------------


def test_publish_fans_out_to_subscribed_endpoints(rx: LoopbackReceiver) -> None:
    for path in ("/all", "/messages", "/payments"):
        rx.route(path, receiver())
    with service() as hooks:
        verified(hooks, rx.url("/all"))
        verified(hooks, rx.url("/messages"), events=["message.*"])
        verified(hooks, rx.url("/payments"), events=["payment.processed"])
        assert hooks.publish("message.sent", MESSAGE).deliveries == 2
        assert hooks.publish("payment.processed", PAYMENT).deliveries == 2
        assert hooks.publish("payment.failed", PAYMENT).deliveries == 1
        hooks.drain(timeout=5)
        delivered = hooks.list_deliveries(DeliveryFilter(state=DeliveryState.DELIVERED))
        assert len(delivered) == 5
    assert sorted(r.json()["event"] for r in events(rx, "/all")) == [
        "message.sent",
        "payment.failed",
        "payment.processed",
    ]
    assert [r.json()["event"] for r in events(rx, "/messages")] == ["message.sent"]
    assert [r.json()["event"] for r in events(rx, "/payments")] == ["payment.processed"]


def test_both_signatures_verify_at_the_receiver(rx: LoopbackReceiver) -> None:
    rx.route("/hook", receiver())
    with service() as hooks:
        verified(hooks, rx.url("/hook"), secret=SECRET)
        published = hooks.publish("message.sent", MESSAGE)
        hooks.drain(timeout=5)
        delivery = only_delivery(hooks)
    [request] = events(rx)
    headers = dict(request.headers)
    verifier = Verifier([SECRET])
    assert verifier.verify(request.body, headers, time.time()).msg_id == published.event.id
    verifier.verify_platform(request.body, headers)
    assert request.body == published.event.body
    assert request.header("X-Netasampark-Event") == "message.sent"
    assert request.header("X-Netasampark-Delivery") == delivery.id
    assert request.header("X-Netasampark-Attempt") == "1"
    assert (request.header("User-Agent") or "").startswith("webhooks-delivery/")


def test_rotated_secret_signs_with_old_and_new(rx: LoopbackReceiver) -> None:
    rx.route("/hook", receiver())
    with service() as hooks:
        endpoint = verified(hooks, rx.url("/hook"), secret=SECRET)
        hooks.rotate_secret(endpoint.id, secret="a-brand-new-secret", grace=3600)
        hooks.publish("message.sent", MESSAGE)
        hooks.drain(timeout=5)
    [request] = events(rx)
    headers = dict(request.headers)
    assert len(headers["webhook-signature"].split()) == 2
    Verifier([SECRET]).verify(request.body, headers, time.time())
    Verifier(["a-brand-new-secret"]).verify(request.body, headers, time.time())
    Verifier(["a-brand-new-secret"]).verify_platform(request.body, headers)


def test_retry_after_500_then_success(rx: LoopbackReceiver) -> None:
    rx.route("/hook", receiver(Respond(500, b"oops"), Respond(200)))
    with service() as hooks:
        verified(hooks, rx.url("/hook"))
        hooks.publish("message.sent", MESSAGE)
        hooks.drain(timeout=5)
        delivery = only_delivery(hooks)
    assert delivery.state is DeliveryState.DELIVERED
    assert outcomes(delivery) == [Outcome.HTTP_ERROR, Outcome.SUCCESS]
    first, second = delivery.attempts
    assert first.status == 500 and first.response_excerpt == "oops"
    assert second.started_at - first.ended_at >= 0.2
    assert [r.header("X-Netasampark-Attempt") for r in events(rx)] == ["1", "2"]


def test_failures_are_classified_and_the_delivery_fails(rx: LoopbackReceiver) -> None:
    rx.route("/hook", receiver(Hang(5), Reset(), Respond(503)))
    policy = RetryPolicy(schedule=(0.05, 0.05), timeout=0.5)
    with service(policy=policy) as hooks:
        verified(hooks, rx.url("/hook"))
        hooks.publish("message.sent", MESSAGE)
        hooks.drain(timeout=5)
        delivery = only_delivery(hooks)
    assert outcomes(delivery) == [Outcome.TIMEOUT, Outcome.NETWORK_ERROR, Outcome.HTTP_ERROR]
    assert 0.5 <= delivery.attempts[0].latency < 1.0
    assert delivery.state is DeliveryState.FAILED
    assert delivery.reason is not None and "all 3 attempts failed" in delivery.reason


def test_refused_connection_is_a_connect_error() -> None:
    with LoopbackReceiver() as gone, service() as hooks:
        gone.route("/hook", receiver())
        endpoint = verified(hooks, gone.url("/hook"))
        gone.close()  # the port is closed now: connections are refused
        hooks.publish("message.sent", MESSAGE)
        hooks.drain(timeout=5)
        delivery = only_delivery(hooks)
        assert outcomes(delivery) == [Outcome.CONNECT_ERROR] * 3
        hooks.verify_endpoint(endpoint.id)
        hooks.drain(timeout=5)
        current = hooks.get_endpoint(endpoint.id)
    assert current is not None and current.state is EndpointState.UNVERIFIED
    assert "connect_error" in (current.last_error or "")


def test_dripping_receiver_is_cut_off_at_the_deadline(rx: LoopbackReceiver) -> None:
    rx.route("/hook", receiver(Drip(body=b"x" * 100, interval=0.2)))
    policy = RetryPolicy(schedule=(), timeout=1.0)
    with service(policy=policy) as hooks:
        verified(hooks, rx.url("/hook"))
        hooks.publish("message.sent", MESSAGE)
        began = time.monotonic()
        hooks.drain(timeout=5)
        elapsed = time.monotonic() - began
        delivery = only_delivery(hooks)
    [attempt] = delivery.attempts
    assert attempt.outcome is Outcome.TIMEOUT
    assert 1.0 <= attempt.latency < 1.6
    assert elapsed < 1.6


def test_410_gone_disables_the_endpoint(rx: LoopbackReceiver) -> None:
    rx.route("/hook", receiver(Respond(410)))
    with service() as hooks:
        endpoint = verified(hooks, rx.url("/hook"))
        hooks.publish("message.sent", MESSAGE)
        hooks.drain(timeout=5)
        delivery = only_delivery(hooks)
        current = hooks.get_endpoint(endpoint.id)
        assert hooks.publish("message.sent", MESSAGE).deliveries == 0
    assert delivery.state is DeliveryState.FAILED and outcomes(delivery) == [Outcome.HTTP_ERROR]
    assert current is not None and current.state is EndpointState.DISABLED
    assert "410" in (current.disabled_reason or "")


def test_retry_after_on_429_is_honoured(rx: LoopbackReceiver) -> None:
    rx.route("/hook", receiver(Respond(429, headers=(("Retry-After", "1"),)), Respond(200)))
    policy = RetryPolicy(schedule=(30.0,), timeout=1.0)
    with service(policy=policy) as hooks:
        verified(hooks, rx.url("/hook"))
        hooks.publish("message.sent", MESSAGE)
        hooks.drain(timeout=5)
        delivery = only_delivery(hooks)
    assert outcomes(delivery) == [Outcome.HTTP_ERROR, Outcome.SUCCESS]
    first, second = delivery.attempts
    assert 1.0 <= second.started_at - first.ended_at < 2.0


def test_operator_disable_enable_and_replay(rx: LoopbackReceiver) -> None:
    rx.route("/hook", receiver())
    with service() as hooks:
        endpoint = verified(hooks, rx.url("/hook"))
        hooks.publish("message.sent", MESSAGE)
        hooks.drain(timeout=5)
        original = only_delivery(hooks)
        hooks.disable_endpoint(endpoint.id)
        assert hooks.publish("message.sent", MESSAGE).deliveries == 0
        with pytest.raises(ConfigError):
            hooks.replay(original.id)
        assert hooks.enable_endpoint(endpoint.id).state is EndpointState.ACTIVE
        fresh = hooks.replay(original.id)
        hooks.drain(timeout=5)
        replayed = hooks.get_delivery(fresh.id)
    assert replayed is not None and replayed.state is DeliveryState.DELIVERED
    assert replayed.replay_of == original.id
    first, second = events(rx)
    assert first.json()["id"] == second.json()["id"]
    assert first.header("X-Netasampark-Delivery") != second.header("X-Netasampark-Delivery")


def test_drain_times_out_while_an_attempt_hangs(rx: LoopbackReceiver) -> None:
    rx.route("/hook", receiver(Hang(5)))
    with service(policy=RetryPolicy(schedule=(), timeout=0.5)) as hooks:
        verified(hooks, rx.url("/hook"))
        hooks.publish("message.sent", MESSAGE)
        with pytest.raises(TimeoutError):
            hooks.drain(timeout=0.1)
        hooks.drain(timeout=5)


def test_claim_of_a_lost_worker_is_abandoned_then_sent(rx: LoopbackReceiver) -> None:
    rx.route("/hook", receiver())
    store = MemoryStore()
    with service(store=store) as hooks:
        verified(hooks, rx.url("/hook"))
    hooks.publish("message.sent", MESSAGE)  # stopped: the delivery waits in the store
    now = time.time()
    [lost] = store.claim(now, 10, "crashed-worker", now + 0.05)  # that worker never reports
    time.sleep(0.1)
    with service(store=store) as hooks:
        hooks.drain(timeout=5)
        delivery = hooks.get_delivery(lost.delivery.id)
    assert delivery is not None and delivery.state is DeliveryState.DELIVERED
    assert outcomes(delivery) == [Outcome.ABANDONED, Outcome.SUCCESS]
    assert len(events(rx)) == 1


# -- graceful stop ------------------------------------------------------------------


def test_stop_finishes_the_attempt_in_flight(rx: LoopbackReceiver) -> None:
    rx.route("/hook", receiver(Delay(0.5)))
    store = MemoryStore()
    with service(store=store) as hooks:
        verified(hooks, rx.url("/hook"))
        hooks.publish("message.sent", MESSAGE)
        rx.wait_for(2, timeout=5)  # the handshake and the event
    delivery = only_delivery(hooks)
    assert delivery.state is DeliveryState.DELIVERED
    assert outcomes(delivery) == [Outcome.SUCCESS]


def test_stop_with_a_timeout_can_be_resumed(rx: LoopbackReceiver) -> None:
    rx.route("/hook", receiver(Hang(5)))
    hooks = service(policy=RetryPolicy(schedule=(), timeout=0.6))
    hooks.start()
    verified(hooks, rx.url("/hook"))
    hooks.publish("message.sent", MESSAGE)
    rx.wait_for(2, timeout=5)
    with pytest.raises(TimeoutError):
        hooks.stop(timeout=0.1)  # the attempt is still within its deadline
    hooks.stop()
    assert outcomes(only_delivery(hooks)) == [Outcome.TIMEOUT]


class StopsWhileClaiming(MemoryStore):
    """Starts ``stop()`` between a claim and the attempt, and records releases."""

    def __init__(self) -> None:
        super().__init__()
        self.hooks: ThreadedWebhookService | None = None
        self.stopper: threading.Thread | None = None
        self.released: list[str] = []

    def claim(self, now: float, limit: int, worker: str, lease_until: float) -> list[Claimed]:
        claimed = super().claim(now, limit, worker, lease_until)
        if claimed and self.hooks is not None and self.stopper is None:
            self.stopper = threading.Thread(target=self.hooks.stop)
            self.stopper.start()
            time.sleep(0.2)  # stop() marks the service as stopping at once
        return claimed

    def release(self, delivery_ids: Sequence[str], worker: str) -> None:
        self.released.extend(delivery_ids)
        super().release(delivery_ids, worker)


def test_stop_releases_claims_never_started(rx: LoopbackReceiver) -> None:
    rx.route("/hook", receiver())
    store = StopsWhileClaiming()
    hooks = service(store=store)
    hooks.start()
    verified(hooks, rx.url("/hook"))
    store.hooks = hooks
    hooks.publish("message.sent", MESSAGE)
    for _ in range(100):
        if store.stopper is not None:
            break
        time.sleep(0.01)
    assert store.stopper is not None
    store.stopper.join(5)
    delivery = only_delivery(hooks)
    assert store.released == [delivery.id]
    assert delivery.state is DeliveryState.PENDING and delivery.attempts == ()
    assert events(rx) == []
    store.hooks = None
    with service(store=store) as again:  # another worker picks it up
        again.drain(timeout=5)
    assert only_delivery(again).state is DeliveryState.DELIVERED
    assert len(events(rx)) == 1


# -- virtual time -------------------------------------------------------------------


class FailingTransport:
    """Answers handshakes with the token and every event with an instant 500."""

    def __init__(self) -> None:
        self.sent: list[HttpRequest] = []

    def send(self, request: HttpRequest) -> HttpResponse:
        self.sent.append(request)
        body = json.loads(request.body)
        if body["event"] == "webhook.verification":
            return HttpResponse(200, (), body["data"]["verification_token"].encode())
        return HttpResponse(500, (), b"down")

    def close(self) -> None:
        """Nothing to close."""


def test_virtual_time_walks_the_default_schedule() -> None:
    clock = VirtualClock(autojump=True)
    t0 = clock.now()
    transport = FailingTransport()
    began = time.monotonic()
    with ThreadedWebhookService(MemoryStore(), http=transport, clock=clock) as hooks:
        endpoint = hooks.add_endpoint("https://receiver.example/hook")
        hooks.drain(timeout=5)
        assert state_of(hooks, endpoint) is EndpointState.ACTIVE
        hooks.publish("message.sent", MESSAGE)
        hooks.drain(timeout=5)
        delivery = only_delivery(hooks)
    assert time.monotonic() - began < 1.0
    assert delivery.state is DeliveryState.FAILED
    assert outcomes(delivery) == [Outcome.HTTP_ERROR] * 5
    starts = [a.started_at for a in delivery.attempts]
    assert starts[0] == t0
    for (previous, attempt), delay in zip(
        itertools.pairwise(delivery.attempts), DEFAULT_SCHEDULE, strict=True
    ):
        assert attempt.started_at == previous.ended_at + delay
    assert clock.now() == t0 + sum(DEFAULT_SCHEDULE)
    assert len(transport.sent) == 6  # the handshake and five attempts


def test_virtual_time_does_not_jump_past_an_attempt_in_flight(rx: LoopbackReceiver) -> None:
    rx.route("/hook", receiver(Delay(0.3, Respond(500)), Respond(200)))
    clock = VirtualClock(autojump=True)
    with service(clock=clock, policy=RetryPolicy(schedule=(600.0,), timeout=2.0)) as hooks:
        verified(hooks, rx.url("/hook"))
        t0 = clock.now()
        hooks.publish("message.sent", MESSAGE)
        hooks.drain(timeout=5)
        delivery = only_delivery(hooks)
    first, second = delivery.attempts
    assert first.started_at == first.ended_at == t0  # no jump while the request was out
    assert second.started_at == t0 + 600.0
    assert delivery.state is DeliveryState.DELIVERED
