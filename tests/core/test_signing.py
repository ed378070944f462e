"""Signature headers and the Verifier: HMAC correctness, Standard Webhooks interop, rotation,
tolerance, and that every malformed input raises VerificationError and nothing else."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import httpx
import pytest
import standardwebhooks
import svix.webhooks
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhook_core.catalog import platform_catalog
from webhook_core.envelope import build_event
from webhook_core.errors import ConfigError, VerificationError
from webhook_core.signing import (
    DEFAULT_TOLERANCE,
    SIGNATURE_HEADER,
    HmacKey,
    Secret,
    VerifiedRequest,
    Verifier,
    as_secrets,
    platform_signature,
    signature_headers,
    standard_signature,
)

NOW = 1_700_000_000
MSG_ID = "msg_2a1b3c"
KEY_A = bytes(range(1, 33))
KEY_B = bytes(range(101, 125))
KEY_C = b"\xff" * 40
SECRET_A = "whsec_" + base64.b64encode(KEY_A).decode()
SECRET_B = "whsec_" + base64.b64encode(KEY_B).decode()
SECRET_C = "whsec_" + base64.b64encode(KEY_C).decode()
PLAIN_SECRET = "my-shared-secret-राज"  # not whsec_: used as its UTF-8 bytes for both schemes

BODY = build_event(
    platform_catalog(),
    "message.delivered",
    {"message_id": "msg_123", "channel": "whatsapp", "to": "+919876543210", "status": "delivered"},
    event_id=MSG_ID,
    now=NOW,
).body


def secrets(*values: str) -> tuple[Secret, ...]:
    return as_secrets(values)


def headers_for(
    body: bytes = BODY, *values: str, msg_id: str = MSG_ID, timestamp: int = NOW
) -> dict[str, str]:
    return signature_headers(secrets(*(values or (SECRET_A,))), msg_id, timestamp, body)


def raw_v1(key: bytes, msg_id: str, stamp: str, body: bytes) -> str:
    """A ``v1`` signature over exactly ``msg_id.stamp.body``, whatever the strings hold."""
    message = f"{msg_id}.{stamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.digest(key, message, "sha256")).decode()


def raw_platform(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


VERIFIER_A = Verifier([SECRET_A])


def test_baseline_request_verifies() -> None:
    headers = headers_for()
    assert set(headers) == {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        SIGNATURE_HEADER,
    }
    assert headers["webhook-id"] == MSG_ID
    assert headers["webhook-timestamp"] == str(NOW)
    assert headers["webhook-signature"] == raw_v1(KEY_A, MSG_ID, str(NOW), BODY)
    assert headers[SIGNATURE_HEADER] == raw_platform(SECRET_A, BODY)
    assert VERIFIER_A.verify(BODY, headers, NOW) == VerifiedRequest(MSG_ID, NOW, "standard")
    VERIFIER_A.verify_platform(BODY, headers)
    assert 150 <= len(BODY) <= 220


# --- (a) HmacKey is HMAC-SHA256 ------------------------------------------------------------


@settings(max_examples=500)
@given(
    key=st.one_of(
        st.binary(max_size=200),
        st.sampled_from([b"", b"k", b"\x00" * 64, b"x" * 63, b"x" * 64, b"x" * 65, b"y" * 1000]),
    ),
    message=st.binary(max_size=3000),
)
def test_hmac_key_digest_equals_hmac_digest(key: bytes, message: bytes) -> None:
    prepared = HmacKey(key)
    assert prepared.digest(message) == hmac.digest(key, message, "sha256")
    # The prepared key is reusable: the second call must not see the first message.
    assert prepared.digest(b"other") == hmac.digest(key, b"other", "sha256")


@given(key=st.binary(min_size=16, max_size=100), body=st.binary(max_size=500))
def test_helper_signatures_match_hmac(key: bytes, body: bytes) -> None:
    secret = Secret.parse("whsec_" + base64.b64encode(key).decode())
    assert secret.standard_key == key
    assert secret.platform_key == secret.value.encode()
    assert standard_signature(secret, "id_1", 42, body) == raw_v1(key, "id_1", "42", body)
    assert platform_signature(secret, body) == raw_platform(secret.value, body)


# --- secrets -------------------------------------------------------------------------------


@given(key=st.binary(min_size=16, max_size=100))
def test_whsec_secret_with_or_without_padding(key: bytes) -> None:
    encoded = base64.b64encode(key).decode()
    assert Secret.parse("whsec_" + encoded).standard_key == key
    assert Secret.parse("whsec_" + encoded.rstrip("=")).standard_key == key


def test_plain_secret_uses_utf8_bytes_for_both_schemes() -> None:
    secret = Secret.parse(PLAIN_SECRET)
    assert secret.standard_key == secret.platform_key == PLAIN_SECRET.encode()


@pytest.mark.parametrize(
    "value",
    [
        "",
        "whsec_",
        "whsec_!!!!",
        "whsec_" + base64.b64encode(b"short").decode(),  # fewer than 16 bytes
        "whsec_" + base64.b64encode(KEY_A).decode() + "=",  # too much padding
        "whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 12).decode(),  # not standard base64
        "line\nbreak",
        "carriage\rreturn",
        "nul\x00",
        "x" * 1025,
        None,
        b"bytes-secret",
    ],
)
def test_bad_secrets_are_refused(value: Any) -> None:
    with pytest.raises(ConfigError):
        Secret.parse(value)


def test_config_errors() -> None:
    with pytest.raises(ConfigError):
        as_secrets([])
    with pytest.raises(ConfigError):
        Verifier([])
    for tolerance in (-1.0, float("nan")):
        with pytest.raises(ConfigError):
            Verifier([SECRET_A], tolerance=tolerance)


def test_secret_repr_does_not_leak() -> None:
    secret = Secret.parse(SECRET_A)
    assert SECRET_A not in repr(secret)
    assert SECRET_A[6:20] not in repr(secret)


# --- (b) interop with the standardwebhooks and svix packages -------------------------------

ids = st.from_regex(r"[A-Za-z0-9_\-:]{1,64}", fullmatch=True)
utf8_bodies = st.one_of(
    st.text(max_size=400).map(str.encode),
    st.sampled_from([BODY, '{"नाम":"राजेश कुमार"}'.encode(), b"{}"]),
)
keys = st.binary(min_size=16, max_size=80)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(key=keys, msg_id=ids, body=utf8_bodies, padded=st.booleans())
def test_standardwebhooks_accepts_our_headers(
    key: bytes, msg_id: str, body: bytes, padded: bool
) -> None:
    encoded = base64.b64encode(key).decode()
    secret = "whsec_" + (encoded if padded else encoded.rstrip("="))
    now = int(time.time())
    headers = signature_headers(as_secrets([secret]), msg_id, now, body)
    standardwebhooks.Webhook(secret).verify(body, headers, json_parse=False)
    svix.webhooks.Webhook(secret).verify(body, headers)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(key=keys, msg_id=ids, body=utf8_bodies, offset=st.integers(-300, 300))
def test_we_accept_standardwebhooks_signatures(
    key: bytes, msg_id: str, body: bytes, offset: int
) -> None:
    secret = "whsec_" + base64.b64encode(key).decode()
    timestamp = NOW + offset
    signature = standardwebhooks.Webhook(secret).sign(
        msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body.decode()
    )
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }
    result = Verifier([secret]).verify(body, headers, NOW)
    assert result == VerifiedRequest(msg_id, timestamp, "standard")
    # A verifier with another key must refuse the same request.
    with pytest.raises(VerificationError):
        Verifier([SECRET_C if key != KEY_C else SECRET_B]).verify(body, headers, NOW)


def test_plain_secret_interop_uses_the_raw_bytes_as_key() -> None:
    now = int(time.time())
    headers = signature_headers(as_secrets([PLAIN_SECRET]), MSG_ID, now, BODY)
    standardwebhooks.Webhook(PLAIN_SECRET.encode()).verify(BODY, headers)
    signature = standardwebhooks.Webhook(PLAIN_SECRET.encode()).sign(
        MSG_ID, datetime.fromtimestamp(now, tz=UTC), BODY.decode()
    )
    own = {"webhook-id": MSG_ID, "webhook-timestamp": str(now), "webhook-signature": signature}
    assert Verifier([PLAIN_SECRET]).verify(BODY, own, now).scheme == "standard"


def test_svix_style_signature_header_accepted_by_svix() -> None:
    now = int(time.time())
    headers = headers_for(BODY, SECRET_A, SECRET_B, timestamp=now)
    svix_headers = {
        "svix-id": headers["webhook-id"],
        "svix-timestamp": headers["webhook-timestamp"],
        "svix-signature": headers["webhook-signature"],
    }
    svix.webhooks.Webhook(SECRET_B).verify(BODY, svix_headers)


# --- (c) rotation ----------------------------------------------------------------------------


def test_rotation_signs_with_every_secret_and_platform_with_the_newest() -> None:
    headers = headers_for(BODY, SECRET_A, SECRET_B, SECRET_C)
    entries = headers["webhook-signature"].split(" ")
    assert entries == [
        raw_v1(KEY_A, MSG_ID, str(NOW), BODY),
        raw_v1(KEY_B, MSG_ID, str(NOW), BODY),
        raw_v1(KEY_C, MSG_ID, str(NOW), BODY),
    ]
    assert headers[SIGNATURE_HEADER] == raw_platform(SECRET_A, BODY)
    for secret in (SECRET_A, SECRET_B, SECRET_C):
        assert Verifier([secret]).verify(BODY, headers, NOW).scheme == "standard"
    with pytest.raises(VerificationError):
        Verifier([PLAIN_SECRET]).verify(BODY, headers, NOW)
    # The platform header carries the newest secret's signature only.
    Verifier([SECRET_A]).verify_platform(BODY, headers)
    with pytest.raises(VerificationError):
        Verifier([SECRET_B]).verify_platform(BODY, headers)


def test_rotation_interop_with_standardwebhooks() -> None:
    now = int(time.time())
    headers = headers_for(BODY, SECRET_A, SECRET_B, timestamp=now)
    standardwebhooks.Webhook(SECRET_A).verify(BODY, headers)
    standardwebhooks.Webhook(SECRET_B).verify(BODY, headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET_C).verify(BODY, headers)


def test_receiver_holding_new_and_old_accepts_a_sender_still_on_old() -> None:
    old_only = headers_for(BODY, SECRET_B)
    rotating = Verifier([SECRET_A, SECRET_B])
    assert rotating.verify(BODY, old_only, NOW).scheme == "standard"
    rotating.verify_platform(BODY, old_only)
    with pytest.raises(VerificationError):
        Verifier([SECRET_A]).verify(BODY, old_only, NOW)


def test_at_most_32_signatures_are_considered() -> None:
    good = raw_v1(KEY_A, MSG_ID, str(NOW), BODY)
    filler = "v1," + base64.b64encode(b"\x00" * 32).decode()
    within = " ".join([filler] * 31 + [good])
    beyond = " ".join([filler] * 32 + [good])
    base = headers_for()
    assert VERIFIER_A.verify(BODY, {**base, "webhook-signature": within}, NOW)
    with pytest.raises(VerificationError):
        VERIFIER_A.verify(BODY, {**base, "webhook-signature": beyond}, NOW)


def test_other_versions_are_skipped() -> None:
    good = raw_v1(KEY_A, MSG_ID, str(NOW), BODY)
    value = "v1a,abc v2,xyz " + good
    assert VERIFIER_A.verify(BODY, {**headers_for(), "webhook-signature": value}, NOW)


# --- (d) tolerance -----------------------------------------------------------------------


def test_default_tolerance_is_five_minutes() -> None:
    assert DEFAULT_TOLERANCE == 300
    headers = headers_for()
    for now in (NOW - 300, NOW - 299.5, NOW, NOW + 299.999, NOW + 300):
        assert VERIFIER_A.verify(BODY, headers, now).timestamp == NOW
    for now in (NOW - 300.001, NOW - 301, NOW + 300.001, NOW + 301, NOW + 86_400, 0):
        with pytest.raises(VerificationError, match="tolerance"):
            VERIFIER_A.verify(BODY, headers, now)


@given(offset=st.floats(min_value=-2000, max_value=2000), tolerance=st.sampled_from([0, 10, 300]))
def test_tolerance_is_symmetric(offset: float, tolerance: float) -> None:
    verifier = Verifier([SECRET_A], tolerance=tolerance)
    headers = headers_for()
    now = NOW + offset
    if abs(now - NOW) <= tolerance:
        assert verifier.verify(BODY, headers, now).scheme == "standard"
    else:
        with pytest.raises(VerificationError):
            verifier.verify(BODY, headers, now)


# --- (e) malformed input: VerificationError and nothing else -------------------------------


def resigned_stamp(stamp: str) -> dict[str, str]:
    """Headers correctly signed over an odd ``webhook-timestamp`` string."""
    return {
        "webhook-id": MSG_ID,
        "webhook-timestamp": stamp,
        "webhook-signature": raw_v1(KEY_A, MSG_ID, stamp, BODY),
    }


def resigned_id(msg_id: str) -> dict[str, str]:
    """Headers correctly signed over an odd ``webhook-id``."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(NOW),
        "webhook-signature": raw_v1(KEY_A, msg_id, str(NOW), BODY),
    }


