"""What a newcomer meets first: missing extras, refused registrations, publish limits (issue 18)."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner
from rich.console import Console
from rich.table import Table

from tests.cli.cli_helpers import (
    LOOPBACK_ENV,
    Command,
    handshake_then,
    one_line_error,
    process_env,
    run,
)
from tests.cli.test_cli import MESSAGE, _activate
from transports.cli import cli
from transports.cli.deliveries import DELIVERY_COLUMNS, delivery_rows
from transports.cli.endpoints import ENDPOINT_COLUMNS, endpoint_rows
from transports.cli.output import fitted_table
from transports.stores.sqlite import SQLiteStore
from transports.sync.service import ThreadedWebhookService
from transports.testing import LoopbackReceiver, Respond
from transports.testing.loopback import LOOPBACK_NETWORKS
from webhook_core import DeliveryState, RetryPolicy
from webhook_core.canonical import MAX_BODY

# "Not installed" is faked by an import hook: a fresh virtualenv per test is too slow.
_BLOCKING_RUN = """
import sys
blocked = sys.argv[1]
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == blocked or name.startswith(blocked + "."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
sys.argv = ["webhooks", *sys.argv[2:]]
from transports.cli import main
main()
"""


def _run_without(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _BLOCKING_RUN, module, *args],
        cwd=cwd,
        env=process_env(),
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )


def test_without_click_the_command_names_the_cli_extra(tmp_path: Path) -> None:
    done = _run_without("click", "endpoints", "list", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "pip install 'webhooks-delivery[cli]'" in lines[0]


def test_without_psycopg_a_postgresql_db_names_the_postgres_extra(tmp_path: Path) -> None:
    done = _run_without(
        "psycopg", "--db", "postgresql://127.0.0.1/none", "endpoints", "list", cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "pip install 'webhooks-delivery[postgres]'" in lines[0]


# -- endpoints add: refused at once, not at send time -------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "webhooks.db"


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("https://169.254.169.254/latest", "metadata"),
        ("https://127.0.0.1/hook", "loopback (127.0.0.0/8)"),
        ("https://10.0.0.5/hook", "private (10.0.0.0/8)"),
        ("https://[::1]/hook", "loopback (::1/128)"),
    ],
)
def test_a_refused_address_is_refused_at_registration(db: Path, url: str, rule: str) -> None:
    line = one_line_error(run(db, "endpoints", "add", url))
    assert rule in line and "WEBHOOKS_ALLOWED_NETWORKS" in line
    assert json.loads(run(db, "endpoints", "list", "--json").stdout) == []


def test_an_allowed_network_and_a_host_name_are_accepted(db: Path) -> None:
    allowed = run(db, "endpoints", "add", "https://127.0.0.1/hook", env=LOOPBACK_ENV)
    assert allowed.exit_code == 0, allowed.output
    named = run(db, "endpoints", "add", "https://localhost.example/hook")
    assert named.exit_code == 0, named.output  # names are vetted when connecting


@pytest.mark.parametrize("pattern", ["bogus.event", "message.bogus", "bogus.*"])
def test_a_pattern_that_selects_no_event_is_refused(db: Path, pattern: str) -> None:
    line = one_line_error(run(db, "endpoints", "add", "https://a.example/x", "--events", pattern))
    assert f"event pattern {pattern!r} matches no known event" in line


@pytest.mark.parametrize("pattern", ["message.*", "*", "payment.failed"])
def test_patterns_that_select_events_are_accepted(db: Path, pattern: str) -> None:
    result = run(db, "endpoints", "add", "https://a.example/x", "--events", pattern)
    assert result.exit_code == 0, result.output


def test_a_short_secret_is_refused(db: Path) -> None:
    line = one_line_error(run(db, "endpoints", "add", "https://a.example/x", "--secret", "short"))
    assert "the secret holds 5 bytes; give at least 24 bytes" in line


def test_the_same_url_twice_needs_allow_duplicate(db: Path) -> None:
    first = run(db, "endpoints", "add", "https://a.example/x", "-q")
    line = one_line_error(run(db, "endpoints", "add", "https://a.example/x"))
    assert (
        f"endpoint {first.stdout.strip()} already has URL" in line and "--allow-duplicate" in line
    )
    again = run(db, "endpoints", "add", "https://a.example/x", "--allow-duplicate")
    assert again.exit_code == 0, again.output


def test_wait_timeout_says_the_endpoint_was_stored(db: Path) -> None:
    line = one_line_error(run(db, "endpoints", "add", "https://a.example/x", "--wait", "0.2"))
    assert "is stored but still verifying" in line
    assert len(json.loads(run(db, "endpoints", "list", "--json").stdout)) == 1


# -- publish ------------------------------------------------------------------------------


def test_an_event_over_the_body_limit_is_refused(db: Path, tmp_path: Path) -> None:
    data = tmp_path / "big.json"
    data.write_text(json.dumps({**MESSAGE, "metadata": {"blob": "x" * (10 * 1024 * 1024)}}))
    line = one_line_error(run(db, "publish", "message.sent", "--data", f"@{data}"))
    assert f"over the limit of {MAX_BODY}" in line and "bytes" in line
    assert run(db, "deliveries", "list", "--json").stdout.strip() == "[]"


def test_deep_data_is_a_payload_error(db: Path) -> None:
    deep: dict[str, object] = {}
    for _ in range(600):
        deep = {"a": deep}
    line = one_line_error(
        run(db, "publish", "message.sent", "--data", json.dumps({**MESSAGE, "metadata": deep}))
    )
    assert "nested deeper than 64 levels" in line


def test_data_from_standard_input(db: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--db", str(db), "publish", "message.sent", "--data", "@-", "--json"],
        input=json.dumps(MESSAGE),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["event"] == "message.sent"


def test_publish_to_no_active_endpoint_says_why(db: Path) -> None:
    endpoint_id = run(db, "endpoints", "add", "https://a.example/x", "-q").stdout.strip()
    result = run(db, "publish", "message.sent", "--data", json.dumps(MESSAGE))
    assert result.exit_code == 0, result.output
    assert f"{endpoint_id} is verifying" in result.stderr and "webhooks serve" in result.stderr
    nobody = run(tmp_db := db.with_name("other.db"), "publish", "message.sent", "--data",
                 json.dumps(MESSAGE))  # fmt: skip
    assert "no endpoint subscribes to message.sent" in nobody.stderr, tmp_db


def test_publish_wait_fails_unless_every_delivery_was_delivered(db: Path) -> None:
    with (
        LoopbackReceiver() as rx,
        ThreadedWebhookService(
            SQLiteStore(db), allow_http=True, allowed_networks=LOOPBACK_NETWORKS
        ),
    ):
        rx.route("/denied", handshake_then(Respond(401, b"who are you")))
        added = run(db, "endpoints", "add", rx.url("/denied"), "--wait", "30", env=LOOPBACK_ENV)
        assert "state:  active" in added.stdout, added.output
        published = run(db, "publish", "message.sent", "--data", json.dumps(MESSAGE),
                        "--wait", "1")  # fmt: skip
    assert published.exit_code == 1, published.output
    assert "retry_scheduled (attempt 1: HTTP 401)" in published.stdout
    assert "1 of 1 deliveries not delivered" in published.stderr


# -- deliveries list ----------------------------------------------------------------------


def test_deliveries_list_takes_the_event_name_and_shows_it_in_json(db: Path) -> None:
    endpoint_id = run(db, "endpoints", "add", "https://a.example/x", "-q").stdout.strip()
    _activate(db, endpoint_id)
    sent = json.loads(
        run(db, "publish", "message.sent", "--data", json.dumps(MESSAGE), "--json").stdout
    )
    run(db, "publish", "message.read", "--data", json.dumps(MESSAGE))
    by_name = json.loads(run(db, "deliveries", "list", "--event", "message.sent", "--json").stdout)
    assert [(d["event_id"], d["event_name"]) for d in by_name] == [
        (sent["event_id"], "message.sent")
    ]
    by_id = json.loads(
        run(db, "deliveries", "list", "--event-id", sent["event_id"], "--json").stdout
    )
    assert by_id == by_name


# -- listings fit 80 columns --------------------------------------------------------------


def _rendered(grid: Any, width: int) -> list[str]:
    screen = Console(width=width, record=True, file=io.StringIO(), highlight=False)
    screen.print(grid)
    return screen.export_text().splitlines()


@pytest.mark.parametrize("width", [80, 100, 240])
def test_listings_fit_the_terminal_and_never_break_an_id(db: Path, width: int) -> None:
    long_url = "https://hooks.example.com/" + "netasampark/" * 8
    first = run(db, "endpoints", "add", long_url, "--events", "message.*", "--events",
                "payment.failed", "--events", "grievance.*", "-q").stdout.strip()  # fmt: skip
    run(db, "endpoints", "add", "https://b.example/y", "--events", "campaign.*")
    _activate(db, first)
    for _ in range(2):
        run(db, "publish", "message.delivered", "--data", json.dumps(MESSAGE))
    store = SQLiteStore(db)
    try:
        endpoints = store.list_endpoints()
        found = store.list_deliveries()
        names = {d.event_id: "message.delivered" for d in found}
        retrying = attrs.evolve(found[0], state=DeliveryState.RETRY_SCHEDULED, next_attempt_at=1.0)
        listings: list[tuple[tuple[Table, list[str]], list[str]]] = [
            (
                fitted_table(ENDPOINT_COLUMNS, endpoint_rows(endpoints), width),
                [e.id for e in endpoints],
            ),
            (
                fitted_table(DELIVERY_COLUMNS, delivery_rows([retrying, *found], names), width),
                [d.id for d in found],
            ),
        ]
    finally:
        store.close()
    for (grid, dropped), records in listings:
        lines = _rendered(grid, width)
        assert all(len(line) <= width for line in lines), lines
        assert len(lines) == grid.row_count + 1  # a header and one line a row: nothing wraps
        for record_id in records:
            assert any(record_id in line for line in lines), (record_id, lines)
        if width == 240:
            assert dropped == []
    ((_, endpoint_dropped), _), ((_, delivery_dropped), _) = listings
    if width == 80:
        assert endpoint_dropped == [] and "ENDPOINT" in delivery_dropped
        assert "STATE" not in delivery_dropped and "EVENT" not in delivery_dropped


# -- CLI parity with the library ----------------------------------------------------------


def test_endpoints_update_and_headers(db: Path) -> None:
    endpoint_id = run(db, "endpoints", "add", "https://a.example/x", "--header", "X-Team: billing",
                      "-q").stdout.strip()  # fmt: skip
    shown = json.loads(run(db, "endpoints", "show", endpoint_id, "--json").stdout)
    assert shown["headers"] == {"X-Team": "billing"}
    updated = run(db, "endpoints", "update", endpoint_id, "--url", "https://b.example/y",
                  "--events", "payment.*", "--header", "X-Team: ops", "--description", "ops hook",
                  "--max-in-flight", "4", "--json")  # fmt: skip
    assert updated.exit_code == 0, updated.output
    document = json.loads(updated.stdout)
    assert (document["url"], document["events"], document["headers"], document["description"]) == (
        "https://b.example/y", ["payment.*"], {"X-Team": "ops"}, "ops hook"
    )  # fmt: skip
    store = SQLiteStore(db)
    endpoint = store.get_endpoint(endpoint_id)
    store.close()
    assert endpoint is not None and endpoint.max_in_flight == 4
    cleared = json.loads(
        run(db, "endpoints", "update", endpoint_id, "--no-headers", "--json").stdout
    )
    assert cleared["headers"] == {}


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ([], "nothing to change"),
        (["--url", "https://10.1.2.3/x"], "private (10.0.0.0/8)"),
        (["--events", "message.bogus"], "matches no known event"),
        (["--header", "no colon"], "is not 'NAME: VALUE'"),
    ],
)
def test_endpoints_update_refuses_bad_input(db: Path, args: list[str], reason: str) -> None:
    endpoint_id = run(db, "endpoints", "add", "https://a.example/x", "-q").stdout.strip()
    assert reason in one_line_error(run(db, "endpoints", "update", endpoint_id, *args))


def test_endpoints_list_quiet_and_paging(db: Path) -> None:
    ids = [
        run(db, "endpoints", "add", f"https://{n}.example/x", "-q").stdout.strip()
        for n in ("a", "b", "c")
    ]
    assert run(db, "endpoints", "list", "-q").stdout.split() == ids
    assert run(db, "endpoints", "list", "-q", "--offset", "1", "--limit", "1").stdout.split() == [
        ids[1]
    ]
    page = run(db, "endpoints", "list", "--limit", "2")
    assert "(1-2 of 3; page with --offset N)" in page.stdout


def test_deliveries_retry_makes_a_scheduled_retry_due_now(db: Path) -> None:
    policy = RetryPolicy(schedule=(3600.0,), timeout=5.0)
    with (
        LoopbackReceiver() as rx,
        ThreadedWebhookService(
            SQLiteStore(db), allow_http=True, allowed_networks=LOOPBACK_NETWORKS, policy=policy
        ) as hooks,
    ):
        rx.route("/down", handshake_then(Respond(503, b"maintenance")))
        endpoint = hooks.add_endpoint(rx.url("/down"))
        hooks.wait_until_verified(endpoint.id, 30)
        hooks.publish("message.sent", MESSAGE)
        while not (found := hooks.list_deliveries()) or not found[0].attempts:
            time.sleep(0.02)
    [waiting] = found
    assert waiting.state is DeliveryState.RETRY_SCHEDULED
    before = time.time()
    retried = run(db, "deliveries", "retry", waiting.id)
    assert retried.exit_code == 0, retried.output
    assert f"delivery {waiting.id} is due now" in retried.stdout
    store = SQLiteStore(db)
    due = store.get_delivery(waiting.id)
    store.close()
    assert due is not None and due.next_attempt_at is not None
    assert before <= due.next_attempt_at <= time.time() and due.attempts == waiting.attempts
    line = one_line_error(run(db, "deliveries", "retry", "dlv_missing"))
    assert "no delivery with id 'dlv_missing'" in line


def test_deliveries_retry_refuses_a_delivery_not_waiting_to_retry(db: Path) -> None:
    endpoint_id = run(db, "endpoints", "add", "https://a.example/x", "-q").stdout.strip()
    _activate(db, endpoint_id)
    run(db, "publish", "message.sent", "--data", json.dumps(MESSAGE))
    [delivery_id] = run(db, "deliveries", "list", "-q").stdout.split()
    assert run(db, "endpoints", "disable", endpoint_id).exit_code == 0  # its delivery fails
    line = one_line_error(run(db, "deliveries", "retry", delivery_id))
    assert "is failed; only a waiting (pending or retry_scheduled) one can be retried" in line


def test_events_lists_the_catalog_and_shows_a_sample_that_publishes(db: Path) -> None:
    listing = run(db, "events")
    assert listing.exit_code == 0, listing.output
    assert "payment.failed" in listing.stdout and "payment_id, amount, currency" in listing.stdout
    one = run(db, "events", "payment.failed")
    assert "refunded_amount" in one.stdout and "optional" in one.stdout
    sample = one.stdout.split("--data '", 1)[1].rsplit("'", 1)[0]
    published = run(db, "publish", "payment.failed", "--data", sample)
    assert published.exit_code == 0, published.output
    documents = json.loads(run(db, "events", "--json").stdout)
    assert len(documents) == 13 and all(d["fields"] and d["sample"] for d in documents)
    assert "unknown event 'payment.lost'" in one_line_error(run(db, "events", "payment.lost"))


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--retention", "soon"], "--retention 'soon' is not an age"),
        (["--retention-failed", "0s"], "--retention-failed '0s' is not an age"),
        (["--transport", "carrier-pigeon"], "Invalid value for '--transport'"),
        (["--concurrency", "0"], "Invalid value for '--concurrency'"),
        (["--ca-file", "/nonexistent.pem"], "Invalid value for '--ca-file'"),
    ],
)
def test_serve_options_refuse_bad_values(db: Path, args: list[str], reason: str) -> None:
    result = run(db, "serve", *args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert reason in result.stderr


def test_serve_with_its_options_delivers(tmp_path: Path) -> None:
    db = tmp_path / "webhooks.db"
    with LoopbackReceiver() as rx:
        rx.route("/hook", handshake_then())
        serve = Command("--db", str(db), "serve", "--runtime", "threads", "--transport", "http1",
                        "--concurrency", "2", "--poll-interval", "0.1", "--retention", "1h",
                        "--retention-failed", "30d", cwd=tmp_path)  # fmt: skip
        try:
            serve.wait_for("dispatching from")
            added = run(db, "endpoints", "add", rx.url("/hook"), "--wait", "30", env=LOOPBACK_ENV)
            assert "state:  active" in added.stdout, added.output + serve.output
            published = run(db, "publish", "message.sent", "--data", json.dumps(MESSAGE),
                            "--wait", "30")  # fmt: skip
            assert published.exit_code == 0, published.output + serve.output
            assert serve.stop(signal.SIGTERM) == 0, serve.output
        finally:
            serve.kill()


def test_shell_completion_as_docs_cli_md_shows_it(tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    assert '"$(_WEBHOOKS_COMPLETE=bash_source webhooks)"' in docs
    command = [sys.executable, "-m", "transports.cli"]
    script = subprocess.run(
        command, env=process_env({"_WEBHOOKS_COMPLETE": "bash_source"}), cwd=tmp_path,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert script.returncode == 0 and "_webhooks_completion" in script.stdout, script.stderr
    words = {"_WEBHOOKS_COMPLETE": "bash_complete", "COMP_WORDS": "webhooks endpoints up",
             "COMP_CWORD": "2"}  # fmt: skip
    completed = subprocess.run(
        command, env=process_env(words), cwd=tmp_path,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.stdout.split() == ["plain,update"], completed.stderr
