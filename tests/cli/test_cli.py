"""The ``webhooks`` command in-process (click's runner) against real SQLite files.

The commands that run servers or send requests (serve, listen, test) are
exercised as real processes in test_cli_processes.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from tests.cli.cli_helpers import LOOPBACK_ENV, handshake_then, one_line_error, run
from transports.stores.interface import DeliveryFilter
from transports.stores.sqlite import SQLiteStore
from transports.sync.service import ThreadedWebhookService
from transports.testing import LoopbackReceiver, Respond
from transports.testing.loopback import LOOPBACK_NETWORKS
from webhook_core import DeliveryState, EndpointState, RetryPolicy

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MESSAGE = {"message_id": "m1", "channel": "sms", "to": "+919876543210", "status": "delivered"}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "webhooks.db"


def add(db: Path, url: str = "https://hooks.example.com/in", *args: str) -> dict[str, object]:
    result = run(db, "endpoints", "add", url, "--json", *args)
    assert result.exit_code == 0, result.output
    document: dict[str, object] = json.loads(result.stdout)
    return document


# -- endpoints ---------------------------------------------------------------------------


def test_endpoints_add_prints_the_id_and_a_generated_secret(db: Path) -> None:
    result = run(db, "endpoints", "add", "https://hooks.example.com/in", "--events", "message.*")
    assert result.exit_code == 0, result.output
    assert "added endpoint ep_" in result.stdout
    assert "secret: whsec_" in result.stdout
    assert "events: message.*" in result.stdout
    [endpoint] = SQLiteStore(db).list_endpoints()
    assert endpoint.id in result.stdout
    assert endpoint.secrets[0].value in result.stdout
    assert endpoint.state is EndpointState.VERIFYING  # the dispatcher sends the handshake


def test_endpoints_add_json_keeps_a_given_secret_and_patterns(db: Path) -> None:
    document = add(db, "https://a.example/x", "--secret", SECRET, "--events", "payment.*",
                   "--events", "message.read")  # fmt: skip
    assert document["events"] == ["payment.*", "message.read"]
    assert document["secrets"] == [attrs.asdict(_Secret(SECRET, document["created_at"]))]
    assert document["state"] == "verifying"


@attrs.frozen
class _Secret:
    secret: str
    created_at: object
    expires_at: object = None


def test_plain_http_needs_webhooks_allow_http(db: Path) -> None:
    line = one_line_error(run(db, "endpoints", "add", "http://127.0.0.1:9/hook"))
    assert "WEBHOOKS_ALLOW_HTTP=1" in line
    result = run(db, "endpoints", "add", "http://127.0.0.1:9/hook", env=LOOPBACK_ENV)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["https://"], "has no host"),
        (["ftp://example.com/x"], "must use https"),
        (["https://example.com/x#frag"], "fragment"),
        (["https://example.com/x", "--events", "Message.*"], "event pattern 'Message.*'"),
        (["https://example.com/x", "--secret", "whsec_!!"], "base64"),
    ],
)
def test_endpoints_add_refuses_bad_input_in_one_line(
    db: Path, args: list[str], reason: str
) -> None:
    assert reason in one_line_error(run(db, "endpoints", "add", *args))
    assert SQLiteStore(db).list_endpoints() == []


def test_endpoints_list_and_show(db: Path) -> None:
    assert "no endpoints" in run(db, "endpoints", "list").stdout
    first = add(db, "https://a.example/x", "--secret", SECRET)
    second = add(db, "https://b.example/y", "--events", "campaign.*")
    listing = run(db, "endpoints", "list")
    assert listing.exit_code == 0
    for document in (first, second):
        assert str(document["id"]) in listing.stdout
        assert str(document["url"]) in listing.stdout
    as_json = json.loads(run(db, "endpoints", "list", "--json").stdout)
    assert [e["id"] for e in as_json] == [first["id"], second["id"]]
    assert all("secrets" not in e for e in as_json)
    shown = run(db, "endpoints", "show", str(first["id"]))
    assert f"secret:      {SECRET}" in shown.stdout
    assert "state:" in shown.stdout
    shown_json = json.loads(run(db, "endpoints", "show", str(second["id"]), "--json").stdout)
    assert shown_json["events"] == ["campaign.*"]


@pytest.mark.parametrize(
    "command", ["show", "verify", "disable", "enable", "rotate-secret", "remove"]
)
def test_an_unknown_endpoint_id_is_one_line(db: Path, command: str) -> None:
    assert "no endpoint with id 'ep_nope'" in one_line_error(
        run(db, "endpoints", command, "ep_nope")
    )


def test_disable_enable_verify_rotate_remove(db: Path) -> None:
    endpoint_id = str(add(db, "https://a.example/x", "--secret", SECRET)["id"])
    disabled = run(db, "endpoints", "disable", endpoint_id, "--reason", "maintenance")
    assert "disabled; state: disabled" in disabled.stdout
    store = SQLiteStore(db)
    stored = store.get_endpoint(endpoint_id)
    assert stored is not None and stored.disabled_reason == "maintenance"
    line = one_line_error(run(db, "endpoints", "verify", endpoint_id))
    assert "not allowed in state 'disabled'" in line
    enabled = json.loads(run(db, "endpoints", "enable", endpoint_id, "--json").stdout)
    assert enabled["state"] in ("verifying", "active")
    verified = run(db, "endpoints", "verify", endpoint_id)
    assert f"endpoint {endpoint_id}: verifying" in verified.stdout
    rotated = run(db, "endpoints", "rotate-secret", endpoint_id, "--grace", "3600")
    assert rotated.exit_code == 0, rotated.output
    stored = store.get_endpoint(endpoint_id)
    assert stored is not None
    new_secret = stored.secrets[0].value
    assert new_secret != SECRET and f"secret: {new_secret}" in rotated.stdout
    assert [s.value for s in stored.secrets] == [new_secret, SECRET]
    assert stored.secrets[1].expires_at == pytest.approx(stored.secrets[0].created_at + 3600)
    removed = run(db, "endpoints", "remove", endpoint_id)
    assert f"endpoint {endpoint_id} removed" in removed.stdout
    assert store.get_endpoint(endpoint_id) is None
    store.close()


def test_quiet_prints_only_the_id(db: Path) -> None:
    endpoint_id = run(db, "endpoints", "add", "https://a.example/x", "--quiet").stdout.strip()
    assert SQLiteStore(db).get_endpoint(endpoint_id) is not None
    _activate(db, endpoint_id)
    event_id = run(db, "publish", "message.sent", "--data", json.dumps(MESSAGE), "-q").stdout
    assert SQLiteStore(db).get_event(event_id.strip()) is not None


def test_wait_without_a_dispatcher_says_so_in_one_line(db: Path) -> None:
    line = one_line_error(run(db, "endpoints", "add", "https://a.example/x", "--wait", "0.3"))
    assert "still verifying after 0.3 s; is 'webhooks serve' running" in line


def test_wait_reports_the_handshake_and_the_deliveries(db: Path) -> None:
    with (
        LoopbackReceiver() as rx,
        ThreadedWebhookService(
            SQLiteStore(db), allow_http=True, allowed_networks=LOOPBACK_NETWORKS
        ),
    ):
        rx.route("/ok", handshake_then())
        rx.route("/no", Respond(403, b"go away"))
        added = run(db, "endpoints", "add", rx.url("/ok"), "--wait", "30", env=LOOPBACK_ENV)
        assert added.exit_code == 0, added.output
        assert "state:  active" in added.stdout
        refused = run(db, "endpoints", "add", rx.url("/no"), "--wait", "30", env=LOOPBACK_ENV)
        assert "state:  unverified: " in refused.stdout and "403" in refused.stdout
        published = run(db, "publish", "message.sent", "--data", json.dumps(MESSAGE), "--wait",
                        "30")  # fmt: skip
        assert published.exit_code == 0, published.output
        assert ": delivered (attempt 1: HTTP 200)" in published.stdout
        as_json = json.loads(
            run(
                db,
                "publish",
                "message.read",
                "--data",
                json.dumps(MESSAGE),
                "--wait",
                "30",
                "--json",
            ).stdout
        )
        assert [r["state"] for r in as_json["results"]] == ["delivered"]
        endpoint_id = added.stdout.split("added endpoint ")[1].split()[0]
        again = run(db, "endpoints", "verify", endpoint_id, "--wait", "30")
        assert f"endpoint {endpoint_id}: active" in again.stdout


# -- publish -----------------------------------------------------------------------------


def _activate(db: Path, endpoint_id: str) -> None:
    """Finish an endpoint's handshake in the store, as the dispatcher would on a 2xx answer."""
    from webhook_core import HandshakeResult, endpoint_machine

    store = SQLiteStore(db)
    endpoint = store.get_endpoint(endpoint_id)
    assert endpoint is not None and endpoint.verification_token is not None
    answer = HandshakeResult(endpoint.created_at, 200, endpoint.verification_token.encode())
    store.save_endpoint(endpoint_machine.apply(endpoint, answer))
    store.close()


