"""The endpoint state machine, the verification handshake, secret rotation, event
filters, and URL and header validation."""

from __future__ import annotations

import copy
import json
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook_core import endpoint_machine
from webhook_core.endpoint_machine import (
    TRANSITIONS,
    BeginVerification,
    ChangeUrl,
    DeliveryOutcome,
    Disable,
    Enable,
    Endpoint,
    EndpointInput,
    EndpointSecret,
    EndpointState,
    HandshakeResult,
    HealthPolicy,
    rotate_secret,
    token_matches,
)
from webhook_core.errors import ConfigError, IllegalTransition, InvalidEventName
from webhook_core.urls import MAX_URL_LENGTH, validate_headers, validate_url

U = EndpointState.UNVERIFIED
V = EndpointState.VERIFYING
A = EndpointState.ACTIVE
X = EndpointState.DISABLED

INPUT_KINDS: tuple[type, ...] = (
    BeginVerification,
    HandshakeResult,
    Disable,
    Enable,
    ChangeUrl,
    DeliveryOutcome,
)
HEALTH = HealthPolicy(max_failures=3, period=100.0)
TOKEN = "tok_3f9a2c"


def new_endpoint(url: str = "https://example.com/hook", **kwargs: Any) -> Endpoint:
    return Endpoint("ep_1", url, (EndpointSecret("s3cret", 0.0),), 0.0, **kwargs)


def verified_endpoint() -> Endpoint:
    e = endpoint_machine.apply(new_endpoint(), BeginVerification(TOKEN, 1.0))
    return endpoint_machine.apply(e, HandshakeResult(2.0, 200, TOKEN.encode()))


# --- hypothesis: every (state, input) pair ---------------------------------------------

tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12)
urls = st.sampled_from(
    ["https://example.com/hook", "https://example.org/a", "https://hooks.example.net/x"]
)


@st.composite
def handshake_results(draw: st.DrawFn, token: str | None, now: float) -> HandshakeResult:
    """An answer to the handshake: good (both forms), wrong, malformed, non-2xx or error."""
    token = token or "unknown"
    kind = draw(st.sampled_from(["plain", "json", "wrong", "missing", "status", "bytes", "error"]))
    if kind == "plain":
        pad = draw(st.sampled_from(["", " ", "\n", " \r\n\t"]))
        return HandshakeResult(now, draw(st.integers(200, 299)), f"{pad}{token}{pad}".encode())
    if kind == "json":
        body = json.dumps({"verification_token": token, "x": draw(st.integers())})
        return HandshakeResult(now, draw(st.integers(200, 299)), body.encode())
    if kind == "wrong":
        return HandshakeResult(now, 200, (token + "x").encode())
    if kind == "missing":
        return HandshakeResult(now, 200, b'{"token": "' + token.encode() + b'"}')
    if kind == "status":
        status = draw(st.one_of(st.integers(100, 199), st.integers(300, 599)))
        return HandshakeResult(now, status, token.encode())
    if kind == "bytes":
        return HandshakeResult(now, 200, draw(st.binary(max_size=40)))
    return HandshakeResult(now, None, b"", error=draw(st.sampled_from(["timeout", "refused"])))


def handshake_ok(result: HandshakeResult, token: str) -> bool:
    """The oracle: does this answer verify ``token``? (written independently of the code)"""
    if result.error is not None or result.status is None or not 200 <= result.status <= 299:
        return False
    if len(result.body) > 4096:
        return False
    try:
        text = result.body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if text.strip() == token:
        return True
    try:
        parsed = json.loads(text)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("verification_token") == token


