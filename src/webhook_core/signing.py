"""Signing and verifying webhook requests.

Two schemes travel on every request (DESIGN section 2):

* the platform's ``X-Netasampark-Signature: sha256=<hex HMAC-SHA256(secret, body)>``,
  keyed with the secret string's UTF-8 bytes, newest secret only;
* Standard Webhooks: ``webhook-id``, ``webhook-timestamp`` and
  ``webhook-signature: v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>``, one
  signature per active secret, which adds replay protection.

Secrets: a secret that starts with ``whsec_`` is Standard Webhooks style and its
Standard Webhooks key is the base64-decoded remainder; any other secret is used
as its UTF-8 bytes for both schemes. The platform scheme always uses the whole
string's UTF-8 bytes, exactly as the platform's documented Node.js receiver does.

``Verifier.verify`` raises ``VerificationError`` for every bad input and nothing else.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import attrs

from webhook_core.errors import ConfigError, VerificationError

SIGNATURE_HEADER = "X-Netasampark-Signature"
DEFAULT_TOLERANCE = 300.0
_SECRET_PREFIX = "whsec_"
_B64_SIGNATURE = re.compile(rb"[A-Za-z0-9+/]{43}=\Z")
_HEX_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})\Z")
_MAX_ID = 256
_BLOCK = 64
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
_MAX_SIGNATURES = 32


class HmacKey:
    """HMAC-SHA256 with the key's inner and outer hash states computed once.

    ``digest`` equals ``hmac.digest(key, message, "sha256")`` but skips the
    per-call key schedule, which is most of the cost for bodies of webhook size.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def digest(self, message: bytes) -> bytes:
        """HMAC-SHA256 of ``message``."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


@attrs.frozen
class Secret:
    """An endpoint secret with the keys derived from it for each scheme."""

    value: str = attrs.field(repr=False)
    platform_key: bytes = attrs.field(repr=False)
    standard_key: bytes = attrs.field(repr=False)
    platform_hmac: HmacKey = attrs.field(repr=False, eq=False)
    standard_hmac: HmacKey = attrs.field(repr=False, eq=False)

    @classmethod
    def parse(cls, value: str) -> Secret:
        """Derive the keys of ``value``; ``ConfigError`` if it is empty or a bad ``whsec_``."""
        if not isinstance(value, str) or not value:
            raise ConfigError("a secret must be a non-empty string")
        if len(value) > 1024:
            raise ConfigError("a secret must be at most 1024 characters")
        if any(c in value for c in "\r\n\x00"):
            raise ConfigError("a secret must not contain CR, LF or NUL")
        platform_key = value.encode("utf-8")
        if value.startswith(_SECRET_PREFIX):
            encoded = value[len(_SECRET_PREFIX) :]
            # Standard Webhooks libraries accept the base64 with or without its padding.
            encoded += "=" * (-len(encoded) % 4)
            try:
                standard_key = binascii.a2b_base64(encoded, strict_mode=True)
            except (binascii.Error, ValueError):
                raise ConfigError(
                    "a secret starting with 'whsec_' must continue with base64"
                ) from None
            if len(standard_key) < 16:
                raise ConfigError("a 'whsec_' secret must hold at least 16 bytes of key")
        else:
            standard_key = platform_key
        return cls(value, platform_key, standard_key, HmacKey(platform_key), HmacKey(standard_key))


def as_secrets(secrets: Iterable[str | Secret]) -> tuple[Secret, ...]:
    """Parse strings into ``Secret``s (newest first, as given); at least one is needed."""
    parsed = tuple(s if isinstance(s, Secret) else Secret.parse(s) for s in secrets)
    if not parsed:
        raise ConfigError("at least one secret is needed")
    return parsed


def platform_signature(secret: Secret, body: bytes) -> str:
    """The value of ``X-Netasampark-Signature`` for ``body``."""
    return "sha256=" + secret.platform_hmac.digest(body).hex()


def standard_signature(secret: Secret, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` entry of ``webhook-signature``."""
    return webhook_signature((secret,), msg_id, str(timestamp), body)


def webhook_signature(secrets: Sequence[Secret], msg_id: str, timestamp: str, body: bytes) -> str:
    """The value of ``webhook-signature``: one ``v1,<base64>`` per secret, space-separated."""
    message = f"{msg_id}.{timestamp}.".encode("ascii") + body
    if len(secrets) == 1:
        digest = secrets[0].standard_hmac.digest(message)
        return "v1," + binascii.b2a_base64(digest, newline=False).decode("ascii")
    return " ".join(
        "v1," + binascii.b2a_base64(s.standard_hmac.digest(message), newline=False).decode("ascii")
        for s in secrets
    )


