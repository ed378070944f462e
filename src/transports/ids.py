"""Identifiers and tokens: time-ordered ids and unguessable verification tokens."""

from __future__ import annotations

import base64
import os
import secrets
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # every 10-bit value as two characters
_SHIFTS = range(120, -10, -10)  # 13 pairs: the 128-bit value as 26 characters
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
    return prefix + "_" + "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def new_token() -> str:
    """A random verification token (32 bytes, URL-safe base64)."""
    return secrets.token_urlsafe(32)


def new_secret() -> str:
    """A new endpoint secret in Standard Webhooks form: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode("ascii")