def test_publish_fans_out_to_subscribed_active_endpoints(db: Path, tmp_path: Path) -> None:
    messages = str(add(db, "https://a.example/x", "--events", "message.*")["id"])
    payments = str(add(db, "https://b.example/y", "--events", "payment.*")["id"])
    add(db, "https://c.example/z")  # still verifying: gets nothing
    _activate(db, messages)
    _activate(db, payments)
    result = run(db, "publish", "message.delivered", "--data", json.dumps(MESSAGE))
    assert result.exit_code == 0, result.output
    assert "published evt_" in result.stdout and "1 delivery" in result.stdout
    data_file = tmp_path / "payment.json"
    data_file.write_text(
        json.dumps({"payment_id": "p", "amount": 100, "currency": "INR", "status": "failed"})
    )
    as_json = json.loads(
        run(db, "publish", "payment.failed", "--data", f"@{data_file}", "--json").stdout
    )
    assert as_json["deliveries"] == 1 and as_json["event"] == "payment.failed"
    store = SQLiteStore(db)
    event = store.get_event(as_json["event_id"])
    assert event is not None and json.loads(event.body)["data"]["amount"] == 100
    [delivery] = store.list_deliveries(DeliveryFilter(event_id=event.id))
    assert delivery.endpoint_id == payments
    store.close()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["message.bogus", "--data", "{}"], "unknown event 'message.bogus'; the events are:"),
        (["Message.Sent"], "not lowercase dotted words"),
        (["message.sent", "--data", "{bad json"], "--data is not valid JSON"),
        (["message.sent", "--data", "[1]"], "must be a JSON object, not a list"),
        (["message.sent", "--data", "@/nonexistent/data.json"], "cannot read --data file"),
        (["message.sent", "--data", '{"message_id": 5}'], "data.message_id: expected str"),
        (["message.sent"], "required field missing"),
    ],
)
def test_publish_refuses_bad_input_in_one_line(db: Path, args: list[str], reason: str) -> None:
    assert reason in one_line_error(run(db, "publish", *args))