def signature_headers(
    secrets: Sequence[Secret], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The four signature headers; ``secrets`` newest first (the platform header uses it alone)."""
    stamp = str(timestamp)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": webhook_signature(secrets, msg_id, stamp, body),
        SIGNATURE_HEADER: platform_signature(secrets[0], body),
    }


class VerifiedRequest(NamedTuple):
    """What a successful verification established."""

    msg_id: str | None
    timestamp: int | None
    scheme: str  # "standard" or "platform"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    try:
        value = headers.get(name)
    except Exception:
        raise VerificationError("headers are not a mapping of strings") from None
    if value is None and isinstance(headers, Mapping):
        # A plain dict (or any mapping) is matched case-insensitively, as HTTP headers are.
        lowered = name.lower()
        try:
            for key, candidate in headers.items():
                if isinstance(key, str) and key.lower() == lowered:
                    value = candidate
                    break
        except Exception:
            raise VerificationError("headers are not a mapping of strings") from None
    if value is not None and not isinstance(value, str):
        raise VerificationError(f"header {name} is not a string")
    return value


class Verifier:
    """Verifies requests against one or more secrets (several during a rotation)."""

    def __init__(
        self, secrets: Iterable[str | Secret], *, tolerance: float = DEFAULT_TOLERANCE
    ) -> None:
        self.secrets = as_secrets(secrets)
        if not tolerance >= 0:
            raise ConfigError("tolerance must be a non-negative number of seconds")
        self.tolerance = tolerance
        self._standard_keys = tuple(s.standard_hmac for s in self.secrets)
        self._platform_keys = tuple(s.platform_hmac for s in self.secrets)

    def verify(
        self,
        body: bytes,
        headers: Mapping[str, str],
        now: float,
        *,
        allow_platform_only: bool = False,
    ) -> VerifiedRequest:
        """Verify a request's raw ``body`` and ``headers`` at time ``now`` (epoch seconds).

        Checks the Standard Webhooks headers: the timestamp within the tolerance
        (both directions) and a ``v1`` signature made with one of the secrets.
        With ``allow_platform_only``, a request carrying only
        ``X-Netasampark-Signature`` is verified with that header alone (no
        replay protection). Raises ``VerificationError`` on any failure.
        """
        if type(body) is not bytes:
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise VerificationError("the body must be the raw request bytes")
            body = bytes(body)
        try:
            signatures = headers.get("webhook-signature")
            msg_id = headers.get("webhook-id")
            stamp = headers.get("webhook-timestamp")
        except Exception:
            raise VerificationError("headers are not a mapping of strings") from None
        if signatures is None or msg_id is None or stamp is None:
            signatures = _header(headers, "webhook-signature")
            if signatures is None:
                if allow_platform_only and _header(headers, SIGNATURE_HEADER) is not None:
                    self.verify_platform(body, headers)
                    return VerifiedRequest(None, None, "platform")
                raise VerificationError("missing header webhook-signature")
            msg_id = _header(headers, "webhook-id")
            if msg_id is None:
                raise VerificationError("missing header webhook-id")
            stamp = _header(headers, "webhook-timestamp")
            if stamp is None:
                raise VerificationError("missing header webhook-timestamp")
        try:
            if not (
                stamp.isdigit()
                and stamp.isascii()
                and len(stamp) <= 11
                and (stamp[0] != "0" or stamp == "0")
            ):
                raise VerificationError(
                    "header webhook-timestamp is not a plain integer of seconds"
                )
            timestamp = int(stamp)
            if not -self.tolerance <= now - timestamp <= self.tolerance:
                raise VerificationError(
                    "header webhook-timestamp is outside the tolerance "
                    f"({timestamp - now:+.0f} s from now, allowed ±{self.tolerance:.0f} s)"
                )
            if not msg_id or len(msg_id) > _MAX_ID or not msg_id.isprintable():
                raise VerificationError("header webhook-id is empty, too long or not printable")
            message = f"{msg_id}.{stamp}.".encode("ascii") + body
            provided = signatures.encode("ascii")
        except (AttributeError, TypeError):
            raise VerificationError("signature headers must be strings") from None
        except UnicodeEncodeError:
            raise VerificationError("signature headers must be ASCII") from None
        if len(provided) == 47 and provided.startswith(b"v1,"):
            candidates = [provided[3:]]
        else:
            candidates = _v1_candidates(provided)
        for key in self._standard_keys:
            expected = binascii.b2a_base64(key.digest(message), newline=False)
            for candidate in candidates:
                if hmac.compare_digest(candidate, expected):
                    if not body.isascii():
                        _require_utf8(body)
                    return VerifiedRequest(msg_id, timestamp, "standard")
        for candidate in candidates:
            if not _B64_SIGNATURE.match(candidate):
                raise VerificationError("a v1 signature is not 32 bytes of padded base64")
        raise VerificationError("no signature in webhook-signature matches")

    def verify_platform(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Verify ``X-Netasampark-Signature`` alone (the platform's scheme; no replay check)."""
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise VerificationError("the body must be the raw request bytes")
        value = _header(headers, SIGNATURE_HEADER)
        if value is None:
            raise VerificationError(f"missing header {SIGNATURE_HEADER}")
        match = _HEX_SIGNATURE.match(value)
        if match is None:
            raise VerificationError(f"header {SIGNATURE_HEADER} is not 'sha256=' and 64 hex digits")
        provided = match.group(1).lower().encode("ascii")
        for key in self._platform_keys:
            expected = key.digest(bytes(body)).hex().encode("ascii")
            if hmac.compare_digest(provided, expected):
                _require_utf8(bytes(body))
                return
        raise VerificationError(f"header {SIGNATURE_HEADER} does not match")


def _v1_candidates(provided: bytes) -> list[bytes]:
    entries = provided.split(b" ")
    if len(entries) > _MAX_SIGNATURES:
        raise VerificationError("header webhook-signature holds too many signatures")
    candidates = [
        value for version, _, value in (e.partition(b",") for e in entries) if version == b"v1"
    ]
    if not candidates:
        raise VerificationError("header webhook-signature holds no v1 signature")
    return candidates


class BodyNotUTF8(VerificationError):
    """The signature matched but the body is not UTF-8: the body is malformed (answer 400)."""


def _require_utf8(body: bytes) -> None:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyNotUTF8("the body is not UTF-8") from None