def with_signature(value: Any) -> dict[str, Any]:
    return {**headers_for(), "webhook-signature": value}


def without(name: str) -> dict[str, str]:
    headers = headers_for()
    del headers[name]
    return headers


FULLWIDTH_DIGITS = "".join(chr(0xFF10 + d) for d in range(10))
DEVANAGARI_DIGITS = "".join(chr(0x0966 + d) for d in range(10))
GOOD_SIG = raw_v1(KEY_A, MSG_ID, str(NOW), BODY)
GOOD_B64 = GOOD_SIG[3:]
GOOD_DIGEST = base64.b64decode(GOOD_B64)

MALFORMED_STANDARD: dict[str, Any] = {
    "missing webhook-id": without("webhook-id"),
    "missing webhook-timestamp": without("webhook-timestamp"),
    "missing webhook-signature": without("webhook-signature"),
    "no headers": {},
    "only platform header": {SIGNATURE_HEADER: raw_platform(SECRET_A, BODY)},
    "signature v2 prefix": with_signature("v2," + GOOD_B64),
    "signature V1 prefix": with_signature("V1," + GOOD_B64),
    "signature colon": with_signature("v1:" + GOOD_B64),
    "signature no prefix": with_signature(GOOD_B64),
    "signature v1 no comma": with_signature("v1" + GOOD_B64),
    "signature empty": with_signature(""),
    "signature only v1,": with_signature("v1,"),
    "signature spaces": with_signature("   "),
    "signature 31 bytes": with_signature("v1," + base64.b64encode(GOOD_DIGEST[:31]).decode()),
    "signature 33 bytes": with_signature("v1," + base64.b64encode(GOOD_DIGEST + b"\0").decode()),
    "signature unpadded": with_signature("v1," + GOOD_B64.rstrip("=")),
    "signature extra char": with_signature(GOOD_SIG + "A"),
    "signature truncated": with_signature(GOOD_SIG[:-2]),
    "signature non-base64": with_signature("v1," + "!" * 43 + "="),
    "signature hex": with_signature("v1," + GOOD_DIGEST.hex()),
    "signature urlsafe": with_signature(
        "v1," + base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode()
    ),
    "signature non-ASCII": with_signature("v1," + GOOD_B64[:-2] + "é="),
    "signature fullwidth": with_signature("v1\uff0c" + GOOD_B64),
    "signature bytes": with_signature(GOOD_SIG.encode()),
    "signature int": with_signature(12345),
    "signature list": with_signature([GOOD_SIG]),
    "signature tuple": with_signature((GOOD_SIG,)),
    "timestamp bytes": {**headers_for(), "webhook-timestamp": str(NOW).encode()},
    "timestamp int": {**headers_for(), "webhook-timestamp": NOW},
    "timestamp float": {**headers_for(), "webhook-timestamp": float(NOW)},
    "id bytes": {**headers_for(), "webhook-id": MSG_ID.encode()},
    "id int": {**headers_for(), "webhook-id": 5},
    "timestamp zero-padded": resigned_stamp("0" + str(NOW)),
    "timestamp leading space": resigned_stamp(" " + str(NOW)),
    "timestamp trailing space": resigned_stamp(str(NOW) + " "),
    "timestamp trailing newline": resigned_stamp(str(NOW) + "\n"),
    "timestamp fractional": resigned_stamp(f"{NOW}.0"),
    "timestamp fractional half": resigned_stamp(f"{NOW}.5"),
    "timestamp exponent": resigned_stamp("1.7e9"),
    "timestamp exponent int": resigned_stamp("17e8"),
    "timestamp negative": resigned_stamp(f"-{NOW}"),
    "timestamp plus sign": resigned_stamp(f"+{NOW}"),
    "timestamp underscores": resigned_stamp("1_700_000_000"),
    "timestamp hex": resigned_stamp(hex(NOW)),
    "timestamp too long": resigned_stamp("0" * 20 + str(NOW)),
    "timestamp twelve digits": resigned_stamp("100000000000"),
    "timestamp empty": resigned_stamp(""),
    "timestamp milliseconds": resigned_stamp(str(NOW * 1000)),
    "timestamp fullwidth digits": resigned_stamp(
        str(NOW).translate(str.maketrans("0123456789", FULLWIDTH_DIGITS))
    ),
    "timestamp devanagari digits": resigned_stamp(
        str(NOW).translate(str.maketrans("0123456789", DEVANAGARI_DIGITS))
    ),
    "timestamp superscript": resigned_stamp("¹⁷⁰⁰⁰⁰⁰⁰⁰⁰"),
    "timestamp infinity": resigned_stamp("inf"),
    "timestamp nan": resigned_stamp("NaN"),
    "id empty": resigned_id(""),
    "id too long": resigned_id("a" * 257),
    "id newline": resigned_id("msg\n1"),
    "id nul": resigned_id("msg\x001"),
    "id non-ASCII": resigned_id("msg_é"),
    "id devanagari": resigned_id("संदेश"),
    "wrong secret": headers_for(BODY, SECRET_B),
    "wrong id": {**headers_for(), "webhook-id": "msg_other"},
    "wrong timestamp": {**headers_for(), "webhook-timestamp": str(NOW + 1)},
    "signed for another body": headers_for(BODY + b" "),
}


