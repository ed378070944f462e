"""RFC 3339 timestamps computed from epoch seconds, without reading any clock."""

from __future__ import annotations

import functools
import re

from webhook_core.errors import PayloadError

_SECONDS_PER_DAY = 86_400
# re.ASCII: ``\d`` must not match other scripts' digits (``int`` would accept them).
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})\Z",
    re.ASCII,
)
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_in_month(year: int, month: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DAYS_IN_MONTH[month - 1]


def _civil_from_days(days: int) -> tuple[int, int, int]:
    # Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    year = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return (year + (month <= 2), month, day)


def _days_from_civil(year: int, month: int, day: int) -> int:
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    mp = month - 3 if month > 2 else month + 9
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def rfc3339(epoch_seconds: float) -> str:
    """Format epoch seconds as RFC 3339 UTC with a ``Z`` suffix, to whole seconds.

    >>> rfc3339(1704067200)
    '2024-01-01T00:00:00Z'
    """
    return _whole_seconds(int(epoch_seconds // 1))


@functools.lru_cache(maxsize=64)  # events published in one second share their timestamp
def _whole_seconds(whole: int) -> str:
    days, rest = divmod(whole, _SECONDS_PER_DAY)
    year, month, day = _civil_from_days(days)
    if not 0 <= year <= 9999:
        raise ValueError(f"epoch seconds {whole} fall outside years 0000-9999")
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"


def parse_rfc3339(text: str, path: str = "timestamp") -> float:
    """Parse an RFC 3339 timestamp into epoch seconds; raise ``PayloadError`` naming ``path``.

    A leap second (``:60``) is accepted and read as the first second of the next minute.
    """
    if not isinstance(text, str):
        raise PayloadError(path, f"expected an RFC 3339 string, not {type(text).__name__}")
    match = _RFC3339.match(text)
    if match is None:
        raise PayloadError(path, f"{text!r} is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    if not (
        1 <= month <= 12
        and 1 <= day <= _days_in_month(year, month)
        and hour < 24
        and minute < 60
        and second < 61
    ):
        raise PayloadError(path, f"{text!r} has a field out of range")
    offset = 0
    if zone != "Z":
        offset_hours, offset_minutes = int(zone[1:3]), int(zone[4:6])
        if offset_hours > 23 or offset_minutes > 59:
            raise PayloadError(path, f"{text!r} has a UTC offset out of range")
        sign = -1 if zone[0] == "-" else 1
        offset = sign * (offset_hours * 3600 + offset_minutes * 60)
    seconds = (
        _days_from_civil(year, month, day) * _SECONDS_PER_DAY
        + hour * 3600
        + minute * 60
        + second
        - offset
    )
    return seconds + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)