@st.composite
def any_input(draw: st.DrawFn, kind: type, e: Endpoint, now: float) -> EndpointInput:
    if kind is BeginVerification:
        return BeginVerification(draw(tokens), now)
    if kind is HandshakeResult:
        return draw(handshake_results(e.verification_token, now))
    if kind is Disable:
        return Disable(draw(st.sampled_from(["operator", "410 Gone"])), now)
    if kind is Enable:
        return Enable(now)
    if kind is DeliveryOutcome:
        return DeliveryOutcome(draw(st.booleans()), now, HEALTH)
    return ChangeUrl(draw(urls), now)


@st.composite
def endpoint_in(draw: st.DrawFn, target: EndpointState) -> tuple[Endpoint, bool, float]:
    """An endpoint in ``target`` after a random walk of legal inputs.

    Also returns the model's view of whether the current URL is verified (a
    handshake succeeded for it and no failed handshake or URL change came since).
    """
    now = 0.0
    e = new_endpoint(draw(urls))
    verified = False

    def feed(e: Endpoint, kind: type) -> Endpoint:
        nonlocal now, verified
        now += draw(st.floats(0, 100, allow_nan=False))
        event = draw(any_input(kind, e, now))
        new = endpoint_machine.apply(e, event)
        if isinstance(event, HandshakeResult):
            verified = new.state is A
        elif isinstance(event, ChangeUrl):
            verified = False
        return new

    for _ in range(draw(st.integers(0, 10))):
        legal = [k for k in INPUT_KINDS if (e.state, k) in TRANSITIONS]
        e = feed(e, draw(st.sampled_from(legal)))

    # Steer to the target with legal inputs only.
    for _ in range(10):
        if e.state is target:
            break
        if target is X:
            e = feed(e, Disable)
        elif e.state is X:
            e = feed(e, Enable)
        elif target is U:
            e = feed(e, ChangeUrl)
        elif e.state is V:
            if target is A:
                token = e.verification_token
                assert token is not None
                e = endpoint_machine.apply(e, HandshakeResult(now, 200, token.encode()))
                verified = True
        else:
            e = feed(e, BeginVerification)
    assert e.state is target, (e.state, target)
    return e, verified, now


@pytest.mark.parametrize("kind", INPUT_KINDS, ids=lambda k: k.__name__)
@pytest.mark.parametrize("state", list(EndpointState), ids=lambda s: s.value)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_state_and_input(state: EndpointState, kind: type, data: st.DataObject) -> None:
    e, verified, now = data.draw(endpoint_in(state))
    # Invariants of every reachable record.
    if e.state is A:
        assert e.verified_url == e.url
    assert (e.verification_token is not None) == (e.state is V)
    event = data.draw(any_input(kind, e, now + 1.0))
    before = copy.copy(e)  # fields are immutable; the HMAC states inside cannot be deep-copied
    before_dict = attrs.asdict(e)
    allowed = TRANSITIONS.get((state, kind))
    if allowed is None:
        with pytest.raises(IllegalTransition) as info:
            endpoint_machine.apply(e, event)
        assert info.value.state == state.value
        assert info.value.input == kind.__name__
        assert e == before
        assert attrs.asdict(e) == before_dict
        assert e.state is state
        return

    new = endpoint_machine.apply(e, event)
    assert new.state in allowed
    assert e == before
    assert attrs.asdict(e) == before_dict
    assert (new.id, new.secrets, new.filters, new.headers) == (
        e.id,
        e.secrets,
        e.filters,
        e.headers,
    )
    if isinstance(event, BeginVerification):
        assert new.state is V
        assert new.verification_token == event.token
        assert new.last_error is None
    elif isinstance(event, HandshakeResult):
        assert e.verification_token is not None
        if handshake_ok(event, e.verification_token):
            assert new.state is A
            assert new.verified_url == new.url
            assert new.last_error is None
        else:
            assert new.state is U
            assert new.last_error is not None
            assert new.last_error.startswith("verification failed: ")
        assert new.verification_token is None
    elif isinstance(event, Disable):
        assert new.state is X
        assert new.disabled_reason == event.reason
    elif isinstance(event, Enable):
        assert new.state is (A if verified else U)
        assert new.disabled_reason is None
        assert (new.failures, new.failing_since) == (0, None)
    elif isinstance(event, DeliveryOutcome):
        if state is X:
            assert new == e
        elif event.delivered:
            assert new.state is state
            assert (new.failures, new.failing_since) == (0, None)
        else:
            assert new.failures == e.failures + 1
            since = new.failing_since
            assert since == (event.now if e.failing_since is None else e.failing_since)
            tripped = new.failures >= HEALTH.max_failures and event.now - since >= HEALTH.period
            assert new.state is (X if tripped else state)
    else:
        assert new.url == event.url
        assert (new.failures, new.failing_since) == (0, None)
        assert new.state is (X if state is X else U)
        assert new.verified_url is None


