"""What every driver shares: ``DriverState``, the settings, and the generated sync body."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import attrs
import pytest

from transports import MemoryStore, SQLiteStore, ThreadedWebhookService, WebhookService
from transports.driving.config import DriverOptions, DriverSettings
from transports.driving.state import ACTIVITIES, DriverState, Patience, StoreFaults
from transports.stores.interface import Claimed
from webhook_core import (
    AttemptResult,
    ConfigError,
    Endpoint,
    EndpointGate,
    EndpointSecret,
    EndpointState,
    GatePolicy,
    RetryPolicy,
    build_event,
    new_delivery,
    platform_catalog,
)

MESSAGE = {"message_id": "m1", "channel": "sms", "to": "+919800000000", "status": "sent"}

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000.0


def state(**changes: object) -> DriverState:
    settings: dict[str, object] = {
        "policy": RetryPolicy(),
        "lease": 60.0,
        "max_in_flight": 64,
        "poll_interval": 1.0,
        "user_agent": "test",
        "retention": None,
        "retention_interval": 3600.0,
        "gate": None,
    }
    settings.update(changes)
    return DriverState(**settings)  # type: ignore[arg-type]


def verifying(token: str) -> Endpoint:
    return Endpoint(
        id="ep_1",
        url="https://example.com/hook",
        secrets=(EndpointSecret("whsec_" + "A" * 32, T0),),
        created_at=T0,
        state=EndpointState.VERIFYING,
        verification_token=token,
    )


def test_the_generated_sync_driver_is_up_to_date() -> None:
    check = subprocess.run(
        [sys.executable, "scripts/unasync.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_claims_ahead_follow_the_pace_of_attempts() -> None:
    s = state()
    assert s.claim_limit() == 64 + int(64 * 25 / 30)  # deadline 30 s, lease 60 s, margin 5 s
    s.claimed(100)
    assert s.claims_wanted() == s.claim_limit() - 100
    assert s.coalesce(3) and not s.coalesce(8), "a few claims wait for more; a batch does not"
    for _ in range(200):
        delivery_took_a_millisecond(s)
    assert s.claim_limit() == 3 * 64, "quick attempts raise it to the cap"
    s.stopping = True
    assert s.claims_wanted() == 0


def delivery_took_a_millisecond(s: DriverState) -> None:
    s._attempt_time += 0.05 * (0.001 - s._attempt_time)


def test_the_timer_is_the_earliest_of_poll_prune_and_due() -> None:
    s = state(poll_interval=5.0)
    assert s.timer(T0, None) == 5.0
    assert s.timer(T0, T0 + 2) == 2.0
    assert s.timer(T0, T0 - 3) == 0.0, "overdue work: no sleep"
    assert s.scan_due(T0) and not s.scan_due(T0 + 4.9) and s.scan_due(T0 + 5)


def test_one_handshake_per_endpoint_and_token() -> None:
    s = state()
    first = verifying("tok_1")
    assert s.handshake_wanted(first)
    assert not s.handshake_wanted(first), "one is on its way"
    assert s.handshake_wanted(verifying("tok_2")), "a new token gets its own at once"
    s.handshake_ended(first)
    assert s.handshake_wanted(first)
    s.stopping = True
    assert not s.handshake_wanted(verifying("tok_3"))


def test_store_faults_back_off_log_once_and_give_up_by_patience() -> None:
    faults = StoreFaults()
    claim = ACTIVITIES["claim"]
    first = faults.failed(claim, T0, stopping=False, lease=60.0)
    again = faults.failed(claim, T0 + 1, stopping=False, lease=60.0)
    assert (first.first, again.first) == (True, False)
    assert again.delay == 2 * first.delay
    delays = [faults.failed(claim, T0 + 2, stopping=False, lease=60.0).delay for _ in range(10)]
    assert max(delays) == 2.0, "back-off is capped"
    assert faults.failed(claim, T0 + 3, stopping=True, lease=60.0).give_up
    assert faults.succeeded(claim) is False, "giving up ends the run"

    complete = ACTIVITIES["complete"]
    assert complete.patience is Patience.LEASE
    assert not faults.failed(complete, T0, stopping=True, lease=60.0).give_up
    assert not faults.failed(complete, T0 + 59, stopping=True, lease=60.0).give_up
    assert faults.failed(complete, T0 + 60, stopping=True, lease=60.0).give_up

    count = ACTIVITIES["count_deliveries"]
    assert not faults.failed(count, T0, stopping=True, lease=60.0).give_up
    assert faults.succeeded(count) is True
    assert faults.succeeded(count) is False


def test_driver_options_name_every_setting() -> None:
    fields = {f.name for f in attrs.fields(DriverSettings)}
    assert set(DriverOptions.__annotations__) == fields


def test_settings_as_one_object_or_as_keywords() -> None:
    settings = DriverSettings(max_in_flight=3, poll_interval=0.5)
    from_object = ThreadedWebhookService(MemoryStore(), settings=settings)
    from_keywords = ThreadedWebhookService(MemoryStore(), max_in_flight=3, poll_interval=0.5)
    on_top = ThreadedWebhookService(MemoryStore(), settings=settings, max_in_flight=5)
    same = from_keywords.settings.catalog
    assert attrs.evolve(from_object.settings, catalog=same) == from_keywords.settings
    assert (on_top.max_in_flight, on_top.poll_interval) == (5, 0.5)
    with pytest.raises(ConfigError, match="max_in_flight"):
        DriverSettings(max_in_flight=0)
    with pytest.raises(ConfigError, match="unexpected keyword argument 'max_inflight'"):
        ThreadedWebhookService(MemoryStore(), max_inflight=3)  # type: ignore[call-arg]


def test_a_driver_closes_the_store_it_opened_and_only_that(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOKS_DB", str(tmp_path / "own.db"))
    with ThreadedWebhookService() as opened_itself:
        assert opened_itself.store.list_endpoints() == []
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        opened_itself.store.list_endpoints()

    async def run_async() -> None:
        async with WebhookService() as hooks:
            assert await hooks.list_endpoints() == []
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            hooks.store.list_endpoints()

    anyio.run(run_async)

    with SQLiteStore(tmp_path / "given.db") as given:
        with ThreadedWebhookService(given):
            pass
        assert given.list_endpoints() == [], "a store you pass stays yours"
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        given.list_endpoints()


def test_a_finished_attempt_leaves_the_endpoint_gate() -> None:
    gate = EndpointGate(GatePolicy())
    s = state(gate=gate)
    target = Endpoint(
        id="ep_1",
        url="https://example.com/hook",
        secrets=(EndpointSecret("whsec_" + "A" * 32, T0),),
        created_at=T0,
        state=EndpointState.ACTIVE,
    )
    event = build_event(platform_catalog(), "message.sent", MESSAGE, event_id="evt_1", now=T0)

    def claim(n: int, at: float) -> Claimed:
        return Claimed(new_delivery(f"dlv_{n}", "evt_1", "ep_1", at), event, target, at + 60)

    first = claim(1, T0)
    _, request = s.begin(first, T0)
    assert request is not None
    # The send starts a moment after the attempt was admitted; the gate knows it by the latter.
    sent = AttemptResult(started_at=T0 + 0.01, ended_at=T0 + 0.02, status=200)
    s.attempt_ended(first, sent, T0)
    later = T0 + 10
    # A success widened the window to 8: the fifth attempt under way at once is admitted,
    # unless the first one still counts as in flight (then the endpoint looks slow).
    begun = [s.begin(claim(n, later), later)[1] for n in range(2, 7)]
    assert None not in begun, "the first attempt still counts as in flight: a slow endpoint"
