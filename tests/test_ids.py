"""Ids: time-ordered, unique, the same 30-character form however they are made."""

from __future__ import annotations

import re
import threading
import time

import pytest

from transports import ids
from transports.ids import new_id

FORM = re.compile(r"dlv_[0-9A-HJKMNP-TV-Z]{26}")


def decode(made: str) -> int:
    """The 130-bit value of an id's 26 base32 characters."""
    return int("".join(f"{ids._ALPHABET.index(c):05b}" for c in made.split("_")[1]), 2)


def test_ids_made_in_a_row_are_unique_and_sort_in_the_order_made() -> None:
    made = [new_id("dlv") for _ in range(20_000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert all(FORM.fullmatch(i) for i in made)


def test_ids_stay_ordered_where_the_counter_carries_into_the_shared_head(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A millisecond in the future holds the clock still, so the random part counts up
    # across the 10-bit boundary where the cached first 24 characters change.
    later = time.time_ns() // 1_000_000 + 60_000
    monkeypatch.setattr(ids, "_last_millis", later)
    monkeypatch.setattr(ids, "_last_random", (1 << 30) - 3)
    monkeypatch.setattr(ids, "_last_head", "")
    made = [new_id("dlv") for _ in range(6)]
    assert made == sorted(made)
    assert len({i[:-2] for i in made}) == 2
    decoded = [decode(i) for i in made]
    assert [d - decoded[0] for d in decoded] == [0, 1, 2, 3, 4, 5]


def test_ids_made_on_many_threads_are_unique() -> None:
    made: list[str] = []

    def make() -> None:
        batch = [new_id("dlv") for _ in range(2_000)]
        made.extend(batch)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == len(made) == 16_000