# --- the handshake ---------------------------------------------------------------------


@pytest.mark.parametrize("state", list(EndpointState), ids=lambda s: s.value)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_apply_outcomes_is_one_delivery_outcome_at_a_time(
    state: EndpointState, data: st.DataObject
) -> None:
    """The batch form skips only what would change nothing."""
    e, _, now = data.draw(endpoint_in(state))
    gaps = st.floats(0, 60, allow_nan=False)
    outcomes = []
    for delivered in data.draw(st.lists(st.booleans(), max_size=12)):
        now += data.draw(gaps)
        outcomes.append((delivered, now))
    one_by_one = e
    for delivered, at in outcomes:
        one_by_one = endpoint_machine.apply(one_by_one, DeliveryOutcome(delivered, at, HEALTH))
    assert endpoint_machine.apply_outcomes(e, outcomes, HEALTH) == one_by_one


def handshake(status: int | None, body: bytes, error: str | None = None) -> Endpoint:
    e = endpoint_machine.apply(new_endpoint(), BeginVerification(TOKEN, 1.0))
    assert e.state is V
    return endpoint_machine.apply(e, HandshakeResult(2.0, status, body, error))


@pytest.mark.parametrize(
    "body",
    [
        TOKEN.encode(),
        f"  {TOKEN}\n".encode(),
        f"\r\n\t{TOKEN} \r\n".encode(),
        json.dumps({"verification_token": TOKEN}).encode(),
        json.dumps({"ok": True, "verification_token": TOKEN}, indent=2).encode(),
        b"  " + json.dumps({"verification_token": TOKEN}).encode() + b"\n",
    ],
)
def test_handshake_accepts_the_token(body: bytes) -> None:
    e = handshake(200, body)
    assert e.state is A
    assert e.verified_url == "https://example.com/hook"
    assert e.verification_token is None
    assert e.last_error is None


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_handshake_accepts_any_2xx(status: int) -> None:
    assert handshake(status, TOKEN.encode()).state is A


@pytest.mark.parametrize(
    ("status", "body", "error", "reason"),
    [
        (200, b"tok_wrong", None, "answer body is neither the token nor JSON"),
        (200, b'"' + TOKEN.encode() + b'"', None, "answer does not carry the verification token"),
        (200, b"{}", None, "answer does not carry the verification token"),
        (200, b'{"token": "tok_3f9a2c"}', None, "answer does not carry the verification token"),
        (
            200,
            b'{"verification_token": "nope"}',
            None,
            "answer does not carry the verification token",
        ),
        (200, b'["tok_3f9a2c"]', None, "answer does not carry the verification token"),
        (200, b"", None, "answer body is neither the token nor JSON"),
        (200, b"tok_3f9a2c\xff", None, "answer body is not UTF-8"),
        (200, b"\xfe\xff", None, "answer body is not UTF-8"),
        (200, TOKEN.encode() + b" " * 4096, None, "answer body is too large to hold the token"),
        (200, b"[" * 4000, None, "answer body is neither the token nor JSON"),
        (301, TOKEN.encode(), None, "answered HTTP 301, not 2xx"),
        (404, TOKEN.encode(), None, "answered HTTP 404, not 2xx"),
        (500, TOKEN.encode(), None, "answered HTTP 500, not 2xx"),
        (199, TOKEN.encode(), None, "answered HTTP 199, not 2xx"),
        (None, b"", None, "no HTTP response"),
        (None, b"", "connection refused", "connection refused"),
        (200, TOKEN.encode(), "timed out after 30 s", "timed out after 30 s"),
    ],
)
def test_handshake_refusals(
    status: int | None, body: bytes, error: str | None, reason: str
) -> None:
    e = handshake(status, body, error)
    assert e.state is U
    assert e.verified_url is None
    assert e.verification_token is None
    assert e.last_error is not None
    assert e.last_error.startswith(f"verification failed: {reason}")
    if status is None or error is not None:
        assert e.last_error == f"verification failed: {reason}"
    else:  # what the receiver answered, at most 200 characters of it, is shown too
        shown = body.decode("utf-8", "replace").strip()[:200]
        assert f"(the receiver answered HTTP {status}: {shown!r}"[:-1] in e.last_error
        assert len(e.last_error) < len(reason) + 300