@pytest.mark.parametrize("headers", MALFORMED_STANDARD.values(), ids=MALFORMED_STANDARD.keys())
def test_malformed_standard_headers_raise_verification_error(headers: Any) -> None:
    with pytest.raises(VerificationError):
        VERIFIER_A.verify(BODY, headers, NOW)
    with pytest.raises(VerificationError):
        VERIFIER_A.verify(BODY, headers, NOW, allow_platform_only=False)


def test_resigned_helpers_are_accepted_when_well_formed() -> None:
    # Guards the table above: the helpers sign correctly, so only the oddity can fail.
    assert VERIFIER_A.verify(BODY, resigned_stamp(str(NOW)), NOW).scheme == "standard"
    assert VERIFIER_A.verify(BODY, resigned_id("msg_x-1:2"), NOW).msg_id == "msg_x-1:2"


def test_id_of_256_characters_is_accepted() -> None:
    assert VERIFIER_A.verify(BODY, resigned_id("a" * 256), NOW).msg_id == "a" * 256


NOT_UTF8 = [b"\xff", b'{"a":"\xc3"}', b'{"a":"\xed\xa0\x80"}', b"\xc0\xaf", b'{"x":1}\x80']


@pytest.mark.parametrize("body", NOT_UTF8)
def test_correctly_signed_body_that_is_not_utf8_is_refused(body: bytes) -> None:
    headers = headers_for(body)
    with pytest.raises(VerificationError, match="UTF-8"):
        VERIFIER_A.verify(body, headers, NOW)
    with pytest.raises(VerificationError, match="UTF-8"):
        VERIFIER_A.verify_platform(body, headers)


