"""Identifiers and tokens: time-ordered ids and unguessable verification tokens."""

from __future__ import annotations

import base64
import os
import secrets
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_lock = threading.Lock()
_last = [0, 0]  # the last id's milliseconds and random part


def new_id(prefix: str) -> str:
    """A ULID-style id: ``prefix_`` + 26 base32 characters, sortable by creation time.

    Within one millisecond the random part increases monotonically, so ids made
    by one process sort in the order they were made.
    """
    millis = time.time_ns() // 1_000_000
    with _lock:
        last_millis, last_random = _last
        if millis <= last_millis:
            millis, rand = last_millis, last_random + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1
        _last[:] = [millis, rand]
    value = (millis << 80) | (rand & ((1 << 80) - 1))
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


def new_token() -> str:
    """A random verification token (32 bytes, URL-safe base64)."""
    return secrets.token_urlsafe(32)


def new_secret() -> str:
    """A new endpoint secret in Standard Webhooks form: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode("ascii")
