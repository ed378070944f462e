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


def test_values_a_format_would_write_otherwise_are_written_by_the_encoder() -> None:
    odd = (
        Attempt(1, 10, 40, Outcome.SUCCESS, 200),  # times given as ints
        Attempt(2, 1.0, float("inf"), Outcome.TIMEOUT),
        Attempt(3, float("nan"), 2.0, Outcome.HTTP_ERROR, 500),
        Attempt(4, 1.0, 2.0, Outcome.HTTP_ERROR, True),
    )
    for attempt in odd:
        cattrs_text = json.dumps(converter.unstructure((attempt,)), separators=(",", ":"))
        assert attempts_to_json((attempt,)) == cattrs_text
    assert attempts_to_json(odd[:1]) == '[{"number":1,"started_at":10,"ended_at":40,' + (
        '"outcome":"success","status":200,"error":null,"response_excerpt":null}]'
    )


def test_attempts_read_back_equal_including_history_written_by_cattrs() -> None:
    assert attempts_from_json(attempts_to_json(HISTORY)) == HISTORY
    cattrs_text = json.dumps(converter.unstructure(HISTORY))
    assert attempts_from_json(cattrs_text) == HISTORY
    assert attempts_from_json("[]") == ()
