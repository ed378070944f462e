"""Our requests against the platform document's own Node.js receiver (tests/node/receiver.js).

That receiver re-serialises the parsed body with ``JSON.stringify`` and compares an
HMAC-SHA256 hex digest of it with ``X-Netasampark-Signature``: every body we publish must
get 200 from it, and a tampered one 401.
"""

from __future__ import annotations

import json
import math
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhook_core.canonical import MAX_SAFE_INTEGER, canonical_json
from webhook_core.catalog import PLATFORM_EVENTS, platform_catalog
from webhook_core.envelope import build_event, verification_event
from webhook_core.signing import SIGNATURE_HEADER, as_secrets, signature_headers
from webhook_core.timefmt import rfc3339

pytestmark = pytest.mark.node

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
PATH = "/webhooks/netasampark"
NOW = 1_704_067_200
READY_TIMEOUT = 30.0
CATALOG = platform_catalog()


def _unavailable(message: str) -> None:
    """Fail in CI, skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _install_express(npm: str) -> None:
    if (NODE_DIR / "node_modules" / "express" / "package.json").exists():
        return
    result = subprocess.run(
        [npm, "install", "--no-package-lock", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"npm install in {NODE_DIR} failed:\n{result.stdout}\n{result.stderr}")


@attrs.frozen
class Receiver:
    """A running reference receiver and the secret it was started with."""

    url: str
    secret: str
    client: httpx.Client

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.client.post(
            self.url, content=body, headers={"Content-Type": "application/json", **headers}
        )

    def deliver(self, body: bytes, msg_id: str = "evt_1", timestamp: int = NOW) -> httpx.Response:
        """POST ``body`` signed with the receiver's secret, as the sender does."""
        return self.post(
            body, signature_headers(as_secrets([self.secret]), msg_id, timestamp, body)
        )


def _wait_ready(process: subprocess.Popen[bytes], log: Path) -> int:
    assert process.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], deadline - time.monotonic())
        if not ready:
            break
        line = process.stdout.readline().decode()
        if not line:
            break
        if line.startswith("listening on "):
            return int(line.split()[-1])
    process.kill()
    process.wait()
    pytest.fail(f"the Node.js receiver did not start:\n{log.read_text(errors='replace')}")


@pytest.fixture(
    scope="module",
    params=[
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "गुप्त-रहस्य secret with spaces & UTF-8",
    ],
    ids=["whsec-secret", "utf8-secret"],
)
def receiver(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Receiver]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("Node.js and npm are needed for the reference-receiver tests")
    assert node is not None and npm is not None
    _install_express(npm)
    secret: str = request.param
    log = tmp_path_factory.mktemp("node") / "receiver.stderr"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [node, str(NODE_DIR / "receiver.js"), "0"],
            cwd=NODE_DIR,
            env={**os.environ, "WEBHOOK_SECRET": secret},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        port = _wait_ready(process, log)
        with httpx.Client(timeout=10, trust_env=False) as client:
            yield Receiver(f"http://127.0.0.1:{port}{PATH}", secret, client)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()


# --- payloads ----------------------------------------------------------------------------

NUMBERS: dict[str, Any] = {
    "zero": 0,
    "negative": -42,
    "max_safe": MAX_SAFE_INTEGER,
    "min_safe": -MAX_SAFE_INTEGER,
    "tenth": 0.1,
    "sum": 0.1 + 0.2,
    "third": 1 / 3,
    "integral_float": 2.0,
    "negative_zero": -0.0,
    "micro": 1e-6,
    "below_micro": 1e-7,
    "small": 1.5e-10,
    "subnormal": 5e-324,
    "smallest_normal": 2.2250738585072014e-308,
    "just_below_1e21": math.nextafter(1e21, 0.0),
    "1e21": 1e21,
    "big": 1.5e300,
    "largest": 1.7976931348623157e308,
    "two_pow_53": 2.0**53,
    "money": 123456789.125,
}
STRINGS: dict[str, Any] = {
    "greeting": "नमस्ते",
    "name": "राजेश कुमार",
    "address": "१२, गांधी मार्ग, नई दिल्ली",
    "controls": "\x00\x01\x1f\x7f\b\f\n\r\t",
    "separators": "\u2028\u2029",
    "emoji": "😀👍🏽👨\u200d👩\u200d👧",
    "quotes": "\"'\\/",
    "html": "</script><b>&amp;</b>",
    "bom": "\ufeff",
    "astral": "\U0010ffff",
    "empty": "",
}
NESTED: dict[str, Any] = {
    "deep": {"a": {"b": {"c": [1, [2, [3, {"d": None, "e": True, "f": False}]]]}}},
    "empty_object": {},
    "empty_list": [],
    "mixed_list": [1, 1.5, "दो", None, True, {"x": [0.5]}, []],
    "index_keys": {"b": 1, "10": 2, "2": 3, "01": 4, "4294967295": 5, "0": 6},
    "rows": [{"id": i, "score": i / 7, "label": f"पंक्ति {i}"} for i in range(20)],
}