def test_token_matches_literals() -> None:
    assert token_matches("abc", 200, b"abc") is None
    assert token_matches("abc", 200, b' {"verification_token": "abc"} ') is None
    assert token_matches("abc", 200, b"abcd") == "answer body is neither the token nor JSON"
    assert token_matches("abc", 302, b"abc") == "answered HTTP 302, not 2xx"
    assert token_matches("abc", 200, b"a" * 4097) == "answer body is too large to hold the token"
    assert token_matches("abc", 200, b"abc" + b" " * 4093) is None  # exactly 4096 bytes


def test_empty_token_is_refused() -> None:
    e = new_endpoint()
    with pytest.raises(ConfigError, match="must not be empty"):
        endpoint_machine.apply(e, BeginVerification("", 1.0))
    assert e.state is U


def test_failed_handshake_can_be_retried() -> None:
    e = handshake(500, b"")
    assert e.state is U
    e = endpoint_machine.apply(e, BeginVerification("tok_second", 3.0))
    assert e.state is V
    assert e.last_error is None
    e = endpoint_machine.apply(e, HandshakeResult(4.0, 200, b"tok_second"))
    assert e.state is A


def test_stale_token_does_not_verify_a_new_handshake() -> None:
    e = endpoint_machine.apply(new_endpoint(), BeginVerification("tok_first", 1.0))
    e = endpoint_machine.apply(e, BeginVerification("tok_second", 2.0))
    e = endpoint_machine.apply(e, HandshakeResult(3.0, 200, b"tok_first"))
    assert e.state is U


# --- disable, enable, change URL -------------------------------------------------------


def test_disable_enable_round_trip_of_a_verified_endpoint() -> None:
    e = verified_endpoint()
    disabled = endpoint_machine.apply(e, Disable("operator pressed stop", 5.0))
    assert disabled.state is X
    assert disabled.disabled_reason == "operator pressed stop"
    enabled = endpoint_machine.apply(disabled, Enable(6.0))
    assert enabled.state is A
    assert enabled.disabled_reason is None
    assert enabled.verified_url == enabled.url


def test_enable_of_a_never_verified_endpoint_goes_to_unverified() -> None:
    e = endpoint_machine.apply(new_endpoint(), Disable("410 Gone", 1.0))
    assert endpoint_machine.apply(e, Enable(2.0)).state is U
    # Disabled while the handshake was in flight: still unverified, token forgotten.
    e = endpoint_machine.apply(new_endpoint(), BeginVerification(TOKEN, 1.0))
    e = endpoint_machine.apply(e, Disable("operator", 2.0))
    assert e.verification_token is None
    assert endpoint_machine.apply(e, Enable(3.0)).state is U