# -- deliveries ---------------------------------------------------------------------------


@attrs.frozen
class History:
    db: Path
    good: str
    bad: str
    delivered: list[str]
    failed: list[str]


@pytest.fixture
def history(db: Path) -> Iterator[History]:
    """Real deliveries in SQLite: two delivered to /good, two failed (twice each) at /bad."""
    policy = RetryPolicy(schedule=(0.01,), timeout=5.0)
    with LoopbackReceiver() as rx:
        rx.route("/good", handshake_then())
        rx.route("/bad", handshake_then(Respond(500, b"database unavailable")))
        with ThreadedWebhookService(
            SQLiteStore(db), allow_http=True, allowed_networks=LOOPBACK_NETWORKS, policy=policy
        ) as hooks:
            good = hooks.add_endpoint(rx.url("/good"), secret=SECRET, events=["message.*"])
            bad = hooks.add_endpoint(rx.url("/bad"), secret=SECRET, events=["payment.*"])
            hooks.drain(timeout=30)
            for _ in range(2):
                hooks.publish("message.sent", {**MESSAGE, "status": "sent"})
                hooks.publish(
                    "payment.failed",
                    {"payment_id": "p", "amount": 1, "currency": "INR", "status": "failed"},
                )
            hooks.drain(timeout=30)
            done = hooks.list_deliveries(limit=100)
    yield History(
        db,
        good.id,
        bad.id,
        [d.id for d in done if d.state is DeliveryState.DELIVERED],
        [d.id for d in done if d.state is DeliveryState.FAILED],
    )


def test_deliveries_list_filters_and_json(history: History) -> None:
    assert len(history.delivered) == 2 and len(history.failed) == 2
    everything = run(history.db, "deliveries", "list")
    assert everything.exit_code == 0, everything.output
    for delivery_id in history.delivered + history.failed:
        assert delivery_id in everything.stdout
    assert "message.sent" in everything.stdout and "payment.failed" in everything.stdout
    failed = json.loads(run(history.db, "deliveries", "list", "--state", "failed", "--json").stdout)
    assert sorted(d["id"] for d in failed) == sorted(history.failed)
    assert all(len(d["attempts"]) == 2 for d in failed)
    to_good = json.loads(
        run(history.db, "deliveries", "list", "--endpoint", history.good, "--json").stdout
    )
    assert sorted(d["id"] for d in to_good) == sorted(history.delivered)
    event_id = to_good[0]["event_id"]
    of_event = json.loads(
        run(history.db, "deliveries", "list", "--event-id", event_id, "--json").stdout
    )
    assert [d["id"] for d in of_event] == [to_good[0]["id"]]
    limited = json.loads(run(history.db, "deliveries", "list", "--limit", "1", "--json").stdout)
    assert len(limited) == 1
    nothing = run(history.db, "deliveries", "list", "--event-id", "evt_x")
    assert "no deliveries match" in nothing.stdout
    bad_state = run(history.db, "deliveries", "list", "--state", "lost")
    assert bad_state.exit_code == 2


