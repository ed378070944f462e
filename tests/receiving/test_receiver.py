"""The receiver toolkit without a framework: decisions, routing, de-duplication, respond fast."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.pg import require_postgres
from tests.receiving.receiving_helpers import (
    MESSAGE,
    OTHER_SECRET,
    SECRET,
    event_request,
    handshake_request,
    sign,
)
from transports.receiving import (
    IdempotencyStore,
    MemoryIdempotencyStore,
    ReceivedEvent,
    Receiver,
    SQLiteIdempotencyStore,
    ThreadWorkQueue,
)
from webhook_core import MessageData, PaymentData, platform_signature
from webhook_core.receiving import parse_envelope
from webhook_core.signing import Secret


class Clock:
    """A settable clock (virtual time for TTL expiry)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_verified_event_reaches_its_handler_with_typed_data() -> None:
    receiver = Receiver(SECRET)
    seen: list[ReceivedEvent[MessageData]] = []

    @receiver.on("message.delivered")
    def delivered(event: ReceivedEvent[MessageData]) -> None:
        seen.append(event)

    body, headers = event_request()
    reply = receiver.handle(body, headers)
    assert (reply.status, reply.body) == (200, b"OK")
    [event] = seen
    assert event.data == MessageData(**MESSAGE)
    assert (event.name, event.id, event.delivery_id, event.attempt) == (
        "message.delivered",
        "evt_1",
        "dlv_1",
        2,
    )
    assert event.body == body


def test_routes_by_name_and_wildcard_in_registration_order() -> None:
    receiver = Receiver(SECRET)
    calls: list[str] = []
    receiver.add_handler("*", lambda e: calls.append(f"all {e.name}"))
    receiver.add_handler("message.*", lambda e: calls.append(f"messages {e.name}"))
    receiver.add_handler("payment.*", lambda e: calls.append(f"payments {e.name}"))
    receiver.add_handler("message.read", lambda e: calls.append(f"read {e.name}"))
    for index, name in enumerate(["message.delivered", "message.read", "campaign.started"]):
        data = {"campaign_id": "c", "name": "n", "channel": "sms", "status": "running"}
        body, headers = event_request(
            name, data if name.startswith("campaign") else None, event_id=f"evt_{index}"
        )
        assert receiver.handle(body, headers).status == 200
    assert calls == [
        "all message.delivered",
        "messages message.delivered",
        "all message.read",
        "messages message.read",
        "read message.read",
        "all campaign.started",
    ]


def test_an_event_outside_the_catalog_keeps_its_data_as_a_dict() -> None:
    from webhook_core import EventCatalog

    catalog = EventCatalog()
    catalog.register("order.shipped")
    receiver = Receiver(SECRET, catalog=catalog)
    seen: list[Any] = []
    receiver.add_handler("*", lambda e: seen.append(e.data))
    body = json.dumps(
        {"event": "order.shipped", "timestamp": "2024-01-01T00:00:00Z", "data": {"n": 1}}
    ).encode()
    assert receiver.handle(body, sign(body, msg_id="evt_o")).status == 200
    assert seen == [{"n": 1}]


def test_a_payment_event_types_its_data_as_payment_data() -> None:
    receiver = Receiver(SECRET)
    seen: list[Any] = []
    receiver.add_handler("payment.*", lambda e: seen.append(e.data))
    data = {"payment_id": "p", "amount": 100, "currency": "INR", "status": "processed"}
    body, headers = event_request("payment.processed", data)
    assert receiver.handle(body, headers).status == 200
    assert seen == [PaymentData(payment_id="p", amount=100, currency="INR", status="processed")]