@pytest.mark.parametrize("body", [BODY.decode(), None, 5, [BODY], object()])
def test_body_that_is_not_bytes_is_refused(body: Any) -> None:
    with pytest.raises(VerificationError):
        VERIFIER_A.verify(body, headers_for(), NOW)
    with pytest.raises(VerificationError):
        VERIFIER_A.verify_platform(body, headers_for())


def test_bytes_like_bodies_are_accepted() -> None:
    bodies: list[Any] = [bytearray(BODY), memoryview(BODY)]
    for body in bodies:
        assert VERIFIER_A.verify(body, headers_for(), NOW).scheme == "standard"
        VERIFIER_A.verify_platform(body, headers_for())


class ExplodingMapping(Mapping[str, str]):
    """A mapping whose every access fails with an unrelated exception."""

    def __getitem__(self, key: str) -> str:
        raise RuntimeError("boom")

    def __iter__(self) -> Any:
        raise RuntimeError("boom")

    def __len__(self) -> int:
        return 3


@pytest.mark.parametrize(
    "headers",
    [None, [("webhook-id", MSG_ID)], "webhook-id: x", 5, ExplodingMapping()],
    ids=["None", "list", "str", "int", "exploding"],
)
def test_headers_that_are_not_a_mapping_raise_verification_error(headers: Any) -> None:
    with pytest.raises(VerificationError):
        VERIFIER_A.verify(BODY, headers, NOW)
    with pytest.raises(VerificationError):
        VERIFIER_A.verify(BODY, headers, NOW, allow_platform_only=True)
    with pytest.raises(VerificationError):
        VERIFIER_A.verify_platform(BODY, headers)