def test_deliveries_show_has_the_attempt_log(history: History) -> None:
    delivery_id = history.failed[0]
    shown = run(history.db, "deliveries", "show", delivery_id)
    assert shown.exit_code == 0, shown.output
    assert "state:        failed" in shown.stdout
    assert "payment.failed" in shown.stdout
    assert shown.stdout.count("database unavailable") == 2  # one line per attempt
    as_json = json.loads(run(history.db, "deliveries", "show", delivery_id, "--json").stdout)
    assert [a["status"] for a in as_json["attempts"]] == [500, 500]
    assert as_json["event"]["name"] == "payment.failed"
    assert as_json["event"]["body"]["data"]["payment_id"] == "p"
    line = one_line_error(run(history.db, "deliveries", "show", "dlv_nope"))
    assert "no delivery with id 'dlv_nope'" in line


def test_deliveries_replay_one(history: History) -> None:
    replayed = run(history.db, "deliveries", "replay", history.delivered[0], "--json")
    assert replayed.exit_code == 0, replayed.output
    fresh = json.loads(replayed.stdout)
    assert fresh["replay_of"] == history.delivered[0]
    assert fresh["state"] == "pending"
    assert "no delivery with id" in one_line_error(
        run(history.db, "deliveries", "replay", "dlv_nope")
    )
    pending = run(history.db, "deliveries", "replay", fresh["id"])
    assert "only delivered or failed" in one_line_error(pending)


def test_deliveries_replay_failed_since_with_progress(history: History) -> None:
    result = run(history.db, "deliveries", "replay", "--failed-since", "1h")
    assert result.exit_code == 0, result.output
    assert "replayed 2 failed deliveries" in result.stdout
    assert "2/2" in result.stderr  # the progress bar
    store = SQLiteStore(history.db)
    pending = store.list_deliveries(DeliveryFilter(state=DeliveryState.PENDING))
    assert sorted(d.replay_of or "" for d in pending) == sorted(history.failed)
    store.close()
    future = run(history.db, "deliveries", "replay", "--failed-since", "2999-01-01T00:00:00Z")
    assert "replayed 0 failed deliveries" in future.stdout


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ([], "give either a delivery ID or --failed-since TIME"),
        (["dlv_x", "--failed-since", "1h"], "give either a delivery ID or --failed-since TIME"),
        (["--failed-since", "last tuesday"], "neither an RFC 3339 time"),
    ],
)
def test_deliveries_replay_usage_errors(db: Path, args: list[str], reason: str) -> None:
    assert reason in one_line_error(run(db, "deliveries", "replay", *args))


# -- the database ---------------------------------------------------------------------------


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(run(tmp_path / "missing" / "dir" / "x.db", "endpoints", "list"))
    assert "cannot open SQLite database" in line and "x.db" in line


def test_an_unknown_database_scheme_is_one_line(tmp_path: Path) -> None:
    assert "unknown scheme 'mysql'" in one_line_error(run("mysql://x/y", "endpoints", "list"))


@pytest.mark.postgres
def test_an_unreachable_postgresql_is_one_line() -> None:
    line = one_line_error(run("postgresql://nobody@127.0.0.1:9/none", "endpoints", "list"))
    assert "cannot reach PostgreSQL" in line and "127.0.0.1:9" in line


def test_webhooks_db_names_the_database(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from transports.cli import cli

    target = tmp_path / "from-env.db"
    result = CliRunner().invoke(
        cli, ["endpoints", "add", "https://a.example/x"], env={"WEBHOOKS_DB": str(target)}
    )
    assert result.exit_code == 0, result.output
    assert len(SQLiteStore(target).list_endpoints()) == 1


@pytest.mark.postgres
def test_commands_work_on_postgresql() -> None:
    from tests.pg import require_postgres

    url = require_postgres()
    # The default schema outlives test runs: a URL of this run's own.
    hook = f"https://pg.example/{uuid.uuid4().hex}"
    added = run(url, "endpoints", "add", hook, "-q")
    assert added.exit_code == 0, added.output
    endpoint_id = added.stdout.strip()
    shown = json.loads(run(url, "endpoints", "show", endpoint_id, "--json").stdout)
    assert shown["url"] == hook and shown["state"] == "verifying"
    published = json.loads(
        run(url, "publish", "message.sent", "--data", json.dumps(MESSAGE), "--json").stdout
    )
    listed = json.loads(
        run(url, "deliveries", "list", "--event-id", published["event_id"], "--json").stdout
    )
    assert len(listed) == published["deliveries"]
    assert run(url, "endpoints", "remove", endpoint_id).exit_code == 0
