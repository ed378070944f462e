"""The attempt-history codec the durable stores use: the same JSON as cattrs writes."""

from __future__ import annotations

import json

from transports.stores.records import attempts_from_json, attempts_to_json, converter
from webhook_core import Attempt, Outcome

HISTORY = (
    Attempt(1, 1_795_612_345.123_456_7, 1_795_612_345.5, Outcome.SUCCESS, 200),
    Attempt(2, 10.0, 40.0, Outcome.TIMEOUT, None, "no response within 30 s"),
    Attempt(3, 0.1, 0.30000000000000004, Outcome.HTTP_ERROR, 503, None, 'busy "é" 🚀'),
    *(Attempt(4 + n, 1.0, 2.0, outcome) for n, outcome in enumerate(Outcome)),
)


def test_attempts_are_written_as_cattrs_writes_them() -> None:
    cattrs_text = json.dumps(converter.unstructure(HISTORY), separators=(",", ":"))
    assert attempts_to_json(HISTORY) == cattrs_text
    assert attempts_to_json(()) == "[]"


def test_attempts_read_back_equal_including_history_written_by_cattrs() -> None:
    assert attempts_from_json(attempts_to_json(HISTORY)) == HISTORY
    cattrs_text = json.dumps(converter.unstructure(HISTORY))
    assert attempts_from_json(cattrs_text) == HISTORY
    assert attempts_from_json("[]") == ()
