"""Fuzzing the receiver's verification: whatever arrives, only ``VerificationError`` comes out.

A receiver feeds ``Verifier.verify`` and ``verify_platform`` with bytes and
headers straight off the network. Any other exception (``TypeError``,
``UnicodeError``, ``ValueError``, ``binascii.Error``...) would become a 500 and
a crash report instead of a 400/401; any acceptance of a changed request would
be a forgery.
"""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhook_core import SIGNATURE_HEADER, VerificationError, Verifier
from webhook_core.signing import as_secrets, signature_headers

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER = "a plain secret with ünïcode"
NOW = 1_700_000_000
VERIFIER = Verifier([SECRET, OTHER])
NAMES = ["webhook-id", "webhook-timestamp", "webhook-signature", SIGNATURE_HEADER]

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def casings(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from([name, name.upper(), name.title(), name.lower()])


junk_values: st.SearchStrategy[Any] = st.one_of(
    st.text(max_size=80),
    st.text(alphabet="v1,=+/ 0123456789abcdefABCDEF", max_size=120),
    st.from_regex(r"v1,[A-Za-z0-9+/]{43}=", fullmatch=True),
    st.from_regex(r"sha256=[0-9a-f]{64}", fullmatch=True),
    st.integers(),
    st.floats(),
    st.binary(max_size=60),
    st.none(),
    st.lists(st.text(max_size=5), max_size=3),
)

header_maps = st.dictionaries(
    st.one_of(st.sampled_from(NAMES).flatmap(casings), st.text(max_size=20)),
    junk_values,
    max_size=6,
)

bodies: st.SearchStrategy[Any] = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=50).map(bytearray),
    st.binary(max_size=50).map(memoryview),
    st.text(max_size=50),
    st.none(),
    st.integers(),
)

nows = st.one_of(st.integers(NOW - 1000, NOW + 1000), st.floats(allow_nan=True))


def only_verification_errors(call: Any) -> None:
    with contextlib.suppress(VerificationError):
        call()


@FUZZ
@given(body=bodies, headers=header_maps, now=nows, platform_only=st.booleans())
def test_random_input_raises_only_verification_error(
    body: Any, headers: Any, now: float, platform_only: bool
) -> None:
    only_verification_errors(
        lambda: VERIFIER.verify(body, headers, now, allow_platform_only=platform_only)
    )
    only_verification_errors(lambda: VERIFIER.verify_platform(body, headers))


@FUZZ
@given(headers=st.one_of(st.none(), st.integers(), st.text(), st.lists(st.tuples(st.text()))))
def test_headers_that_are_not_mappings_raise_only_verification_error(headers: Any) -> None:
    only_verification_errors(lambda: VERIFIER.verify(b"{}", headers, NOW))
    only_verification_errors(lambda: VERIFIER.verify_platform(b"{}", headers))


def signed(body: bytes, msg_id: str = "msg_1") -> dict[str, str]:
    return signature_headers(as_secrets([SECRET]), msg_id, NOW, body)


@FUZZ
@given(
    body=st.binary(max_size=200),
    name=st.sampled_from(NAMES),
    value=junk_values,
    flip=st.integers(0, 199),
)
def test_a_tampered_request_is_never_accepted(
    body: bytes, name: str, value: Any, flip: int
) -> None:
    headers: dict[str, Any] = signed(body)
    original = dict(headers)
    headers[name] = value
    try:
        result = VERIFIER.verify(body, headers, NOW, allow_platform_only=True)
    except VerificationError:
        pass
    else:
        # Accepted only if what the accepting scheme signed is unchanged (with
        # allow_platform_only, a request without webhook-signature falls back to
        # the platform header).
        if result.scheme == "platform":
            assert headers.get("webhook-signature") is None
            assert headers[SIGNATURE_HEADER] == original[SIGNATURE_HEADER]
        else:
            assert headers["webhook-id"] == original["webhook-id"]
            assert headers["webhook-timestamp"] == original["webhook-timestamp"]
    if body:
        index = flip % len(body)
        tampered = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
        for call in (
            lambda: VERIFIER.verify(tampered, original, NOW),
            lambda: VERIFIER.verify_platform(tampered, original),
        ):
            try:
                call()
            except VerificationError:
                continue
            raise AssertionError("a changed body verified")