def test_enable_after_a_failed_reverification_does_not_activate() -> None:
    # Active, re-verified with a failing handshake: the URL is unverified now, and
    # Disable then Enable must not sneak it back to active without a handshake.
    e = endpoint_machine.apply(verified_endpoint(), BeginVerification("tok_again", 3.0))
    e = endpoint_machine.apply(e, HandshakeResult(4.0, 500, b""))
    assert e.state is U
    e = endpoint_machine.apply(e, Disable("operator", 5.0))
    assert endpoint_machine.apply(e, Enable(6.0)).state is U


def test_change_url_forgets_verification() -> None:
    e = endpoint_machine.apply(verified_endpoint(), ChangeUrl("https://example.org/new", 5.0))
    assert e.state is U
    assert e.url == "https://example.org/new"
    assert e.verified_url is None
    # Changing back to the old URL does not restore the old verification either.
    e = endpoint_machine.apply(e, ChangeUrl("https://example.com/hook", 6.0))
    assert e.state is U


def test_change_url_while_disabled_stays_disabled_then_needs_verifying() -> None:
    e = endpoint_machine.apply(verified_endpoint(), Disable("operator", 5.0))
    e = endpoint_machine.apply(e, ChangeUrl("https://example.org/new", 6.0))
    assert e.state is X
    assert e.verified_url is None
    assert endpoint_machine.apply(e, Enable(7.0)).state is U


def test_change_url_during_handshake_cancels_it() -> None:
    e = endpoint_machine.apply(new_endpoint(), BeginVerification(TOKEN, 1.0))
    e = endpoint_machine.apply(e, ChangeUrl("https://example.org/new", 2.0))
    assert e.state is U
    assert e.verification_token is None
    with pytest.raises(IllegalTransition):
        endpoint_machine.apply(e, HandshakeResult(3.0, 200, TOKEN.encode()))


# --- secrets ---------------------------------------------------------------------------


def values(secrets: tuple[Any, ...]) -> list[str]:
    return [s.value for s in secrets]


def test_rotation_keeps_the_old_secret_until_the_grace_expires() -> None:
    e = Endpoint("ep_1", "https://example.com/h", (EndpointSecret("old", 0.0),), 0.0)
    assert values(e.signing_secrets(50.0)) == ["old"]
    rotated = rotate_secret(e, "new", 100.0, grace=3600.0)
    assert values(e.signing_secrets(100.0)) == ["old"]  # the original is unchanged
    assert rotated.secrets[0].value == "new"
    assert rotated.secrets[1].expires_at == 3700.0
    assert values(rotated.signing_secrets(100.0)) == ["new", "old"]
    assert values(rotated.signing_secrets(3699.999)) == ["new", "old"]
    assert values(rotated.signing_secrets(3700.0)) == ["new"]
    assert values(rotated.signing_secrets(1e9)) == ["new"]


def test_rotation_twice() -> None:
    e = Endpoint("ep_1", "https://example.com/h", (EndpointSecret("s1", 0.0),), 0.0)
    e = rotate_secret(e, "s2", 100.0, grace=1000.0)  # s1 until 1100
    e = rotate_secret(e, "s3", 200.0, grace=50.0)  # s2 until 250, s1 until min(1100, 250)
    assert [(s.value, s.expires_at) for s in e.secrets] == [
        ("s3", None),
        ("s2", 250.0),
        ("s1", 250.0),
    ]
    assert values(e.signing_secrets(249.0)) == ["s3", "s2", "s1"]
    assert values(e.signing_secrets(250.0)) == ["s3"]
    # A later rotation drops secrets that have expired.
    e = rotate_secret(e, "s4", 300.0, grace=10.0)
    assert values(e.secrets) == ["s4", "s3"]


