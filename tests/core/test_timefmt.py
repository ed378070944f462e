"""RFC 3339 formatting and parsing against the standard library's calendar."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook_core.errors import PayloadError
from webhook_core.timefmt import parse_rfc3339, rfc3339

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRST = int((datetime(1, 1, 1, tzinfo=UTC) - EPOCH).total_seconds())
LAST = int((datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - EPOCH).total_seconds())


def stdlib_rfc3339(whole_seconds: int) -> str:
    """The standard library's rendering of ``whole_seconds`` after the epoch, with a ``Z``."""
    moment = EPOCH + timedelta(seconds=whole_seconds)
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


@given(st.integers(min_value=FIRST, max_value=LAST))
def test_rfc3339_matches_datetime_for_whole_seconds(seconds: int) -> None:
    assert rfc3339(seconds) == stdlib_rfc3339(seconds)


@given(st.floats(min_value=FIRST, max_value=LAST, allow_nan=False))
def test_rfc3339_truncates_fractions_towards_the_past(seconds: float) -> None:
    assert rfc3339(seconds) == stdlib_rfc3339(math.floor(seconds))


@given(st.integers(min_value=0, max_value=4_102_444_800))  # 1970 .. 2100: the usual range
def test_rfc3339_matches_datetime_in_the_common_range(seconds: int) -> None:
    text = rfc3339(seconds)
    assert text == datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1704067200, "2024-01-01T00:00:00Z"),
        (1709164800, "2024-02-29T00:00:00Z"),
        (-1, "1969-12-31T23:59:59Z"),
        (-0.5, "1969-12-31T23:59:59Z"),
        (1.999, "1970-01-01T00:00:01Z"),
        (951782400, "2000-02-29T00:00:00Z"),
        (-62167219200, "0000-01-01T00:00:00Z"),
        (253402300799, "9999-12-31T23:59:59Z"),
    ],
)
def test_rfc3339_known_values(seconds: float, expected: str) -> None:
    assert rfc3339(seconds) == expected


@pytest.mark.parametrize("seconds", [-62167219201, 253402300800, 10**15, math.nan, math.inf])
def test_rfc3339_refuses_years_outside_0000_9999(seconds: float) -> None:
    with pytest.raises(ValueError):
        rfc3339(seconds)


@given(st.integers(min_value=-62167219200, max_value=LAST))
def test_parse_inverts_rfc3339(seconds: int) -> None:
    assert parse_rfc3339(rfc3339(seconds)) == seconds


offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@given(
    moment=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets
    ),
    digits=st.integers(min_value=0, max_value=9),
)
def test_parse_matches_datetime_with_offsets_and_fractions(moment: datetime, digits: int) -> None:
    text = moment.replace(tzinfo=None).isoformat(timespec="seconds")
    fraction = f"{moment.microsecond:06d}000"[:digits]
    if digits:
        text += "." + fraction
    offset = moment.utcoffset()
    assert offset is not None
    minutes = int(offset.total_seconds()) // 60
    zone = (
        "Z"
        if minutes == 0
        else f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    )
    text += zone
    whole = moment.replace(microsecond=0)
    expected = (whole - EPOCH).total_seconds() + (int(fraction) / 10**digits if digits else 0.0)
    assert parse_rfc3339(text) == pytest.approx(expected, abs=1e-6)
    # A float near 1.4e11 cannot hold nine fractional digits: .999999999 may round up
    # to the next whole second, so bound the whole part rather than floor it.
    assert 0 <= parse_rfc3339(text) - int((whole - EPOCH).total_seconds()) <= 1


def test_parse_known_values() -> None:
    assert parse_rfc3339("2024-01-01T00:00:00Z") == 1704067200
    assert parse_rfc3339("2024-01-01T05:30:00+05:30") == 1704067200
    assert parse_rfc3339("2023-12-31T19:00:00-05:00") == 1704067200
    assert parse_rfc3339("2024-01-01T00:00:00.250Z") == 1704067200.25
    assert parse_rfc3339("2024-02-29T12:00:00Z") == 1709208000
    assert parse_rfc3339("2000-02-29T00:00:00Z") == 951782400
    # A leap second is read as the first second of the next minute.
    assert parse_rfc3339("2016-12-31T23:59:60Z") == 1483228800


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2024-01-01",
        "2024-01-01T00:00:00",  # no zone
        "2024-01-01 00:00:00Z",
        "2024-01-01T00:00Z",
        "24-01-01T00:00:00Z",
        "2024-1-01T00:00:00Z",
        "2024-01-01T00:00:00.Z",
        "2024-01-01T00:00:00.1234567890Z",  # more than nanoseconds
        "2024-01-01T00:00:00+0530",
        "2024-01-01T00:00:00+05",
        "2024-01-01T00:00:00Z ",
        " 2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00Z\n",
        "2024-13-01T00:00:00Z",
        "2024-00-01T00:00:00Z",
        "2024-01-00T00:00:00Z",
        "2024-01-32T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",  # not a leap year
        "1900-02-29T00:00:00Z",  # centuries are not, unless divisible by 400
        "2024-04-31T00:00:00Z",
        "2024-06-31T00:00:00Z",
        "2024-09-31T00:00:00Z",
        "2024-11-31T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T23:60:00Z",
        "2024-01-01T23:59:61Z",
        "2024-01-01T00:00:00+24:00",
        "2024-01-01T00:00:00+05:60",
        "2024-01-01T00:00:00-99:99",
        # Devanagari digits
        "\u0968\u0966\u0968\u096a-\u0966\u0967-\u0966\u0967T\u0966\u0966:\u0966\u0966:\u0966\u0966Z",
        "\uff12\uff10\uff12\uff14-01-01T00:00:00Z",  # fullwidth digits
        "2024-01-01T00:00:00.\u0665Z",  # Arabic-Indic digit in the fraction
        "1704067200",
    ],
)
def test_parse_refuses_malformed_timestamps(text: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_rfc3339(text)
    assert info.value.path == "timestamp"


@pytest.mark.parametrize("value", [None, 1704067200, 1704067200.0, b"2024-01-01T00:00:00Z", ["x"]])
def test_parse_refuses_non_strings_with_payload_error(value: Any) -> None:
    with pytest.raises(PayloadError) as info:
        parse_rfc3339(value)
    assert info.value.path == "timestamp"


def test_parse_names_the_given_path() -> None:
    with pytest.raises(PayloadError) as info:
        parse_rfc3339("yesterday", path="data.created_at")
    assert info.value.path == "data.created_at"
    assert "yesterday" in info.value.reason


@given(st.integers(min_value=1, max_value=9998), st.integers(min_value=1, max_value=12))
def test_last_day_of_every_month_agrees_with_datetime(year: int, month: int) -> None:
    following = datetime(year + 1, 1, 1) if month == 12 else datetime(year, month + 1, 1)
    last = (following - timedelta(days=1)).day
    parse_rfc3339(f"{year:04d}-{month:02d}-{last:02d}T00:00:00Z")
    with pytest.raises(PayloadError):
        parse_rfc3339(f"{year:04d}-{month:02d}-{last + 1:02d}T00:00:00Z")
