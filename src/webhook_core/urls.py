"""Endpoint URLs and custom headers, checked when an endpoint is registered."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

import idna

from webhook_core.addresses import is_canonical_ip, parse_host
from webhook_core.errors import ConfigError

MAX_URL_LENGTH = 2048
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
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
# Whole families the library owns or that change how the body is framed or read.
RESERVED_PREFIXES = ("content-", "webhook-", "x-netasampark-", "proxy-")
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_MAX_HOST = 253
_MAX_LABEL = 63


def validate_url(url: object, *, allow_http: bool = False) -> str:
    """Return ``url`` if it can be an endpoint URL; ``ConfigError`` naming the problem if not.

    Only ``https`` is accepted unless ``allow_http``. The host is required and
    must be a DNS name, a dotted-quad IPv4 address or a bracketed IPv6 address
    (no zone id); an internationalised name is returned in its IDNA (``xn--``)
    form, and a host that spells an IP address some other way (``2130706433``,
    ``0x7f.1``, ``127.1``) is refused with the usual spelling. User info
    (``user:pass@``), fragments, whitespace, control characters and non-ASCII
    outside the host are refused; a port must be 1-65535.
    """
    if not isinstance(url, str):
        raise ConfigError(f"URL must be a string, not {type(url).__name__}")
    if len(url) > MAX_URL_LENGTH:
        raise ConfigError(f"URL is longer than {MAX_URL_LENGTH} characters")
    for index, char in enumerate(url):
        if char.isspace() or ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0:
            raise ConfigError(
                f"URL {url!r} holds spaces or control characters ({char!r} at {index})"
            )
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"URL {url!r} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigError(f"URL {url!r} must use https (or http where allowed), not {scheme!r}")
    if scheme == "http" and not allow_http:
        raise ConfigError(
            f"URL {url!r} uses plain http; use https, or allow http explicitly (allow_http)"
        )
    if "@" in parts.netloc:
        raise ConfigError(f"URL {url!r} must not carry user info (user:password@)")
    if "#" in url:
        raise ConfigError(f"URL {url!r} must not have a fragment (#...)")
    rest = url[len(parts.scheme) + 3 + len(parts.netloc) :]
    if not rest.isascii():
        raise ConfigError(
            f"URL {url!r} has non-ASCII characters in its path or query; percent-encode them"
        )
    raw_host, port = _split_netloc(url, parts.netloc)
    host = _checked_host(url, raw_host)
    if host != raw_host:
        netloc = host if port is None else f"{host}:{port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return url


def _split_netloc(url: str, netloc: str) -> tuple[str, str | None]:
    """The host and the port text (None if absent) of an authority without user info."""
    if netloc.startswith("["):
        host, _, after = netloc.partition("]")  # urlsplit saw the "]"
        host += "]"
        if after and not after.startswith(":"):
            raise ConfigError(f"URL {url!r} is malformed: {after!r} follows the IPv6 host")
        port = after[1:] if after else None
    else:
        host, colon, port_text = netloc.rpartition(":")
        if not colon:
            host, port = netloc, None
        elif ":" in host:
            raise ConfigError(f"URL {url!r} has an IPv6 host that is not in brackets")
        else:
            port = port_text
    if not host:
        raise ConfigError(f"URL {url!r} has no host")
    if port is not None:
        if not (port.isascii() and port.isdigit()) or len(port) > 5:
            raise ConfigError(f"URL {url!r} has a port that is not a number: {port!r}")
        if int(port) == 0:
            raise ConfigError(f"URL {url!r} has port 0")
        if int(port) > 65535:
            raise ConfigError(f"URL {url!r} has port {int(port)}, outside 1-65535")
    return host, port


def _checked_host(url: str, host: str) -> str:
    """``host`` as it should be dialled (A-labels for IDNA names); ConfigError if invalid."""
    if host.startswith("["):
        if "%" in host:
            raise ConfigError(f"URL {url!r} has an IPv6 zone id; zone ids are not allowed")
        try:
            parse_host(host)
        except ConfigError as exc:
            raise ConfigError(f"URL {url!r}: {exc}") from None
        return host
    given = host
    if not host.isascii() or any(label[:4].lower() == "xn--" for label in host.split(".")):
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ConfigError(
                f"URL {url!r} has a host that is not a valid internationalised name: {exc}"
            ) from None
    try:
        address = parse_host(host)
    except ConfigError as exc:
        raise ConfigError(f"URL {url!r}: {exc}") from None
    if address is not None:
        if not is_canonical_ip(given, address):
            raise ConfigError(
                f"URL {url!r} spells the IP address {address} unusually ({given!r}); "
                f"write it as {address}"
            )
        return host
    labels = host.split(".")
    if labels[-1] == "":
        labels.pop()
    if len(host) > _MAX_HOST:
        raise ConfigError(f"URL {url!r} has a host longer than {_MAX_HOST} characters")
    for label in labels:
        if not label:
            raise ConfigError(f"URL {url!r} has a host with an empty label")
        if len(label) > _MAX_LABEL:
            raise ConfigError(f"URL {url!r} has a host label longer than {_MAX_LABEL} characters")
        if not set(label) <= _LABEL_CHARS:
            bad = next(c for c in label if c not in _LABEL_CHARS)
            raise ConfigError(f"URL {url!r} has a host with the character {bad!r}")
        if label.startswith("-") or label.endswith("-"):
            raise ConfigError(f"URL {url!r} has a host label that starts or ends with '-'")
    return host


def validate_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    """Custom endpoint headers as pairs; refuse reserved names, bad names and CR/LF in values."""
    pairs = tuple(headers.items() if isinstance(headers, Mapping) else headers)
    for name, value in pairs:
        if not isinstance(name, str) or not name or not set(name) <= _TOKEN_CHARS:
            raise ConfigError(f"header name {name!r} is not a valid HTTP token")
        if name.lower() in RESERVED_HEADERS or name.lower().startswith(RESERVED_PREFIXES):
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