def test_rotation_keeps_an_earlier_expiry_at_zero() -> None:
    # An expiry at 0.0 is a time like any other (it used to be read as "no expiry").
    e = Endpoint(
        "ep_1",
        "https://example.com/h",
        (EndpointSecret("s2", -100.0), EndpointSecret("s1", -200.0, expires_at=0.0)),
        -200.0,
    )
    rotated = rotate_secret(e, "s3", -50.0, grace=500.0)
    assert [(s.value, s.expires_at) for s in rotated.secrets] == [
        ("s3", None),
        ("s2", 450.0),
        ("s1", 0.0),
    ]


def test_rotation_with_zero_grace_drops_the_old_secret_at_once() -> None:
    e = Endpoint("ep_1", "https://example.com/h", (EndpointSecret("old", 0.0),), 0.0)
    rotated = rotate_secret(e, "new", 100.0, grace=0.0)
    assert values(rotated.signing_secrets(100.0)) == ["new"]


@pytest.mark.parametrize("grace", [-1.0, float("nan")])
def test_rotation_refuses_bad_grace(grace: float) -> None:
    e = new_endpoint()
    with pytest.raises(ConfigError):
        rotate_secret(e, "new", 100.0, grace=grace)


def test_endpoint_needs_a_valid_secret() -> None:
    with pytest.raises(ConfigError, match="at least one secret"):
        Endpoint("ep_1", "https://example.com/h", (), 0.0)
    with pytest.raises(ConfigError):
        EndpointSecret("", 0.0)
    with pytest.raises(ConfigError):
        rotate_secret(new_endpoint(), "bad\nsecret", 1.0, grace=10.0)


# --- filters ---------------------------------------------------------------------------


def test_exact_filter() -> None:
    e = new_endpoint(filters=("message.sent",))
    assert e.subscribes_to("message.sent")
    assert not e.subscribes_to("message.delivered")
    assert not e.subscribes_to("message.sent.extra")
    assert not e.subscribes_to("message")


def test_prefix_filter() -> None:
    e = new_endpoint(filters="message.*")
    assert e.filters == ("message.*",)
    assert e.subscribes_to("message.sent")
    assert e.subscribes_to("message.read")
    assert e.subscribes_to("message.sub.deeper")
    assert not e.subscribes_to("message")
    assert not e.subscribes_to("messages.sent")
    assert not e.subscribes_to("payment.failed")


def test_wildcard_filter_and_default() -> None:
    for e in (new_endpoint(filters=("*",)), new_endpoint()):
        assert e.filters == ("*",)
        for name in ("message.sent", "campaign.failed", "custom.thing.happened"):
            assert e.subscribes_to(name)


def test_several_filters() -> None:
    e = new_endpoint(filters=["payment.failed", "grievance.*"])
    assert e.subscribes_to("payment.failed")
    assert e.subscribes_to("grievance.created")
    assert not e.subscribes_to("payment.processed")


@pytest.mark.parametrize(
    "pattern",
    [
        "Message.sent",
        "message.",
        ".sent",
        "message..sent",
        "*.sent",
        "message.*.sent",
        "message*",
        "**",
        "",
        "message sent",
        "1message.sent",
        "message.sent ",
        "a" * 257,
    ],
)
def test_invalid_filters_are_refused(pattern: str) -> None:
    with pytest.raises(InvalidEventName):
        new_endpoint(filters=(pattern,))


def test_empty_filter_list_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least one event pattern"):
        new_endpoint(filters=())