def test_the_handshake_is_answered_with_its_token_and_runs_no_handler() -> None:
    receiver = Receiver(SECRET)
    calls: list[str] = []
    receiver.add_handler("*", lambda e: calls.append(e.name))
    body, headers = handshake_request("tok_xyz")
    for _ in range(2):  # a handshake sent again is answered again, not taken as a duplicate
        reply = receiver.handle(body, headers)
        assert reply.status == 200
        assert json.loads(reply.body) == {"verification_token": "tok_xyz"}
    assert calls == []


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (
            lambda b, h: (b, {**h, "webhook-signature": h["webhook-signature"][:-5] + "AAAA="}),
            "no signature",
        ),
        (lambda b, h: (b.replace(b"msg_1", b"msg_2"), h), "no signature"),
        (lambda b, h: (json.dumps(json.loads(b), indent=1).encode(), h), "no signature"),
        (lambda b, h: (b, {k: v for k, v in h.items() if k != "webhook-signature"}), "missing"),
        (lambda b, h: (b, {**h, "webhook-timestamp": "12"}), "tolerance"),
        (lambda b, h: (b, {**h, "webhook-timestamp": "soon"}), "plain integer"),
    ],
    ids=["forged", "tampered", "re-serialised", "unsigned", "replayed-late", "bad-timestamp"],
)
def test_a_request_that_does_not_verify_is_401_and_runs_nothing(tamper: Any, reason: str) -> None:
    receiver = Receiver(SECRET)
    calls: list[str] = []
    receiver.add_handler("*", lambda e: calls.append(e.name))
    body, headers = tamper(*event_request())
    reply = receiver.handle(body, headers)
    assert reply.status == 401
    assert reason in reply.body.decode()
    assert calls == []


def test_the_wrong_secret_is_401() -> None:
    body, headers = event_request(secret=OTHER_SECRET)
    assert Receiver(SECRET).handle(body, headers).status == 401


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'{"timestamp": "2024-01-01T00:00:00Z", "data": {}}', "no 'event'"),
        (b'{"event": "Bad Name", "timestamp": "2024-01-01T00:00:00Z", "data": {}}', "event"),
        (b'{"event": "message.sent", "timestamp": "yesterday", "data": {}}', "timestamp"),
        (b'{"event": "message.sent", "timestamp": "2024-01-01T00:00:00Z", "data": 5}', "data"),
        (
            b'{"event": "payment.failed", "timestamp": "2024-01-01T00:00:00Z", "data": '
            b'{"payment_id": "p", "amount": "100", "currency": "INR", "status": "failed"}}',
            "data.amount",
        ),
        (
            b'{"event": "webhook.verification", "timestamp": "2024-01-01T00:00:00Z", "data": {}}',
            "token",
        ),
    ],
    ids=[
        "not-json",
        "array",
        "no-event",
        "bad-name",
        "bad-timestamp",
        "data-not-object",
        "bad-field",
        "no-token",
    ],
)
def test_a_signed_but_malformed_body_is_400_naming_the_problem(body: bytes, reason: str) -> None:
    reply = Receiver(SECRET).handle(body, sign(body))
    assert reply.status == 400
    assert reason in reply.body.decode()


def test_a_duplicate_is_acknowledged_without_running_handlers_again() -> None:
    receiver = Receiver(SECRET)
    calls: list[str | None] = []
    receiver.add_handler("*", lambda e: calls.append(e.id))
    body, headers = event_request(event_id="evt_dup")
    first, second = receiver.handle(body, headers), receiver.handle(body, headers)
    assert (first.status, second.status) == (200, 200)
    assert b"duplicate" in second.body
    assert calls == ["evt_dup"]


def test_a_failing_handler_answers_500_and_the_retry_is_handled() -> None:
    receiver = Receiver(SECRET)
    calls: list[str | None] = []

    @receiver.on("message.*")
    def flaky(event: ReceivedEvent[Any]) -> None:
        calls.append(event.id)
        if len(calls) == 1:
            raise RuntimeError("database is down")

    body, headers = event_request(event_id="evt_retry")
    assert receiver.handle(body, headers).status == 500
    assert receiver.handle(body, headers).status == 200
    assert receiver.handle(body, headers).status == 200
    assert calls == ["evt_retry", "evt_retry"]