GOOD_PLATFORM = raw_platform(SECRET_A, BODY)
GOOD_HEX = GOOD_PLATFORM.removeprefix("sha256=")
MALFORMED_PLATFORM: dict[str, Any] = {
    "missing": None,
    "empty": "",
    "bare hex": GOOD_HEX,
    "sha1 prefix": "sha1=" + GOOD_HEX,
    "upper prefix": "SHA256=" + GOOD_HEX,
    "colon prefix": "sha256:" + GOOD_HEX,
    "double prefix": "sha256=sha256=" + GOOD_HEX,
    "63 hex": "sha256=" + GOOD_HEX[:-1],
    "65 hex": "sha256=" + GOOD_HEX + "0",
    "non-hex": "sha256=" + "g" * 64,
    "base64": "sha256=" + base64.b64encode(bytes.fromhex(GOOD_HEX)).decode(),
    "leading space": " " + GOOD_PLATFORM,
    "trailing space": GOOD_PLATFORM + " ",
    "trailing newline": GOOD_PLATFORM + "\n",
    "fullwidth": "sha256=" + FULLWIDTH_DIGITS[0] * 64,
    "arabic-indic digits": "sha256=" + "\u0663" * 64,
    "non-ASCII": GOOD_PLATFORM[:-1] + "é",
    "bytes": GOOD_PLATFORM.encode(),
    "int": 5,
    "list": [GOOD_PLATFORM],
    "wrong secret": raw_platform(SECRET_B, BODY),
    "other body": raw_platform(SECRET_A, BODY + b"\n"),
    "all zeros": "sha256=" + "0" * 64,
}