# --- URLs and headers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "https://example.com",
        "HTTPS://Example.COM/Hook?x=1&y=2",
        "https://example.com:8443/a/b",
        "https://127.0.0.1/x",
        "https://[2001:db8::1]:443/x",
        "https://example.com:65535/",
        "https://example.com/" + "a" * (MAX_URL_LENGTH - 20),
    ],
)
def test_valid_urls(url: str) -> None:
    assert validate_url(url) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/hook", "plain http"),
        ("ftp://example.com/", "must use https"),
        ("example.com/hook", "must use https"),
        ("https://user:pw@example.com/", "user info"),
        ("https://user@example.com/", "user info"),
        ("https://@example.com/", "user info"),
        ("https://example.com/hook#frag", "fragment"),
        ("https://example.com/hook#", "fragment"),
        ("https:///path", "no host"),
        ("https://:443/path", "no host"),
        ("https://example.com:0/", "port 0"),
        ("https://example.com:65536/", "outside 1-65535"),
        ("https://example.com:port/", "not a number"),
        ("https://[::1/", "malformed"),
        ("https://exa mple.com/", "spaces"),
        ("https://example.com/a b", "spaces"),
        ("https://example.com/\t", "spaces"),
        ("https://example.com/\x7f", "control"),
        ("https://example.com/bücher", "non-ASCII"),
        ("https://example.com/" + "a" * MAX_URL_LENGTH, "longer than 2048"),
    ],
)
def test_invalid_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_url(url)


def test_http_only_when_allowed() -> None:
    assert validate_url("http://localhost:8000/hook", allow_http=True) == (
        "http://localhost:8000/hook"
    )
    with pytest.raises(ConfigError, match="allow_http"):
        validate_url("http://localhost:8000/hook")
    with pytest.raises(ConfigError, match="must be a string"):
        validate_url(b"https://example.com/")


def test_valid_headers() -> None:
    assert validate_headers({"X-Team": "payments", "Authorization": "Bearer a b\tc"}) == (
        ("X-Team", "payments"),
        ("Authorization", "Bearer a b\tc"),
    )
    assert validate_headers([("X-A", "1"), ("X-A", "2")]) == (("X-A", "1"), ("X-A", "2"))
    assert validate_headers({}) == ()


