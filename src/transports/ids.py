"""Identifiers and tokens: time-ordered ids and unguessable verification tokens."""

from __future__ import annotations

import base64
import os
import secrets
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # every 10-bit value as two characters
_HEAD_SHIFTS = range(120, 0, -10)  # 12 pairs, then the last 10 bits: 128 bits as 26 characters
_lock = threading.Lock()
# The last id made: its milliseconds, its random part and its first 24 characters
# ("" when not known). Ids made within a millisecond count up and share those
# characters until the count carries past its last 10 bits.
_last_millis = 0
_last_random = 0
_last_head = ""


def new_id(prefix: str) -> str:
    """A ULID-style id: ``prefix_`` + 26 base32 characters, sortable by creation time.

    Within one millisecond the random part increases monotonically, so ids made
    by one process sort in the order they were made.
    """
    global _last_millis, _last_random, _last_head
    millis = time.time_ns() // 1_000_000
    with _lock:
        if millis <= _last_millis:
            millis, rand, head = _last_millis, _last_random + 1, _last_head
        else:
            rand, head = int.from_bytes(os.urandom(10), "big") >> 1, ""
        low = rand & 1023
        if not (low and head):
            value = (millis << 80) | (rand & ((1 << 80) - 1))
            head = "".join([_PAIRS[(value >> s) & 1023] for s in _HEAD_SHIFTS])
        _last_millis, _last_random, _last_head = millis, rand, head
    return prefix + "_" + head + _PAIRS[low]


def new_token() -> str:
    """A random verification token (32 bytes, URL-safe base64)."""
    return secrets.token_urlsafe(32)


def new_secret() -> str:
    """A new endpoint secret in Standard Webhooks form: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode("ascii")