SAMPLE_DATA: dict[str, dict[str, Any]] = {
    "message": {
        "message_id": "msg_123",
        "channel": "whatsapp",
        "to": "+919876543210",
        "status": "delivered",
        "template": "नमस्ते {{1}}, आपका संदेश",
        "campaign_id": "cmp_9",
    },
    "grievance": {
        "grievance_id": "grv_77",
        "status": "open",
        "category": "सड़क",
        "priority": "high",
        "subject": "सड़क की मरम्मत नहीं हुई",
        "reporter": "राजेश कुमार",
        "assigned_to": "वार्ड अधिकारी",
        "previous_status": "new",
        "resolution": "मरम्मत पूरी हुई ✅",
    },
    "payment": {
        "payment_id": "pay_1",
        "amount": 4_999_900,
        "currency": "INR",
        "status": "processed",
        "method": "upi",
        "order_id": "ord_5",
        "refund_id": "rfnd_1",
        "refunded_amount": 100,
        "failure_reason": "बैंक ने अस्वीकार किया",
    },
    "campaign": {
        "campaign_id": "cmp_1",
        "name": "दीवाली ऑफ़र २०२४",
        "channel": "sms",
        "status": "completed",
        "audience_size": MAX_SAFE_INTEGER,
        "sent_count": 1_000_000,
        "delivered_count": 999_998,
        "failed_count": 2,
        "error_message": "",
    },
}


def _platform_events() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for index, name in enumerate(sorted(PLATFORM_EVENTS)):
        data = dict(SAMPLE_DATA[name.split(".")[0]])
        data["metadata"] = [NUMBERS, STRINGS, NESTED, {**NUMBERS, **STRINGS, **NESTED}][index % 4]
        cases.append((name, data))
    return cases


PLATFORM_CASES = _platform_events()


def _check_ok(response: httpx.Response) -> None:
    assert (response.status_code, response.text) == (200, "OK")


# --- every published body is accepted ---------------------------------------------------


@pytest.mark.parametrize(("name", "data"), PLATFORM_CASES, ids=[n for n, _ in PLATFORM_CASES])
def test_platform_events_are_accepted(receiver: Receiver, name: str, data: dict[str, Any]) -> None:
    event = build_event(CATALOG, name, data, event_id="evt_" + name.replace(".", "_"), now=NOW)
    _check_ok(receiver.deliver(event.body, event.id))


@pytest.mark.parametrize("part", ["numbers", "strings", "nested"])
def test_minimal_events_with_one_kind_of_metadata(receiver: Receiver, part: str) -> None:
    metadata = {"numbers": NUMBERS, "strings": STRINGS, "nested": NESTED}[part]
    data = {
        "message_id": "msg_1",
        "channel": "sms",
        "to": "+911234567890",
        "status": "sent",
        "metadata": metadata,
    }
    event = build_event(CATALOG, "message.sent", data, event_id="evt_min", now=NOW + 1)
    _check_ok(receiver.deliver(event.body, event.id, NOW + 1))


def test_the_document_example_is_accepted(receiver: Receiver) -> None:
    data = {
        "message_id": "msg_123",
        "channel": "whatsapp",
        "to": "+919876543210",
        "status": "delivered",
    }
    event = build_event(CATALOG, "message.delivered", data, event_id="evt_doc", now=NOW)
    assert event.body.startswith(b'{"event":"message.delivered","timestamp":"2024-01-01T00:00:00Z"')
    _check_ok(receiver.deliver(event.body))


def test_verification_handshake_is_accepted(receiver: Receiver) -> None:
    event = verification_event("tok_Zx9-abc", event_id="evt_handshake", now=NOW)
    _check_ok(receiver.deliver(event.body, event.id))