def test_ids_are_forgotten_after_the_ttl() -> None:
    clock = Clock(1_704_067_200)
    receiver = Receiver(SECRET, ttl=600, clock=clock)
    calls: list[float] = []
    receiver.add_handler("*", lambda e: calls.append(clock.now))
    for offset in (0, 599, 600):
        clock.now = 1_704_067_200 + offset
        body, headers = event_request(event_id="evt_ttl", now=clock.now)
        assert receiver.handle(body, headers).status == 200
    assert calls == [1_704_067_200, 1_704_067_800]


def test_several_secrets_verify_during_a_rotation() -> None:
    receiver = Receiver([OTHER_SECRET, SECRET])
    for secret, event_id in ((SECRET, "evt_old"), (OTHER_SECRET, "evt_new")):
        body, headers = event_request(secret=secret, event_id=event_id)
        assert receiver.handle(body, headers).status == 200


def test_platform_only_requests_need_to_be_allowed() -> None:
    body, _ = event_request()
    headers = {"X-Netasampark-Signature": platform_signature(Secret.parse(SECRET), body)}
    assert Receiver(SECRET).handle(body, headers).status == 401
    receiver = Receiver(SECRET, allow_platform_only=True)
    calls: list[str | None] = []
    receiver.add_handler("*", lambda e: calls.append(e.id))
    assert receiver.handle(body, headers).status == 200
    assert receiver.handle(body, headers).status == 200  # de-duplicated by the body's id
    assert calls == ["evt_1"]


def test_handle_async_runs_async_and_sync_handlers(anyio_backend: str) -> None:
    receiver = Receiver(SECRET, idempotency=SQLiteIdempotencyStore(":memory:"))
    calls: list[str] = []

    @receiver.on("message.*")
    async def first(event: ReceivedEvent[Any]) -> None:
        await anyio.sleep(0)
        calls.append("async")

    @receiver.on("*")
    def second(event: ReceivedEvent[Any]) -> None:
        calls.append(f"sync on {threading.current_thread().name != 'MainThread'}")

    async def main() -> None:
        body, headers = event_request()
        assert (await receiver.handle_async(body, headers)).status == 200
        assert (await receiver.handle_async(body, headers)).body.startswith(b"duplicate")
        bad, bad_headers = event_request(secret=OTHER_SECRET)
        assert (await receiver.handle_async(bad, bad_headers)).status == 401

    anyio.run(main, backend=anyio_backend)
    assert calls == ["async", "sync on True"]


def test_a_failing_async_handler_releases_the_id(anyio_backend: str) -> None:
    receiver = Receiver(SECRET)
    attempts: list[int] = []

    @receiver.on("*")
    async def failing(event: ReceivedEvent[Any]) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("boom")

    async def main() -> list[int]:
        body, headers = event_request()
        return [(await receiver.handle_async(body, headers)).status for _ in range(3)]

    assert anyio.run(main, backend=anyio_backend) == [500, 200, 200]
    assert len(attempts) == 2


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_respond_fast_acknowledges_before_the_handler_finishes() -> None:
    release = threading.Event()
    done: list[str | None] = []
    with ThreadWorkQueue(workers=1) as work:
        receiver = Receiver(SECRET, background=work)

        @receiver.on("*")
        def slow(event: ReceivedEvent[Any]) -> None:
            assert release.wait(30)
            done.append(event.id)

        body, headers = event_request()
        reply = receiver.handle(body, headers)
        assert reply.status == 202
        assert done == []  # answered while the handler is still blocked
        assert receiver.handle(body, headers).body.startswith(b"duplicate")
        release.set()
        work.join()
    assert done == ["evt_1"]