@pytest.mark.parametrize("value", MALFORMED_PLATFORM.values(), ids=MALFORMED_PLATFORM.keys())
def test_malformed_platform_header_raises_verification_error(value: Any) -> None:
    headers = {} if value is None else {SIGNATURE_HEADER: value}
    with pytest.raises(VerificationError):
        VERIFIER_A.verify_platform(BODY, headers)
    with pytest.raises(VerificationError):
        VERIFIER_A.verify(BODY, headers, NOW, allow_platform_only=True)


def test_uppercase_hex_platform_signature_is_accepted() -> None:
    VERIFIER_A.verify_platform(BODY, {SIGNATURE_HEADER: "sha256=" + GOOD_HEX.upper()})


def test_errors_never_reveal_the_expected_signature() -> None:
    headers = headers_for(BODY, SECRET_B)
    for check in (
        lambda: VERIFIER_A.verify(BODY, headers, NOW),
        lambda: VERIFIER_A.verify_platform(BODY, headers),
    ):
        with pytest.raises(VerificationError) as info:
            check()
        assert GOOD_B64 not in str(info.value)
        assert GOOD_HEX not in str(info.value)
        assert headers["webhook-signature"][3:] not in str(info.value)


def test_header_names_are_case_insensitive_in_a_plain_dict() -> None:
    headers = headers_for()
    odd = {
        "WEBHOOK-ID": headers["webhook-id"],
        "Webhook-Timestamp": headers["webhook-timestamp"],
        "webhook-SIGNATURE": headers["webhook-signature"],
        "x-NETASAMPARK-signature": headers[SIGNATURE_HEADER],
    }
    assert VERIFIER_A.verify(BODY, odd, NOW) == VerifiedRequest(MSG_ID, NOW, "standard")
    VERIFIER_A.verify_platform(BODY, odd)
    # One odd name among exact ones.
    mixed = {**headers}
    mixed["Webhook-Id"] = mixed.pop("webhook-id")
    assert VERIFIER_A.verify(BODY, mixed, NOW).msg_id == MSG_ID
    only_platform = {"x-netasampark-signature": headers[SIGNATURE_HEADER]}
    VERIFIER_A.verify_platform(BODY, only_platform)
    result = VERIFIER_A.verify(BODY, only_platform, NOW, allow_platform_only=True)
    assert result == VerifiedRequest(None, None, "platform")


