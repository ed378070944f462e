"""The admin page ("Settings → Webhooks") in a real browser: Debian's Chromium driven by Playwright,
the app under real uvicorn on 127.0.0.1, a real dispatcher and a real receiver on loopback.

Screenshots of each screen are taken on every run; with WEBHOOKS_UPDATE_SCREENSHOTS=1 they are
written to docs/images/admin/ (docs/admin.md shows them), otherwise to a temporary directory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from tests.admin.servers import serving
from transports.admin import management_app
from transports.admin.auth import create_token
from transports.driving import operations
from transports.http.guard import OutboundPolicy
from transports.stores.sqlite import SQLiteStore
from transports.sync.service import ThreadedWebhookService
from transports.testing.loopback import (
    LOOPBACK_NETWORKS,
    Handler,
    LoopbackReceiver,
    ReceivedRequest,
    Respond,
)
from webhook_core import RetryPolicy, platform_catalog
from webhook_core.samples import sample_data

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OPERATOR = "operator-token-0123456789"
SESSION_KEY = "session-key-for-the-browser-tests-0123456789"
LOOPBACK = OutboundPolicy(allowed_networks=("127.0.0.0/8",), allow_http=True)
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "images" / "admin"
WAIT_MS = 20_000

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]


class Receiver:
    """The receiver's answers: every path echoes the handshake's token except ``/wrong``;
    ``/flaky`` answers events with 500 while ``failing`` is set."""

    def __init__(self) -> None:
        self.failing = threading.Event()
        self.failing.set()

    def answer(self, request: ReceivedRequest) -> Respond:
        body = request.json()
        if body["event"] == "webhook.verification":
            if request.path.startswith("/wrong"):
                return Respond(200, b"hello from an app that ignores the handshake")
            return Respond(200, body["data"]["verification_token"].encode())
        if request.path.startswith("/flaky") and self.failing.is_set():
            return Respond(500, b'{"error": "database is down"}')
        return Respond(200, b'{"received": true}')


@attrs.frozen
class Site:
    url: str
    store: SQLiteStore
    rx: LoopbackReceiver
    receiver: Receiver
    shots: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    directory = tmp_path_factory.mktemp("admin-page")
    store = SQLiteStore(directory / "admin.db")
    receiver = Receiver()
    update = os.environ.get("WEBHOOKS_UPDATE_SCREENSHOTS") == "1"
    shots = SHOTS if update else directory / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    app = management_app(store, operator_token=OPERATOR, outbound=LOOPBACK, session_key=SESSION_KEY)
    with (
        LoopbackReceiver(default=Handler(receiver.answer)) as rx,
        ThreadedWebhookService(
            SQLiteStore(directory / "admin.db"),
            allow_http=True,
            allowed_networks=LOOPBACK_NETWORKS,
            policy=RetryPolicy(schedule=()),
            poll_interval=0.2,
        ),
        serving(app, "uvicorn") as url,
    ):
        yield Site(url, store, rx, receiver, shots)
    store.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        yield playwright, tmp_path_factory.mktemp("profiles")


def _context(browser: Any, name: str, width: int = 1200) -> Any:
    playwright, profiles = browser
    context = playwright.chromium.launch_persistent_context(
        str(profiles / name),
        executable_path=CHROMIUM,
        args=CHROMIUM_ARGS,
        headless=True,
        viewport={"width": width, "height": 900},
    )
    context.set_default_timeout(WAIT_MS)
    return context


def _shot(site: Site, page: Any, name: str) -> None:
    page.screenshot(path=str(site.shots / f"{name}.png"), full_page=True)


def _sign_in(site: Site, page: Any, token: str, tenant: str = "") -> None:
    page.goto(site.url + "/")
    page.get_by_label("Token", exact=True).fill(token)
    if tenant:
        page.locator("#tenant").fill(tenant)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/endpoints$"))


def _add_endpoint(page: Any, url: str, *, families: tuple[str, ...] = ("message",)) -> None:
    page.get_by_role("link", name="Endpoints", exact=True).click()
    page.get_by_role("link", name="Add endpoint").click()
    page.get_by_label("Endpoint URL").fill(url)
    page.get_by_label("Every event").uncheck()
    for family in families:
        page.get_by_label(f"All {family} events").check()
    page.get_by_role("button", name="Add endpoint").click()


def test_the_whole_flow_in_a_browser(site: Site, browser: Any) -> None:
    expect = sync_api.expect
    _, acme_token = create_token(site.store, "acme", time.time())
    context = _context(browser, "acme")
    page = context.pages[0] if context.pages else context.new_page()

    # Sign in: the sign-in page first, then the (empty) endpoints.
    page.goto(site.url + "/")
    page.wait_for_url(re.compile(r"/signin$"))
    _shot(site, page, "signin")
    _sign_in(site, page, acme_token)
    expect(page.get_by_test_id("tenant")).to_have_text("acme")

    # Add an endpoint; the secret is shown once and the handshake turns it active live.
    page.get_by_role("link", name="Add endpoint").first.click()
    page.get_by_label("Endpoint URL").fill(site.rx.url("/hook"))
    page.get_by_label("Every event").uncheck()
    page.get_by_label("All message events").check()
    # The shortcut checks its family (admin.js).
    expect(page.locator('input[value="message.delivered"]')).to_be_checked()
    page.locator('input[value="payment.refunded"]').check()
    page.get_by_label("Description").fill("Order updates for the CRM")
    _shot(site, page, "add-endpoint")
    page.get_by_role("button", name="Add endpoint").click()
    secret = page.get_by_role("textbox", name="Signing secret").input_value()
    (hook,) = operations.list_endpoints(site.store, "acme")
    assert secret == hook.secrets[0].value
    assert hook.filters == ("message.*", "payment.refunded")
    expect(page.locator("#handshake")).to_have_attribute("data-state", "active")
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    _shot(site, page, "endpoint-created")

    # A receiver that does not echo the token: the page shows its answer and what to do.
    _add_endpoint(page, site.rx.url("/wrong"))
    expect(page.locator("#handshake")).to_have_attribute("data-state", "unverified")
    expect(page.locator("#handshake")).to_contain_text("ignores the handshake")
    expect(page.locator("#handshake")).to_contain_text("echo the verification token")
    _shot(site, page, "handshake-failed")

    _add_endpoint(page, site.rx.url("/flaky"))
    expect(page.locator("#handshake")).to_have_attribute("data-state", "active")

    # The testing tool: bad data is refused against the catalog, good data is sent signed.
    page.get_by_role("link", name="Testing tool", exact=True).click()
    page.get_by_label("Endpoint").select_option(hook.id)
    page.locator("#event").select_option("message.delivered")
    data = page.get_by_label("Sample data")
    expect(data).to_have_value(re.compile('"status": "delivered"'))
    data.fill('{"message_id": 42}')
    expect(page.locator("#data-check")).to_contain_text("message_id")  # checked as typed
    page.get_by_role("button", name="Send test event").click()
    expect(page.get_by_role("alert")).to_contain_text("message_id")
    page.locator("#event").select_option("message.delivered")
    page.get_by_role("button", name="Send test event").click()
    expect(page.get_by_test_id("status")).to_have_text("200")
    shown = page.get_by_test_id("request").inner_text()
    (received,) = [r for r in site.rx.requests_for("/hook") if b"evttest_" in r.body]
    expected = "sha256=" + hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    assert received.header("x-netasampark-signature") == expected
    assert f"x-netasampark-signature: {expected}" in shown.lower()
    assert received.body.decode() in shown
    expect(page.get_by_test_id("response")).to_contain_text('{"received": true}')
    _shot(site, page, "test-tool")

    # A failed delivery (the flaky receiver answers 500; one attempt only here), replayed.
    result = operations.publish(
        site.store,
        platform_catalog(),
        "message.sent",
        sample_data("message.sent"),
        time.time(),
        tenant="acme",
    )
    assert result.deliveries == 2
    page.get_by_role("link", name="Delivery log", exact=True).click()
    page.get_by_label("State").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    deadline = time.monotonic() + WAIT_MS / 1000
    while page.locator("table.deliveries tbody tr").count() == 0:
        assert time.monotonic() < deadline, "the failed delivery never appeared"
        time.sleep(0.3)
        page.reload()
    expect(page.locator("table.deliveries tbody tr")).to_have_count(1)
    _shot(site, page, "delivery-log")
    page.locator("table.deliveries tbody tr a.mono").click()
    expect(page.locator(".attempts")).to_contain_text("500")
    expect(page.locator(".attempts")).to_contain_text("database is down")
    site.receiver.failing.clear()
    page.get_by_role("button", name="Replay").click()
    expect(page.get_by_role("status")).to_contain_text("Replayed as")
    deadline = time.monotonic() + WAIT_MS / 1000
    while "delivered" not in page.locator(".heading .state").inner_text():
        assert time.monotonic() < deadline, "the replay was never delivered"
        time.sleep(0.3)
        page.reload()
    _shot(site, page, "delivery")

    # Rotate the secret: the new one is shown once; the old one signs for the grace period.
    page.goto(site.url + f"/endpoints/{hook.id}")
    page.get_by_label("hours the old one keeps signing").fill("2")
    page.get_by_role("button", name="Rotate secret").click()
    rotated = page.get_by_role("textbox", name="Signing secret").input_value()
    stored = operations.find_endpoint(site.store, hook.id, "acme")
    assert stored is not None
    assert [s.value for s in stored.secrets] == [rotated, secret]
    assert stored.secrets[1].expires_at == pytest.approx(stored.secrets[0].created_at + 7200)
    _shot(site, page, "rotated")

    # Remove, after a confirmation page.
    page.goto(site.url + "/endpoints")
    page.get_by_role("link", name=site.rx.url("/wrong")).click()
    page.get_by_role("link", name="Remove…").click()
    page.get_by_role("button", name="Remove the endpoint").click()
    expect(page.get_by_role("status")).to_contain_text("Removed")
    assert len(operations.list_endpoints(site.store, "acme")) == 2
    _shot(site, page, "endpoints")

    # The same list on a phone-width screen.
    phone = _context(browser, "phone", width=390)
    phone_page = phone.pages[0] if phone.pages else phone.new_page()
    _sign_in(site, phone_page, acme_token)
    expect(phone_page.locator("table.endpoints")).to_contain_text("/hook")
    scroll = phone_page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= 390, f"the page is {scroll}px wide on a 390px screen"
    _shot(site, phone_page, "phone")
    phone.close()

    # Tenant B's browser never sees tenant A's endpoint or deliveries, even by their ids.
    acme_delivery = operations.list_deliveries(site.store, tenant="acme")[0]
    _, globex_token = create_token(site.store, "globex", time.time())
    other = _context(browser, "globex")
    other_page = other.pages[0] if other.pages else other.new_page()
    _sign_in(site, other_page, globex_token, tenant="acme")  # a tenant token ignores the field
    expect(other_page.get_by_test_id("tenant")).to_have_text("globex")
    expect(other_page.locator("main")).to_contain_text("No endpoints yet")
    for path, status in (
        (f"/endpoints/{hook.id}", 404),
        (f"/endpoints/{hook.id}/status", 404),
        (f"/endpoints/{hook.id}/edit", 404),
        (f"/deliveries/{acme_delivery.id}", 404),
        (f"/test?endpoint_id={hook.id}", 200),
        (f"/deliveries?endpoint_id={hook.id}", 200),
        ("/deliveries", 200),
    ):
        answer = other_page.goto(site.url + path)
        assert answer is not None and answer.status == status, (path, answer and answer.status)
        text = other_page.content()
        assert "/hook" not in text and "/flaky" not in text, path
        assert acme_delivery.event_id not in text, path
    _shot(site, other_page, "tenant-b")
    other.close()
    context.close()


def test_headers_csrf_and_sessions_over_http(site: Site) -> None:
    _, token = create_token(site.store, "initech", time.time())
    with httpx.Client(base_url=site.url, timeout=30) as client:
        signin = client.get("/signin")
        assert signin.status_code == 200
        headers = signin.headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "'unsafe-inline'" not in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        cookie = headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        csrf = re.search(r'name="csrf" value="([^"]+)"', signin.text)
        assert csrf is not None

        # A form without the session's CSRF token changes nothing.
        forged = client.post("/signin", data={"token": token, "csrf": "forged"})
        assert forged.status_code == 403
        assert client.get("/endpoints").status_code == 303

        signed_in = client.post("/signin", data={"token": token, "csrf": csrf.group(1)})
        assert signed_in.status_code == 303
        page = client.get("/endpoints")
        assert page.status_code == 200 and "initech" in page.text
        cookie_value = client.cookies.get("webhooks_admin") or ""
        session = base64.b64decode(cookie_value.split(".")[0] + "==").decode()
        assert hashlib.sha256(token.encode()).hexdigest() in session
        assert token not in session  # only the token's digest is kept
        forged = client.post(
            "/endpoints", data={"url": "http://127.0.0.1:9/x", "events": "*", "csrf": "nope"}
        )
        assert forged.status_code == 403
        assert operations.list_endpoints(site.store, "initech") == []

        # A revoked token ends its sessions at once.
        (record,) = [t for t in site.store.list_tokens() if t.tenant == "initech"]
        site.store.delete_token(record.id)
        assert client.get("/endpoints").status_code == 303
        assert client.get("/endpoints/x/status").status_code == 401


def test_bad_input_is_a_clear_page_not_a_500(site: Site) -> None:
    with httpx.Client(base_url=site.url, timeout=30, follow_redirects=True) as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/signin").text)
        assert csrf is not None
        client.post("/signin", data={"token": OPERATOR, "tenant": "umbrella", "csrf": csrf[1]})
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/endpoints/new").text)
        assert csrf is not None
        refused = client.post("/endpoints", data={"url": "ftp://x", "events": "*", "csrf": csrf[1]})
        assert refused.status_code == 422 and "ftp" in refused.text
        shown = client.get("/deliveries", params={"since": "yesterday"})
        assert shown.status_code == 422 and "yesterday" in shown.text
        missing = client.get("/deliveries/dlv_nope")
        assert missing.status_code == 404 and "dlv_nope" in missing.text
        assert operations.list_endpoints(site.store, "umbrella") == []
