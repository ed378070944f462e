"""The retry policy: when a failed delivery is tried again, and when it gives up.

Defaults are the platform's promises (DESIGN section 2): retries 1 min, 5 min,
15 min and 1 h after the previous attempt ended, so 5 attempts at most; a 30 s
total deadline per attempt. ``Retry-After`` on 429 and 503 replaces the
scheduled delay, clamped to ``[0, retry_after_max]``. Jitter is off by default;
when on, it is a deterministic function of ``seed``, the delivery id and the
attempt number, so a run can be replayed exactly.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable

import attrs

from webhook_core.errors import ConfigError, PayloadError
from webhook_core.timefmt import parse_rfc3339, rfc3339

DEFAULT_SCHEDULE: tuple[float, ...] = (60.0, 300.0, 900.0, 3600.0)
RETRY_AFTER_STATUSES = frozenset({429, 503})


def _finite_non_negative(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{name} must be a finite, non-negative number of seconds, not {value}")


def _as_schedule(value: Iterable[float]) -> tuple[float, ...]:
    # A named converter (not ``tuple``) so type checkers see ``Iterable[float]``.
    try:
        return tuple(value)
    except TypeError:
        raise ConfigError(f"schedule must be a sequence of delays, not {value!r}") from None


@attrs.frozen
class RetryPolicy:
    """How often and how soon deliveries are retried, and each attempt's deadline."""

    schedule: tuple[float, ...] = attrs.field(default=DEFAULT_SCHEDULE, converter=_as_schedule)
    timeout: float = 30.0
    jitter: float = 0.0
    seed: int = 0
    retry_after_max: float = 3600.0
    max_abandoned: int = 10

    def __attrs_post_init__(self) -> None:
        for index, delay in enumerate(self.schedule):
            _finite_non_negative(f"schedule[{index}]", delay)
        if len(self.schedule) > 100:
            raise ConfigError("schedule may hold at most 100 retries")
        _finite_non_negative("timeout", self.timeout)
        if self.timeout == 0:
            raise ConfigError("timeout must be greater than zero")
        _finite_non_negative("retry_after_max", self.retry_after_max)
        if not (isinstance(self.jitter, (int, float)) and 0 <= self.jitter < 1):
            raise ConfigError(f"jitter must be a fraction in [0, 1), not {self.jitter!r}")
        if not isinstance(self.seed, int):
            raise ConfigError("seed must be an integer")
        if not (isinstance(self.max_abandoned, int) and self.max_abandoned >= 1):
            raise ConfigError("max_abandoned must be a positive integer")

    @property
    def max_attempts(self) -> int:
        """Attempts at most: the first one plus one per scheduled retry."""
        return len(self.schedule) + 1

    def delay_after(
        self, attempt_number: int, delivery_id: str, retry_after: float | None = None
    ) -> float:
        """Seconds to wait after failed attempt ``attempt_number`` (1-based) ended.

        ``retry_after`` is the receiver's ``Retry-After`` in seconds, when it
        sent one with 429 or 503; it replaces the schedule, within bounds.
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_max)
        delay = self.schedule[attempt_number - 1]
        if self.jitter:
            digest = hashlib.blake2b(
                f"{self.seed}:{delivery_id}:{attempt_number}".encode(), digest_size=8
            ).digest()
            unit = int.from_bytes(digest, "big") / 2**64
            delay *= 1 + self.jitter * (2 * unit - 1)
        return delay


_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    )
}
_CLOCK = r"(\d{2}:\d{2}:\d{2})"
# RFC 9110 section 5.6.7: a recipient MUST accept all three HTTP-date formats.
_IMF_FIXDATE = re.compile(
    rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{{2}}) ([A-Z][a-z]{{2}}) (\d{{4}}) {_CLOCK} GMT\Z",
    re.ASCII,
)
_RFC850_DATE = re.compile(
    r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    rf"(\d{{2}})-([A-Z][a-z]{{2}})-(\d{{2}}) {_CLOCK} GMT\Z",
    re.ASCII,
)
_ASCTIME_DATE = re.compile(
    rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Z][a-z]{{2}}) ([ \d]\d) {_CLOCK} (\d{{4}})\Z",
    re.ASCII,
)


def _http_date(value: str, now: float) -> float | None:
    """Epoch seconds of an HTTP-date in any of its three formats, or None."""
    if match := _IMF_FIXDATE.match(value):
        day, month, year, clock = match.groups()
    elif match := _RFC850_DATE.match(value):
        day, month, short_year, clock = match.groups()
        # A two-digit year more than 50 years ahead is the most recent past one.
        try:
            this_year = int(rfc3339(now)[:4])
        except ValueError:  # ``now`` outside years 0000-9999
            return None
        full_year = this_year - this_year % 100 + int(short_year)
        if full_year > this_year + 50:
            full_year -= 100
        year = f"{full_year:04d}"
    elif match := _ASCTIME_DATE.match(value):
        month, day, clock, year = match.groups()
        day = day.replace(" ", "0")
    else:
        return None
    if month not in _MONTHS:
        return None
    try:
        return parse_rfc3339(f"{year}-{_MONTHS[month]:02d}-{day}T{clock}Z")
    except PayloadError:
        return None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP-date).

    An HTTP-date may be an IMF-fixdate or either obsolete format (RFC 850,
    asctime), as RFC 9110 requires. Returns None for a missing or unparseable
    value: a malformed header from a receiver falls back to the schedule rather
    than failing the delivery.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit() and value.isascii() and len(value) <= 10:
        return float(int(value))
    when = _http_date(value, now)
    if when is None:
        return None
    return max(when - now, 0.0)