def test_other_header_containers_work() -> None:
    headers = headers_for()
    title = {k.title(): v for k, v in headers.items()}
    for container in (httpx.Headers(title), MappingProxyType(title), MappingProxyType(headers)):
        assert VERIFIER_A.verify(BODY, container, NOW).scheme == "standard"
        VERIFIER_A.verify_platform(BODY, container)


# --- (f) fuzz: only VerificationError escapes -----------------------------------------------

HEADER_NAMES = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    SIGNATURE_HEADER,
    "Webhook-Id",
    "WEBHOOK-TIMESTAMP",
    "Webhook-Signature",
    "x-netasampark-signature",
]
header_values = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=80),
    st.integers(),
    st.floats(),
    st.none(),
    st.lists(st.text(max_size=5), max_size=2),
    st.sampled_from([str(NOW), f"{NOW}.5", "0", "-1", "1e400", "9" * 11, "9" * 400]),
    st.binary(min_size=32, max_size=32).map(lambda d: "v1," + base64.b64encode(d).decode()),
    st.lists(
        st.binary(min_size=32, max_size=32).map(lambda d: "v1," + base64.b64encode(d).decode()),
        max_size=40,
    ).map(" ".join),
    st.binary(min_size=32, max_size=32).map(lambda d: "sha256=" + d.hex()),
)
header_dicts = st.dictionaries(
    st.one_of(st.sampled_from(HEADER_NAMES), st.text(max_size=20)), header_values, max_size=6
)


def as_memoryview(data: bytes) -> memoryview:
    # memoryview is generic in the stubs; passed bare to .map, mypy infers memoryview[Never].
    return memoryview(data)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.just(BODY),
        st.binary(max_size=60).map(bytearray),
        st.binary(max_size=60).map(as_memoryview),
        st.text(max_size=60),
        st.none(),
        st.integers(),
    ),
    headers=st.one_of(
        header_dicts,
        st.none(),
        st.text(max_size=20),
        st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_values), max_size=4),
    ),
    now=st.one_of(st.just(float(NOW)), st.floats(allow_nan=True), st.integers(-(2**70), 2**70)),
    platform_only=st.booleans(),
)
def test_fuzz_only_verification_error_escapes(
    body: Any, headers: Any, now: float, platform_only: bool
) -> None:
    with pytest.raises(VerificationError):
        VERIFIER_A.verify(body, headers, now, allow_platform_only=platform_only)
    with pytest.raises(VerificationError):
        VERIFIER_A.verify_platform(body, headers)


Mutation = Callable[[bytes, dict[str, Any]], tuple[bytes, dict[str, Any]]]