def test_respond_fast_reports_a_background_failure_and_releases_the_id() -> None:
    errors: list[tuple[str | None, str]] = []
    with ThreadWorkQueue(workers=2) as work:
        receiver = Receiver(
            SECRET, background=work, on_error=lambda e, exc: errors.append((e.id, str(exc)))
        )
        calls: list[int] = []

        @receiver.on("*")
        async def failing(event: ReceivedEvent[Any]) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("disk full")

        body, headers = event_request()
        assert receiver.handle(body, headers).status == 202
        work.join()
        assert errors == [("evt_1", "disk full")]
        assert receiver.handle(body, headers).status == 202  # released: the replay is taken
        work.join()
    assert len(calls) == 2


def test_respond_fast_answers_503_when_the_queue_is_full() -> None:
    started, release = threading.Event(), threading.Event()
    with ThreadWorkQueue(workers=1, maxsize=1, put_timeout=0.01) as work:
        receiver = Receiver(SECRET, background=work)

        @receiver.on("*")
        def blocking(event: ReceivedEvent[Any]) -> None:
            started.set()
            assert release.wait(30)

        def send(event_id: str) -> int:
            body, headers = event_request(event_id=event_id)
            return receiver.handle(body, headers).status

        assert send("evt_running") == 202
        assert started.wait(30)
        assert send("evt_queued") == 202
        assert send("evt_no_room") == 503
        release.set()
        work.join()
        assert send("evt_no_room") == 202  # its id was released: the retry is taken


@given(body=st.binary(max_size=300), signature=st.text(max_size=80), stamp=st.text(max_size=12))
@settings(max_examples=300, deadline=None)
def test_random_requests_get_a_4xx_and_never_raise(body: bytes, signature: str, stamp: str) -> None:
    reply = RANDOM_RECEIVER.handle(
        body, {"webhook-id": "evt_x", "webhook-timestamp": stamp, "webhook-signature": signature}
    )
    assert reply.status == 401