RAW_ENVELOPES: list[Any] = [
    {"event": "custom.thing", "timestamp": rfc3339(NOW), "data": NESTED, "id": "evt_r1"},
    {"event": "custom.numbers", "timestamp": rfc3339(0), "data": NUMBERS, "id": "evt_r2"},
    {"id": "evt_r3", "data": STRINGS, "event": "custom.order", "timestamp": rfc3339(NOW)},
    {"event": "custom.tuple", "data": {"pair": (1, "दो"), "list": [(0.5, -0.0)]}, "id": "e4"},
    {"7": "index key first", "event": "custom.keys", "data": {"3": [], "1": {}}, "id": "e5"},
    {"event": "custom.big", "data": {"rows": [NUMBERS] * 50, "text": "नमस्ते " * 500}},
    [1, "arrays are JSON too", {"event": "x"}],
]


@pytest.mark.parametrize("envelope", RAW_ENVELOPES, ids=[f"raw{i}" for i in range(7)])
def test_raw_canonical_envelopes_are_accepted(receiver: Receiver, envelope: Any) -> None:
    _check_ok(receiver.deliver(canonical_json(envelope)))


def test_rotation_headers_are_accepted(receiver: Receiver) -> None:
    event = build_event(CATALOG, *PLATFORM_CASES[0], event_id="evt_rot", now=NOW)
    secrets = as_secrets([receiver.secret, "whsec_" + "b2xkLXNlY3JldC1vbGQtc2VjcmV0"])
    _check_ok(receiver.post(event.body, signature_headers(secrets, event.id, NOW, event.body)))


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
    st.sampled_from(list(STRINGS.values())),
)
json_keys = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=10),
    st.sampled_from(["0", "7", "01", "4294967294", "4294967295", "__proto__"]),
)
metadata_values = st.dictionaries(
    json_keys,
    st.recursive(
        json_leaves,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(json_keys, children),
        max_leaves=15,
    ),
    max_size=6,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(metadata=metadata_values, name=st.sampled_from(sorted(PLATFORM_EVENTS)))
def test_random_metadata_is_accepted(
    receiver: Receiver, metadata: dict[str, Any], name: str
) -> None:
    data = {**SAMPLE_DATA[name.split(".", maxsplit=1)[0]], "metadata": metadata}
    event = build_event(CATALOG, name, data, event_id="evt_fuzz", now=NOW)
    _check_ok(receiver.deliver(event.body, event.id))


# --- and tampering is caught --------------------------------------------------------------


def _event_body() -> bytes:
    data = {**SAMPLE_DATA["grievance"], "metadata": STRINGS}
    return build_event(CATALOG, "grievance.created", data, event_id="evt_t", now=NOW).body


def test_tampered_signature_gets_401(receiver: Receiver) -> None:
    body = _event_body()
    headers = signature_headers(as_secrets([receiver.secret]), "evt_t", NOW, body)
    good = headers[SIGNATURE_HEADER]
    flipped = good[:-1] + ("0" if good[-1] != "0" else "1")
    response = receiver.post(body, {**headers, SIGNATURE_HEADER: flipped})
    assert (response.status_code, response.text) == (401, "Invalid signature")
    other = signature_headers(as_secrets(["whsec_c29tZS1vdGhlci1zZWNyZXQ="]), "evt_t", NOW, body)
    assert receiver.post(body, other).status_code == 401
    _check_ok(receiver.post(body, headers))  # the untouched request still passes


def test_tampered_body_gets_401(receiver: Receiver) -> None:
    body = _event_body()
    headers = signature_headers(as_secrets([receiver.secret]), "evt_t", NOW, body)
    changed = body.replace(b'"status":"open"', b'"status":"shut"', 1)
    assert changed != body
    assert receiver.post(changed, headers).status_code == 401


def test_non_canonical_bytes_fail_even_when_signed_over_exactly(receiver: Receiver) -> None:
    # Why the body must be canonical: the receiver signs its own re-serialisation.
    value = json.loads(_event_body())
    value["data"]["metadata"] = {"small": 1e-7, "नाम": "राजेश"}
    for body in (
        json.dumps(value).encode(),  # spaces and \u escapes
        json.dumps(value, separators=(",", ":")).encode(),  # \u escapes, 1e-07
        json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(),  # 1e-07
    ):
        assert body != canonical_json(value)
        assert receiver.deliver(body).status_code == 401
    _check_ok(receiver.deliver(canonical_json(value)))
