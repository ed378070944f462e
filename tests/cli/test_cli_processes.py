"""``webhooks serve``, ``listen`` and ``test`` as real processes over loopback HTTP."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.cli_helpers import LOOPBACK_ENV, Command, handshake_then, run, run_process
from tests.receiving.receiving_helpers import OTHER_SECRET, SECRET, event_request, handshake_request
from transports.stores.sqlite import SQLiteStore
from transports.testing import Delay, LoopbackReceiver, ReceivedRequest, Respond
from webhook_core import DeliveryState, EndpointState, Verifier

MESSAGE = {"message_id": "m1", "channel": "sms", "to": "+919876543210", "status": "delivered"}


def wait_until(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def endpoint_state(db: Path, endpoint_id: str) -> EndpointState | None:
    store = SQLiteStore(db)
    try:
        endpoint = store.get_endpoint(endpoint_id)
        return None if endpoint is None else endpoint.state
    finally:
        store.close()


@pytest.fixture
def receiver() -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver() as rx:
        yield rx


# -- serve ------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["trio", "asyncio", "threads"])
def test_serve_delivers_and_stops_gracefully_on_sigterm(
    runtime: str, tmp_path: Path, receiver: LoopbackReceiver
) -> None:
    db = tmp_path / "webhooks.db"
    receiver.route("/hook", handshake_then(Delay(1.0, Respond(200))))
    serve = Command("--db", str(db), "serve", "--runtime", runtime, cwd=tmp_path)
    try:
        serve.wait_for(f"dispatching from .* on {runtime}")
        added = run_process(
            "--db", str(db), "endpoints", "add", receiver.url("/hook"), "--json", cwd=tmp_path
        )
        assert added.returncode == 0, added.stderr
        endpoint_id = json.loads(added.stdout)["id"]
        wait_until(lambda: endpoint_state(db, endpoint_id) is EndpointState.ACTIVE, "handshake")
        published = run(db, "publish", "message.delivered", "--data", json.dumps(MESSAGE))
        assert published.exit_code == 0, published.output
        # The receiver holds the event's request for a second; stop the dispatcher meanwhile.
        receiver.wait_for(2, timeout=30)
        assert serve.stop(signal.SIGTERM) == 0, serve.output
    finally:
        serve.kill()
    assert "SIGTERM: stopped" in serve.output
    store = SQLiteStore(db)
    [delivery] = store.list_deliveries()
    store.close()
    assert delivery.state is DeliveryState.DELIVERED  # the attempt in flight finished and was kept
    [event_request_] = [r for r in receiver.requests if r.json()["event"] == "message.delivered"]
    assert Verifier([json.loads(added.stdout)["secrets"][0]["secret"]]).verify(
        event_request_.body, dict(event_request_.headers), time.time()
    )


def test_serve_stops_on_sigint(tmp_path: Path) -> None:
    serve = Command("--db", str(tmp_path / "w.db"), "serve", "--runtime", "trio", cwd=tmp_path)
    try:
        serve.wait_for("dispatching from")
        assert serve.stop(signal.SIGINT) == 0, serve.output
    finally:
        serve.kill()
    assert "SIGINT: stopped" in serve.output
    assert "Traceback" not in serve.output


def test_serve_with_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    done = run_process("--db", str(tmp_path / "no" / "such.db"), "serve", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "cannot open SQLite database" in done.stderr


# -- listen -----------------------------------------------------------------------------


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[Command, str]]:
    listen = Command("listen", "--port", "0", "--secret", SECRET, cwd=tmp_path)
    try:
        port = listen.wait_for(r"listening on http://127\.0\.0\.1:(\d+)/").group(1)
        yield listen, f"http://127.0.0.1:{port}/"
    finally:
        listen.kill()


def test_listen_prints_verified_events_and_rejections(listener: tuple[Command, str]) -> None:
    listen, url = listener
    with httpx.Client(trust_env=False, timeout=10) as client:
        handshake = client.post(url, content=handshake_request("tok_listen")[0],
                                headers=handshake_request("tok_listen")[1])  # fmt: skip
        assert handshake.json() == {"verification_token": "tok_listen"}
        body, headers = event_request(event_id="evt_listen")
        assert client.post(url, content=body, headers=headers).status_code == 200
        assert client.post(url, content=body, headers=headers).status_code == 200
        forged, forged_headers = event_request(event_id="evt_forged", secret=OTHER_SECRET)
        assert client.post(url, content=forged, headers=forged_headers).status_code == 401
        junk = b"{not json"
        assert client.post(url, content=junk, headers={"webhook-id": "x"}).status_code == 401
    listen.wait_for("answered the verification handshake")
    listen.wait_for(r"✓ verified message\.delivered evt_listen \(delivery dlv_1, attempt 2\)")
    listen.wait_for(r'"message_id": "msg_1"')
    listen.wait_for("duplicate message.delivered evt_listen")
    listen.wait_for(r"✗ rejected a request with 401: no signature in webhook-signature matches")
    listen.wait_for(r"✗ rejected a request with 401: missing header webhook-signature")
    assert listen.stop(signal.SIGINT) == 0
    assert "evt_forged" not in listen.output


def test_listen_on_a_taken_port_is_one_line(listener: tuple[Command, str], tmp_path: Path) -> None:
    port = listener[1].rsplit(":", 1)[1].strip("/")
    done = run_process("listen", "--port", port, "--secret", SECRET, cwd=tmp_path)
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


# -- test -------------------------------------------------------------------------------


def _verifying(secret: str) -> object:
    verifier = Verifier([secret])

    def answer(request: ReceivedRequest) -> Respond:
        try:
            verifier.verify(request.body, dict(request.headers), time.time())
            verifier.verify_platform(request.body, dict(request.headers))
        except Exception as exc:
            return Respond(401, str(exc).encode())
        return Respond(200, b'{"received": true}')

    from transports.testing import Handler

    return Handler(answer)


def test_test_sends_a_signed_sample_and_exits_0_on_2xx(
    receiver: LoopbackReceiver, tmp_path: Path
) -> None:
    receiver.route("/hook", _verifying(SECRET))  # type: ignore[arg-type]
    done = run_process(
        "test", receiver.url("/hook"), "--event", "payment.refunded", "--secret", SECRET,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    [request] = receiver.requests
    body = request.json()
    assert body["event"] == "payment.refunded"
    assert body["data"]["refund_id"] and body["data"]["status"] == "refunded"  # a realistic sample
    assert f"POST {receiver.url('/hook')}" in done.stdout
    for header in (
        "webhook-signature: v1,",
        "X-Netasampark-Signature: sha256=",
        "webhook-id: evt_",
    ):
        assert header in done.stdout
    assert "response: 200 OK in " in done.stdout
    assert '{"received": true}' in done.stdout


def test_test_with_the_wrong_secret_exits_1_and_shows_the_answer(
    receiver: LoopbackReceiver, tmp_path: Path
) -> None:
    receiver.route("/hook", _verifying(SECRET))  # type: ignore[arg-type]
    done = run_process(
        "test", receiver.url("/hook"), "--event", "message.sent", "--secret", OTHER_SECRET,
        "--data", json.dumps({**MESSAGE, "status": "sent"}), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "response: 401 Unauthorized" in done.stdout
    assert "no signature in webhook-signature matches" in done.stdout
    assert receiver.requests[0].json()["data"] == {**MESSAGE, "status": "sent"}


def test_test_against_a_closed_port_exits_1(tmp_path: Path) -> None:
    with LoopbackReceiver() as rx:
        url = rx.url("/gone")  # closed when the block ends
    done = run_process("test", url, "--event", "message.sent", "--secret", SECRET, cwd=tmp_path)
    assert done.returncode == 1
    assert "no response after" in done.stdout and "connect" in done.stdout


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["not a url", "--event", "message.sent"], "holds spaces"),
        (["http://127.0.0.1:9/", "--event", "message.bogus"], "there is no sample for"),
        (["http://127.0.0.1:9/", "--event", "message.sent", "--data", "{x"], "not valid JSON"),
        (["http://127.0.0.1:9/", "--event", "message.sent", "--data", "{}"], "required field"),
    ],
)
def test_test_refuses_bad_input_in_one_line(tmp_path: Path, args: list[str], reason: str) -> None:
    done = run_process("test", *args, "--secret", SECRET, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert reason in done.stderr and done.stderr.strip().count("\n") == 0


# -- a new user's first run --------------------------------------------------------------


def test_new_user_serve_listen_add_publish(tmp_path: Path) -> None:
    """serve in one process, listen in another, add the listener, publish: it shows verified."""
    secret = "whsec_bmV3LXVzZXItZW5kLXRvLWVuZC10ZXN0LXNlY3JldA=="
    listen = Command("listen", "--port", "0", "--secret", secret, cwd=tmp_path)
    serve = Command("serve", cwd=tmp_path)  # the default: webhooks.db here, on trio
    try:
        port = listen.wait_for(r"listening on http://127\.0\.0\.1:(\d+)/").group(1)
        serve.wait_for("dispatching from webhooks.db")
        added = run_process(
            "endpoints", "add", f"http://127.0.0.1:{port}/", "--secret", secret, cwd=tmp_path
        )
        assert added.returncode == 0, added.stderr
        endpoint_id = added.stdout.split("added endpoint ")[1].split()[0]
        listen.wait_for("answered the verification handshake")
        wait_until(
            lambda: endpoint_state(tmp_path / "webhooks.db", endpoint_id) is EndpointState.ACTIVE,
            "the endpoint to become active",
        )
        published = run_process(
            "publish", "message.delivered", "--data", json.dumps(MESSAGE), cwd=tmp_path
        )
        assert published.returncode == 0, published.stderr
        event_id = published.stdout.split("published ")[1].split()[0]
        listen.wait_for(
            rf"✓ verified message\.delivered {event_id} \(delivery dlv_\w+, attempt 1\)"
        )
        listen.wait_for(re.escape('"to": "+919876543210"'))
        listed = run_process("deliveries", "list", "--json", cwd=tmp_path)
        wait_until(
            lambda: (
                json.loads(run_process("deliveries", "list", "--json", cwd=tmp_path).stdout)[0][
                    "state"
                ]
                == "delivered"
            ),
            "the delivery to be recorded",
        )
        assert listed.returncode == 0
        assert serve.stop() == 0 and listen.stop() == 0
    finally:
        serve.kill()
        listen.kill()


def test_serve_keeps_the_address_guard_without_allowed_networks(
    tmp_path: Path, receiver: LoopbackReceiver
) -> None:
    db = tmp_path / "webhooks.db"
    receiver.route("/hook", handshake_then())
    serve = Command("--db", str(db), "serve", cwd=tmp_path, env={"WEBHOOKS_ALLOWED_NETWORKS": ""})
    try:
        serve.wait_for("dispatching from")
        # Registered where the network was allowed; this dispatcher does not allow it.
        added = run(db, "endpoints", "add", receiver.url("/hook"), "--wait", "30",
                    env=LOOPBACK_ENV)  # fmt: skip
        assert added.exit_code == 0, added.output
        assert "unverified: verification failed: blocked: refused to connect" in added.stdout
        assert "127.0.0.1 is loopback" in added.stdout
        assert receiver.requests == []
    finally:
        serve.stop()
        serve.kill()


@pytest.mark.parametrize("command", [["serve"], ["endpoints", "add", "https://a.example/x"]])
def test_a_malformed_allowed_networks_is_one_line(tmp_path: Path, command: list[str]) -> None:
    result = run(tmp_path / "w.db", *command, env={"WEBHOOKS_ALLOWED_NETWORKS": "10.0.0.0/33"})
    assert result.exit_code == 2, result.output
    assert "WEBHOOKS_ALLOWED_NETWORKS" in result.stderr and "Traceback" not in result.output