@given(body=st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_random_signed_bodies_get_a_4xx(body: bytes) -> None:
    reply = RANDOM_RECEIVER.handle(body, sign(body, msg_id="evt_random"))
    assert reply.status in (400, 401)


RANDOM_RECEIVER = Receiver(SECRET)


def test_parse_envelope_reads_the_contract_fields() -> None:
    envelope = parse_envelope(event_request()[0])
    assert (envelope.event, envelope.id, envelope.data["message_id"]) == (
        "message.delivered",
        "evt_1",
        "msg_1",
    )


# -- idempotency stores ---------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def idempotency(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IdempotencyStore]:
    store: IdempotencyStore
    if request.param == "memory":
        store = MemoryIdempotencyStore()
    elif request.param == "sqlite":
        store = SQLiteIdempotencyStore(tmp_path / "receipts.db")
    else:
        from transports.receiving.postgres_idempotency import PostgresIdempotencyStore

        store = PostgresIdempotencyStore(require_postgres())
    yield store
    store.close()


def _key(name: str) -> str:
    return f"{name}_{threading.get_ident()}_{id(object())}"


def test_claim_is_once_until_expiry_or_release(idempotency: IdempotencyStore) -> None:
    key = _key("evt")
    assert idempotency.claim(key, 100.0, 200.0)
    assert not idempotency.claim(key, 150.0, 250.0)
    assert not idempotency.claim(key, 199.9, 299.9)
    assert idempotency.claim(key, 200.0, 300.0)  # expired: taken again
    assert not idempotency.claim(key, 250.0, 350.0)
    idempotency.release(key)
    assert idempotency.claim(key, 250.0, 350.0)


def test_concurrent_claims_of_one_id_admit_exactly_one(idempotency: IdempotencyStore) -> None:
    key = _key("race")
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait(10)
        results.append(idempotency.claim(key, 100.0, 200.0))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == [False] * 7 + [True]


def test_sqlite_ids_are_shared_by_two_stores_on_one_file(tmp_path: Path) -> None:
    first = SQLiteIdempotencyStore(tmp_path / "r.db")
    second = SQLiteIdempotencyStore(tmp_path / "r.db")
    assert first.claim("evt_a", 1.0, 10.0)
    assert not second.claim("evt_a", 2.0, 11.0)
    first.close()
    reopened = SQLiteIdempotencyStore(tmp_path / "r.db")  # survives a restart
    assert not reopened.claim("evt_a", 3.0, 12.0)
    second.close()
    reopened.close()


@pytest.mark.postgres
def test_postgres_receivers_share_ids() -> None:
    from transports.receiving.postgres_idempotency import PostgresIdempotencyStore

    url = require_postgres()
    first, second = PostgresIdempotencyStore(url), PostgresIdempotencyStore(url)
    try:
        key = _key("pg")
        receiver_a = Receiver(SECRET, idempotency=first)
        receiver_b = Receiver(SECRET, idempotency=second)
        calls: list[str] = []
        receiver_a.add_handler("*", lambda e: calls.append("a"))
        receiver_b.add_handler("*", lambda e: calls.append("b"))
        body, headers = event_request(event_id=key)
        assert receiver_a.handle(body, headers).status == 200
        assert receiver_b.handle(body, headers).body.startswith(b"duplicate")
        assert calls == ["a"]
    finally:
        first.close()
        second.close()


def test_respond_fast_from_an_event_loop(anyio_backend: str) -> None:
    release = threading.Event()
    done: list[str | None] = []
    with ThreadWorkQueue(workers=1) as work:
        receiver = Receiver(SECRET, background=work)

        @receiver.on("*")
        async def slow(event: ReceivedEvent[Any]) -> None:
            assert release.wait(30)
            done.append(event.id)

        async def main() -> int:
            body, headers = event_request()
            return (await receiver.handle_async(body, headers)).status

        assert anyio.run(main, backend=anyio_backend) == 202
        assert done == []
        release.set()
        work.join()
    assert done == ["evt_1"]


def _envelope(data: bytes) -> bytes:
    return b'{"event":"message.sent","timestamp":"2026-01-01T00:00:00Z","data":' + data + b"}"


HOSTILE_BODIES = [
    pytest.param(_envelope(b'{"a":' + b"[" * 1_000 + b"]" * 1_000 + b"}"), 400,
                 "nested too deeply", id="nested-1000"),
    pytest.param(_envelope(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"), 400,
                 "nested too deeply", id="nested-100000"),
    pytest.param(_envelope(b'{"amount":NaN}'), 400, "holds NaN", id="nan"),
    pytest.param(_envelope(b'{"amount":-Infinity}'), 400, "holds -Infinity", id="inf"),
    pytest.param(_envelope(b'{"note":"\xff"}'), 400, "not UTF-8", id="not-utf8"),
    pytest.param(_envelope(b'{"note":"' + b"x" * 1_200_000 + b'"}'), 413,
                 "larger than 1048576 bytes", id="1.2MB"),
]  # fmt: skip
"""Signed bodies (signed when the test runs) and the answer each must get."""


@pytest.mark.parametrize(("body", "status", "reason"), HOSTILE_BODIES)
def test_hostile_signed_bodies_get_their_documented_answer(
    body: bytes, status: int, reason: str
) -> None:
    receiver = Receiver(SECRET)
    calls: list[str] = []
    receiver.add_handler("*", lambda e: calls.append(e.name))
    reply = receiver.handle(body, sign(body))
    assert (reply.status, calls) == (status, [])
    assert reason in reply.body.decode()


@pytest.mark.parametrize(("body", "status", "reason"), HOSTILE_BODIES)
def test_hostile_signed_bodies_get_their_documented_answer_async(
    body: bytes, status: int, reason: str
) -> None:
    receiver = Receiver(SECRET)
    reply = anyio.run(receiver.handle_async, body, sign(body))
    assert reply.status == status and reason in reply.body.decode()