@pytest.mark.parametrize(
    "name",
    [
        "Host",
        "host",
        "CONTENT-TYPE",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "user-agent",
        "Webhook-Id",
        "WEBHOOK-TIMESTAMP",
        "webhook-signature",
        "x-netasampark-signature",
        "X-NETASAMPARK-EVENT",
        "X-Netasampark-Delivery",
        "x-NetaSampark-attempt",
    ],
)
def test_reserved_headers_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="set by the library"):
        validate_headers({name: "x"})


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X-A": "a\r\nX-Injected: 1"}, "CR, LF or NUL"),
        ({"X-A": "a\nb"}, "CR, LF or NUL"),
        ({"X-A": "a\rb"}, "CR, LF or NUL"),
        ({"X-A": "a\x00b"}, "CR, LF or NUL"),
        ({"X-A": "a\x01b"}, "control or non-ASCII"),
        ({"X-A": "a\x7fb"}, "control or non-ASCII"),
        ({"X-A": "café"}, "control or non-ASCII"),
        ({"X-A": " padded"}, "leading or trailing whitespace"),
        ({"X-A": "padded\t"}, "leading or trailing whitespace"),
        ({"X-A": "x" * 4097}, "longer than 4096"),
        ({"X A": "x"}, "not a valid HTTP token"),
        ({"X-A:": "x"}, "not a valid HTTP token"),
        ({"X-Ä": "x"}, "not a valid HTTP token"),
        ({"": "x"}, "not a valid HTTP token"),
        ({"X-A\r\n": "x"}, "not a valid HTTP token"),
        ({"X(A)": "x"}, "not a valid HTTP token"),
        ([(1, "x")], "not a valid HTTP token"),
        ([("X-A", 1)], "not a string"),
    ],
)
def test_invalid_headers_are_refused(headers: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_headers(headers)


# --- health: a run of failed deliveries disables ---------------------------------------


def outcomes(e: Endpoint, policy: HealthPolicy, *steps: tuple[bool, float]) -> Endpoint:
    for delivered, now in steps:
        e = endpoint_machine.apply(e, DeliveryOutcome(delivered, now, policy))
    return e


def test_a_long_run_of_failures_disables_the_endpoint() -> None:
    policy = HealthPolicy(max_failures=3, period=3600.0)
    e = outcomes(verified_endpoint(), policy, (False, 100.0), (False, 200.0), (False, 3699.0))
    assert e.state is A  # three failures, but over less than an hour
    assert (e.failures, e.failing_since) == (3, 100.0)
    e = outcomes(e, policy, (False, 3700.0))
    assert e.state is X
    assert (
        e.disabled_reason == "4 deliveries in a row failed over 1.0 hours (limit 3 over 1.0 hours)"
    )


def test_many_failures_in_a_short_time_do_not_disable() -> None:
    policy = HealthPolicy(max_failures=3, period=86_400.0)
    e = outcomes(verified_endpoint(), policy, *[(False, 10.0 + i) for i in range(100)])
    assert e.state is A and e.failures == 100


def test_a_long_time_with_few_failures_does_not_disable() -> None:
    policy = HealthPolicy(max_failures=10, period=60.0)
    e = outcomes(verified_endpoint(), policy, (False, 0.0), (False, 10_000.0), (False, 90_000.0))
    assert e.state is A and e.failures == 3


def test_a_delivery_clears_the_run() -> None:
    policy = HealthPolicy(max_failures=2, period=100.0)
    e = outcomes(verified_endpoint(), policy, (False, 0.0), (True, 150.0), (False, 200.0))
    assert e.state is A
    assert (e.failures, e.failing_since) == (1, 200.0)
    e = outcomes(e, policy, (False, 300.0))
    assert e.state is X


def test_enable_and_change_url_start_a_fresh_run() -> None:
    policy = HealthPolicy(max_failures=2, period=0.0)
    e = outcomes(verified_endpoint(), policy, (False, 1.0), (False, 2.0))
    assert e.state is X
    e = outcomes(e, policy, (False, 3.0))  # a disabled endpoint ignores outcomes
    assert e.failures == 2
    e = endpoint_machine.apply(e, Enable(4.0))
    assert e.state is A and e.failures == 0 and e.failing_since is None
    e = outcomes(e, policy, (False, 5.0))
    e = endpoint_machine.apply(e, ChangeUrl("https://example.org/new", 6.0))
    assert e.failures == 0 and e.failing_since is None


def test_a_healthy_outcome_returns_the_same_record() -> None:
    e = verified_endpoint()
    assert endpoint_machine.apply(e, DeliveryOutcome(True, 5.0)) is e


@given(
    steps=st.lists(st.tuples(st.booleans(), st.floats(0, 10_000, allow_nan=False)), max_size=40),
    max_failures=st.integers(1, 6),
    period=st.floats(0, 30_000, allow_nan=False),
)
def test_health_matches_a_model(
    steps: list[tuple[bool, float]], max_failures: int, period: float
) -> None:
    policy = HealthPolicy(max_failures, period)
    e = verified_endpoint()
    now = 0.0
    run: list[float] = []  # times of the failures since the last delivery
    disabled_at: int | None = None
    for index, (delivered, gap) in enumerate(steps):
        now += gap
        e = endpoint_machine.apply(e, DeliveryOutcome(delivered, now, policy))
        if disabled_at is not None:
            continue
        run = [] if delivered else [*run, now]
        if len(run) >= max_failures and now - run[0] >= period:
            disabled_at = index
    assert (e.state is X) == (disabled_at is not None)
    if disabled_at is None:
        assert e.failures == len(run)
        assert e.failing_since == (run[0] if run else None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_failures": 0}, "max_failures"),
        ({"max_failures": 2.5}, "max_failures"),
        ({"max_failures": True}, "max_failures"),
        ({"period": -1.0}, "period"),
        ({"period": float("inf")}, "period"),
        ({"period": float("nan")}, "period"),
        ({"period": "1 day"}, "period"),
    ],
)
def test_bad_health_policies_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HealthPolicy(**kwargs)
