"""Endpoint URLs and custom headers, checked when an endpoint is registered."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from webhook_core.errors import ConfigError

MAX_URL_LENGTH = 2048
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "user-agent",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-netasampark-signature",
        "x-netasampark-event",
        "x-netasampark-delivery",
        "x-netasampark-attempt",
    }
)
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def validate_url(url: object, *, allow_http: bool = False) -> str:
    """Return ``url`` if it can be an endpoint URL; ``ConfigError`` naming the problem if not.

    Only ``https`` is accepted unless ``allow_http``; a host is required; user
    info (``user:pass@``) and fragments are refused; ports must be 1-65535.
    """
    if not isinstance(url, str):
        raise ConfigError(f"URL must be a string, not {type(url).__name__}")
    if len(url) > MAX_URL_LENGTH:
        raise ConfigError(f"URL is longer than {MAX_URL_LENGTH} characters")
    if not url.isascii() or any(c.isspace() or ord(c) < 0x21 or c == "\x7f" for c in url):
        raise ConfigError(f"URL {url!r} holds spaces, control or non-ASCII characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"URL {url!r} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigError(f"URL {url!r} must use https (or http where allowed), not {scheme!r}")
    if scheme == "http" and not allow_http:
        raise ConfigError(
            f"URL {url!r} uses plain http; use https, or allow http explicitly (allow_http)"
        )
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ConfigError(f"URL {url!r} must not carry user info (user:password@)")
    if not parts.hostname:
        raise ConfigError(f"URL {url!r} has no host")
    if port == 0:
        raise ConfigError(f"URL {url!r} has port 0")
    if parts.fragment or url.endswith("#"):
        raise ConfigError(f"URL {url!r} must not have a fragment (#...)")
    return url


def validate_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    """Custom endpoint headers as pairs; refuse reserved names, bad names and CR/LF in values."""
    pairs = tuple(headers.items() if isinstance(headers, Mapping) else headers)
    for name, value in pairs:
        if not isinstance(name, str) or not name or not set(name) <= _TOKEN_CHARS:
            raise ConfigError(f"header name {name!r} is not a valid HTTP token")
        if name.lower() in RESERVED_HEADERS:
            raise ConfigError(f"header {name!r} is set by the library and cannot be overridden")
        if not isinstance(value, str) or any(c in value for c in "\r\n\x00"):
            raise ConfigError(f"header {name!r} has a value with CR, LF or NUL, or not a string")
        # RFC 9110 field values: visible ASCII, spaces and tabs inside, nothing around.
        # The HTTP client refuses anything else when sending (httpx encodes values as
        # ASCII, h11 rejects surrounding whitespace), so refuse it at registration.
        if not value.isascii() or any((ord(c) < 0x20 and c != "\t") or c == "\x7f" for c in value):
            raise ConfigError(f"header {name!r} has a value with control or non-ASCII characters")
        if value != value.strip(" \t"):
            raise ConfigError(f"header {name!r} has a value with leading or trailing whitespace")
        if len(value) > 4096:
            raise ConfigError(f"header {name!r} is longer than 4096 characters")
    return pairs