@st.composite
def mutations(draw: st.DrawFn, names: list[str]) -> Mutation:
    """A change to a valid request that must make it fail: a header replaced or removed, or
    the body altered."""
    kind = draw(st.sampled_from(["replace", "delete", "body"]))
    name = draw(st.sampled_from(names))
    if kind == "replace":
        value = draw(header_values)

        def replace(body: bytes, headers: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
            return body, {**headers, name: value}

        return replace
    if kind == "delete":

        def delete(body: bytes, headers: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
            return body, {k: v for k, v in headers.items() if k != name}

        return delete
    position = draw(st.integers(min_value=0, max_value=10_000))
    replacement = draw(st.binary(max_size=3))

    def alter(body: bytes, headers: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
        at = position % (len(body) + 1)
        return body[:at] + replacement + body[at + 1 :], headers

    return alter


@settings(max_examples=600)
@given(mutation=mutations(["webhook-id", "webhook-timestamp", "webhook-signature"]))
def test_fuzz_mutated_standard_request_never_verifies(mutation: Mutation) -> None:
    headers = headers_for(BODY, SECRET_A, SECRET_B)
    body, changed = mutation(BODY, headers)
    if body == BODY and changed == headers:
        return  # the mutation happened to change nothing
    with pytest.raises(VerificationError):
        VERIFIER_A.verify(body, changed, NOW)


@settings(max_examples=600)
@given(mutation=mutations([SIGNATURE_HEADER]))
def test_fuzz_mutated_platform_request_never_verifies(mutation: Mutation) -> None:
    headers = {SIGNATURE_HEADER: raw_platform(SECRET_A, BODY)}
    body, changed = mutation(BODY, headers)
    if body == BODY and changed == headers:
        return
    if changed.get(SIGNATURE_HEADER) == "sha256=" + GOOD_HEX.upper():
        return  # an equivalent spelling of the same signature
    with pytest.raises(VerificationError):
        VERIFIER_A.verify_platform(body, changed)
    with pytest.raises(VerificationError):
        VERIFIER_A.verify(body, changed, NOW, allow_platform_only=True)


@settings(max_examples=500)
@given(body=st.binary(max_size=200))
def test_signed_random_bodies_verify_exactly_when_utf8(body: bytes) -> None:
    headers = headers_for(body)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        with pytest.raises(VerificationError):
            VERIFIER_A.verify(body, headers, NOW)
        with pytest.raises(VerificationError):
            VERIFIER_A.verify_platform(body, headers)
    else:
        assert VERIFIER_A.verify(body, headers, NOW).scheme == "standard"
        VERIFIER_A.verify_platform(body, headers)


# --- (g) the platform scheme alone ------------------------------------------------------------


def test_verify_platform_with_the_platform_header_alone() -> None:
    headers = {SIGNATURE_HEADER: raw_platform(SECRET_A, BODY)}
    VERIFIER_A.verify_platform(BODY, headers)
    with pytest.raises(VerificationError, match="webhook-signature"):
        VERIFIER_A.verify(BODY, headers, NOW)
    result = VERIFIER_A.verify(BODY, headers, NOW, allow_platform_only=True)
    assert result == VerifiedRequest(None, None, "platform")
    # No replay protection in this scheme: time does not matter.
    assert VERIFIER_A.verify(BODY, headers, 0, allow_platform_only=True).scheme == "platform"


def test_plain_secret_platform_signature_matches_node_style_hmac() -> None:
    verifier = Verifier([PLAIN_SECRET])
    headers = headers_for(BODY, PLAIN_SECRET)
    assert headers[SIGNATURE_HEADER] == raw_platform(PLAIN_SECRET, BODY)
    verifier.verify_platform(BODY, headers)
    assert verifier.verify(BODY, headers, NOW).scheme == "standard"


def test_allow_platform_only_does_not_rescue_bad_standard_headers() -> None:
    headers = headers_for()
    for broken in (
        {**headers, "webhook-signature": "v1," + base64.b64encode(b"\0" * 32).decode()},
        {**headers, "webhook-timestamp": str(NOW - 10_000)},
        {k: v for k, v in headers.items() if k != "webhook-id"},
    ):
        with pytest.raises(VerificationError):
            VERIFIER_A.verify(BODY, broken, NOW, allow_platform_only=True)
        VERIFIER_A.verify_platform(BODY, broken)  # the platform header itself is fine


def test_allow_platform_only_still_prefers_the_standard_scheme() -> None:
    result = VERIFIER_A.verify(BODY, headers_for(), NOW, allow_platform_only=True)
    assert result == VerifiedRequest(MSG_ID, NOW, "standard")


def test_allow_platform_only_with_wrong_platform_signature() -> None:
    headers = {SIGNATURE_HEADER: raw_platform(SECRET_B, BODY)}
    with pytest.raises(VerificationError):
        VERIFIER_A.verify(BODY, headers, NOW, allow_platform_only=True)


def test_binascii_and_hmac_helpers_agree() -> None:
    # The table above builds its expectations with base64/hmac; make sure they are the
    # same encodings signing.py uses, so a failure there means the code, not the helper.
    digest = hmac.digest(KEY_A, f"{MSG_ID}.{NOW}.".encode() + BODY, "sha256")
    assert binascii.b2a_base64(digest, newline=False).decode() == GOOD_B64
