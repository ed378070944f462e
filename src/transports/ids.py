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
_last = [0, 0]  # the last id's milliseconds and random part
_head = [(-1, "")]  # an id's value without its last 10 bits, and its first 24 characters


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
        high, text = _head[0]
        if value >> 10 != high:
            # Ids made within a millisecond count up: they share all but their last pair.
            high, text = value >> 10, "".join([_PAIRS[(value >> s) & 1023] for s in _HEAD_SHIFTS])
            _head[0] = high, text
    return prefix + "_" + text + _PAIRS[value & 1023]


def new_token() -> str:
    """A random verification token (32 bytes, URL-safe base64)."""
    return secrets.token_urlsafe(32)


def new_secret() -> str:
    """A new endpoint secret in Standard Webhooks form: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode("ascii")
