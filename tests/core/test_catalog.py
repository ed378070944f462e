"""The event catalog, event names and patterns, and the envelope built from them."""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.core.test_canonical import json_values
from webhook_core.catalog import (
    PLATFORM_EVENTS,
    CampaignData,
    EventCatalog,
    GrievanceData,
    MessageData,
    PaymentData,
    platform_catalog,
)
from webhook_core.errors import InvalidEventName, PayloadError, UnknownEvent
from webhook_core.names import (
    MAX_NAME_LENGTH,
    any_pattern_matches,
    pattern_matches,
    validate_event_name,
    validate_pattern,
)

# DESIGN section 2: the platform's 13 events and the kind of data each carries.
CONTRACT_EVENTS = {
    "message.sent": MessageData,
    "message.delivered": MessageData,
    "message.failed": MessageData,
    "message.read": MessageData,
    "grievance.created": GrievanceData,
    "grievance.updated": GrievanceData,
    "grievance.resolved": GrievanceData,
    "payment.processed": PaymentData,
    "payment.failed": PaymentData,
    "payment.refunded": PaymentData,
    "campaign.started": CampaignData,
    "campaign.completed": CampaignData,
    "campaign.failed": CampaignData,
}

# A valid value for every field type the platform models use.
SAMPLE_VALUES: dict[str, Any] = {
    "str": "राजेश कुमार",
    "int": 12_345,
    "str | None": "x",
    "int | None": 7,
}

MODELS = [MessageData, GrievanceData, PaymentData, CampaignData]


def type_name(field: attrs.Attribute[Any]) -> str:
    """The field's annotation as written (``str``, ``int | None``, ...)."""
    kind = field.type
    return kind if isinstance(kind, str) else getattr(kind, "__name__", repr(kind))


def required_fields(model: type[Any]) -> list[attrs.Attribute[Any]]:
    return [f for f in attrs.fields(model) if f.default is attrs.NOTHING]


def minimal(model: type[Any]) -> dict[str, Any]:
    """The smallest valid ``data`` mapping for ``model``."""
    return {f.name: SAMPLE_VALUES[type_name(f)] for f in required_fields(model)}


def full(model: type[Any]) -> dict[str, Any]:
    """A ``data`` mapping setting every field of ``model``."""
    data = {
        f.name: SAMPLE_VALUES[type_name(f)] for f in attrs.fields(model) if f.name != "metadata"
    }
    data["metadata"] = {"region": "उत्तर प्रदेश", "ward": 12, "tags": ["a", "b"], "score": 0.5}
    return data


CATALOG = platform_catalog()
EVENTS_AND_MODELS = sorted(CONTRACT_EVENTS.items())


# --- the platform catalog ------------------------------------------------------------------


def test_platform_catalog_holds_exactly_the_13_contract_events() -> None:
    catalog = platform_catalog()
    assert len(catalog) == 13
    assert {event.name for event in catalog} == set(CONTRACT_EVENTS)
    for name, model in CONTRACT_EVENTS.items():
        assert name in catalog
        event = catalog.get(name)
        assert event.name == name
        assert event.model is model
        assert event.description
    assert set(PLATFORM_EVENTS) == set(CONTRACT_EVENTS)


def test_every_model_field_type_is_covered_by_the_samples() -> None:
    for model in MODELS:
        for field in attrs.fields(model):
            assert field.name == "metadata" or type_name(field) in SAMPLE_VALUES, field


@pytest.mark.parametrize(("name", "model"), EVENTS_AND_MODELS)
def test_minimal_data_round_trips(name: str, model: type[Any]) -> None:
    data = minimal(model)
    assert CATALOG.to_json(name, data) == data
    structured = CATALOG.from_json(name, data)
    assert isinstance(structured, model)
    assert CATALOG.to_json(name, structured) == data


@pytest.mark.parametrize(("name", "model"), EVENTS_AND_MODELS)
def test_full_data_round_trips_and_optional_none_is_omitted(name: str, model: type[Any]) -> None:
    data = full(model)
    assert CATALOG.to_json(name, data) == data
    assert CATALOG.to_json(name, model(**data)) == data
    with_nones = {**minimal(model), **{f: None for f in set(full(model)) - set(minimal(model))}}
    assert CATALOG.to_json(name, with_nones) == minimal(model)


def test_sample_message_from_the_platform_document() -> None:
    data: dict[str, Any] = {
        "message_id": "msg_123",
        "channel": "whatsapp",
        "to": "+919876543210",
        "status": "delivered",
    }
    assert CATALOG.to_json("message.delivered", data) == data
    assert CATALOG.from_json("message.delivered", data) == MessageData(**data)


# --- strict validation: errors name the field ----------------------------------------------


@pytest.mark.parametrize(
    ("name", "model", "field"),
    [(n, m, f.name) for n, m in EVENTS_AND_MODELS for f in required_fields(m)],
)
def test_missing_required_field_is_named(name: str, model: type[Any], field: str) -> None:
    data = minimal(model)
    del data[field]
    with pytest.raises(PayloadError) as info:
        CATALOG.to_json(name, data)
    assert info.value.path == f"data.{field}"
    assert "missing" in info.value.reason


WRONG_VALUES: dict[str, list[Any]] = {
    "str": [5, 1.5, True, None, b"bytes", ["x"], {"x": 1}],
    "str | None": [5, 1.5, False, b"bytes", ["x"]],
    "int": [True, False, 1.0, "5", None, [1], 10**3 + 0.5],
    "int | None": [True, 1.0, "5", [1]],
}


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        (m, f.name, v)
        for m in MODELS
        for f in attrs.fields(m)
        if f.name != "metadata"
        for v in WRONG_VALUES[type_name(f)]
    ],
)
def test_wrong_type_is_named(model: type[Any], field: str, value: Any) -> None:
    name = next(n for n, m in EVENTS_AND_MODELS if m is model)
    data = {**minimal(model), field: value}
    with pytest.raises(PayloadError) as info:
        CATALOG.to_json(name, data)
    assert info.value.path == f"data.{field}"


def test_bool_for_int_says_bool() -> None:
    data = {**minimal(PaymentData), "amount": True}
    with pytest.raises(PayloadError) as info:
        CATALOG.to_json("payment.processed", data)
    assert info.value.path == "data.amount"
    assert "bool" in info.value.reason


def test_extra_key_is_named() -> None:
    data = {**minimal(MessageData), "colour": "blue"}
    with pytest.raises(PayloadError) as info:
        CATALOG.to_json("message.sent", data)
    assert info.value.path == "data"
    assert "colour" in info.value.reason


@pytest.mark.parametrize(
    "metadata", [["a"], "text", 5, True, {1: "int key"}, {("t",): 1}, {"ok": 1, None: 2}]
)
def test_bad_metadata_is_named(metadata: Any) -> None:
    data = {**minimal(GrievanceData), "metadata": metadata}
    with pytest.raises(PayloadError) as info:
        CATALOG.to_json("grievance.created", data)
    assert info.value.path == "data.metadata"


def test_several_problems_are_all_reported() -> None:
    data = {"payment_id": 5, "currency": "INR", "status": "failed", "colour": "red"}
    with pytest.raises(PayloadError) as info:
        CATALOG.to_json("payment.failed", data)
    message = str(info.value)
    assert info.value.path.startswith("data")
    for word in ("payment_id", "amount", "colour"):
        assert word in message


@pytest.mark.parametrize("data", [["a"], "text", 5, None, (("message_id", "x"),)])
def test_data_that_is_not_an_object_is_refused(data: Any) -> None:
    with pytest.raises(PayloadError) as info:
        CATALOG.to_json("message.sent", data)
    assert info.value.path == "data"


def test_model_instances_are_validated_too() -> None:
    # attrs does not check types when the model is built; the catalog must.
    bad = PaymentData(payment_id="pay_1", amount="100", currency="INR", status="processed")  # type: ignore[arg-type]
    with pytest.raises(PayloadError) as info:
        CATALOG.to_json("payment.processed", bad)
    assert info.value.path == "data.amount"


def test_model_of_another_event_is_refused() -> None:
    message = MessageData(message_id="m", channel="sms", to="+91", status="sent")
    with pytest.raises(PayloadError) as info:
        CATALOG.to_json("payment.processed", message)
    assert info.value.path == "data"
    assert "PaymentData" in info.value.reason


def test_unknown_and_invalid_event_names() -> None:
    with pytest.raises(UnknownEvent):
        CATALOG.get("order.created")
    with pytest.raises(UnknownEvent):
        CATALOG.to_json("order.created", {})
    with pytest.raises(InvalidEventName):
        CATALOG.get("Order.Created")


# --- registering custom events -------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ShipmentData:
    shipment_id: str
    weight_grams: int
    price: float
    fragile: bool = False
    metadata: dict[str, Any] | None = None


def test_register_custom_event_with_a_model() -> None:
    catalog = platform_catalog()
    catalog.register("order.line_item.shipped", ShipmentData, "A line item left the warehouse")
    assert len(catalog) == 14
    event = catalog.get("order.line_item.shipped")
    assert event.model is ShipmentData
    assert event.description == "A line item left the warehouse"
    data = {"shipment_id": "s1", "weight_grams": 1200, "price": 499.5, "fragile": True}
    assert catalog.to_json("order.line_item.shipped", data) == data
    # ints are accepted for float fields (JSON has one number type) ...
    assert catalog.to_json("order.line_item.shipped", {**data, "price": 500})["price"] == 500
    # ... but bools are not, for any number field, and not strings for bools.
    for field, value in [("price", True), ("weight_grams", False), ("fragile", 1)]:
        with pytest.raises(PayloadError) as info:
            catalog.to_json("order.line_item.shipped", {**data, field: value})
        assert info.value.path == f"data.{field}"
    # The platform catalog returned by a fresh call is unaffected.
    assert "order.line_item.shipped" not in platform_catalog()


def test_register_free_form_event() -> None:
    catalog = EventCatalog()
    catalog.register("audit.logged")
    data = {"anything": [1, {"goes": None}], "नाम": "मोहन"}
    assert catalog.to_json("audit.logged", data) == data
    assert catalog.from_json("audit.logged", data) == data
    with pytest.raises(PayloadError) as info:
        catalog.to_json("audit.logged", [1, 2])
    assert info.value.path == "data"
    with pytest.raises(PayloadError):
        catalog.to_json("audit.logged", ShipmentData(shipment_id="s", weight_grams=1, price=1.0))


def test_register_rules() -> None:
    catalog = EventCatalog()
    catalog.register("order.shipped", ShipmentData)
    catalog.register("order.shipped", ShipmentData)  # the same again is fine
    with pytest.raises(ValueError, match="already registered"):
        catalog.register("order.shipped", MessageData)
    with pytest.raises(TypeError):
        catalog.register("order.other", dict)
    with pytest.raises(InvalidEventName):
        catalog.register("Order.Shipped", ShipmentData)
    with pytest.raises(InvalidEventName):
        catalog.register("order..shipped")
    assert len(catalog) == 1


# --- names and patterns ---------------------------------------------------------------------

words = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
names = st.lists(words, min_size=1, max_size=5).map(".".join)


@given(names)
def test_valid_names_are_accepted(name: str) -> None:
    assert validate_event_name(name) == name
    assert validate_pattern(name) == name
    assert validate_pattern(name + ".*") == name + ".*"


@pytest.mark.parametrize(
    "name",
    [
        "message.delivered",
        "a",
        "order.line_item.shipped",
        "v2.event_1",
        "a" * MAX_NAME_LENGTH,
        ".".join(["ab"] * 85) + ".a",  # 256 characters
    ],
)
def test_known_good_names(name: str) -> None:
    assert validate_event_name(name) == name


BAD_NAMES: list[Any] = [
    "",
    "Message.sent",
    "message.Sent",
    "MESSAGE",
    "1message",
    "message.1sent",
    "_message",
    "message..sent",
    ".message",
    "message.",
    "message sent",
    "message-sent",
    "message/sent",
    "message.sent\n",
    "mëssage",
    "message.*",
    "*",
    "a" * (MAX_NAME_LENGTH + 1),
    "ab." * 100,
    None,
    5,
    b"message.sent",
    ["message.sent"],
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused(name: Any) -> None:
    with pytest.raises(InvalidEventName):
        validate_event_name(name)


@pytest.mark.parametrize(
    "pattern",
    [p for p in BAD_NAMES if p not in ("message.*", "*")]
    + ["message.*.sent", "*.sent", "message*", "message.**", "**", ".*", "message.sent.*.*"],
)
def test_bad_patterns_are_refused(pattern: Any) -> None:
    with pytest.raises(InvalidEventName):
        validate_pattern(pattern)


def test_good_patterns() -> None:
    for pattern in ["*", "message.*", "message.sent", "order.line_item.*"]:
        assert validate_pattern(pattern) == pattern


def test_pattern_matching_semantics() -> None:
    assert pattern_matches("*", "message.sent")
    assert pattern_matches("*", "a")
    assert pattern_matches("message.sent", "message.sent")
    assert not pattern_matches("message.sent", "message.sent_v2")
    assert not pattern_matches("message.sent", "message")
    assert pattern_matches("message.*", "message.sent")
    assert pattern_matches("message.*", "message.sub.deeper")
    assert not pattern_matches("message.*", "message")
    assert not pattern_matches("message.*", "messages.sent")
    assert not pattern_matches("message.*", "grievance.created")
    assert any_pattern_matches(("payment.*", "message.read"), "message.read")
    assert not any_pattern_matches(("payment.*", "message.read"), "message.sent")
    assert not any_pattern_matches((), "message.sent")


@given(
    pattern_words=st.lists(words, min_size=1, max_size=3),
    tail=st.lists(words, max_size=3),
    other=names,
    below=st.booleans(),
)
def test_prefix_patterns_match_exactly_the_names_below_them(
    pattern_words: list[str], tail: list[str], other: str, below: bool
) -> None:
    prefix = ".".join(pattern_words)
    name = ".".join(pattern_words + tail) if below else other
    pattern = validate_pattern(prefix + ".*")
    name_words = name.split(".")
    expected = len(name_words) > len(pattern_words) and (
        name_words[: len(pattern_words)] == pattern_words
    )
    assert pattern_matches(pattern, name) == expected
    assert pattern_matches("*", name)
    assert pattern_matches(name, name)
    assert pattern_matches(prefix, name) == (prefix == name)


def test_platform_events_are_selected_by_their_group_pattern() -> None:
    for name in CONTRACT_EVENTS:
        group = name.split(".")[0]
        chosen = {n for n in CONTRACT_EVENTS if pattern_matches(f"{group}.*", n)}
        assert name in chosen
        assert all(n.startswith(group + ".") for n in chosen)


# --- the envelope ---------------------------------------------------------------------------


def test_build_event_envelope() -> None:
    from webhook_core.envelope import build_event

    data = {**minimal(MessageData), "metadata": {"नाम": "राजेश कुमार", "n": 1.0, "big": 1e21}}
    event = build_event(CATALOG, "message.delivered", data, event_id="evt_1", now=1704067200.9)
    assert event.id == "evt_1"
    assert event.name == "message.delivered"
    assert event.timestamp == "2024-01-01T00:00:00Z"
    body = json.loads(event.body)
    assert list(body) == ["event", "timestamp", "data", "id"]
    assert body["event"] == "message.delivered"
    assert body["timestamp"] == "2024-01-01T00:00:00Z"
    assert body["id"] == "evt_1"
    assert body["data"] == data
    assert b'"n":1,' in event.body
    assert b'"big":1e+21' in event.body
    assert "राजेश कुमार".encode() in event.body


def test_names_and_ids_hold_no_character_json_escapes() -> None:
    """build_event writes the name and the id into the body unescaped (as the timestamp)."""
    from webhook_core.envelope import validate_id

    for code in [*range(0x80), 0x2028, 0xE9, 0xFFFF]:
        c = chr(code)
        escaped = json.dumps(c, ensure_ascii=False) != f'"{c}"'
        for check in (
            functools.partial(validate_id, f"a{c}", "id"),
            functools.partial(validate_event_name, f"a{c}"),
        ):
            try:
                check()
            except (PayloadError, InvalidEventName):
                continue
            assert not escaped, repr(c)


@given(
    name=names,
    event_id=st.from_regex(r"[A-Za-z0-9_\-:]{1,128}", fullmatch=True),
    now=st.floats(min_value=0, max_value=253402300799),
    data=st.dictionaries(st.text(max_size=5), json_values, max_size=4),
)
def test_build_event_body_is_the_canonical_envelope(
    name: str, event_id: str, now: float, data: dict[str, Any]
) -> None:
    from webhook_core.envelope import build_event, envelope_bytes
    from webhook_core.timefmt import rfc3339

    catalog = EventCatalog()
    catalog.register(name)
    event = build_event(catalog, name, data, event_id=event_id, now=now)
    assert event.body == envelope_bytes(name, rfc3339(now), data, event_id)


@pytest.mark.parametrize(
    ("metadata", "path"),
    [
        ({"price": math.nan}, "$.data.metadata.price"),
        ({"items": [1, {"qty": 2**60}]}, "$.data.metadata.items[1].qty"),
        ({"blob": b"x"}, "$.data.metadata.blob"),
        ({"name": "bad\ud800"}, "$.data.metadata.name"),
    ],
)
def test_build_event_names_unpublishable_fields(metadata: dict[str, Any], path: str) -> None:
    from webhook_core.envelope import build_event

    data = {**minimal(MessageData), "metadata": metadata}
    with pytest.raises(PayloadError) as info:
        build_event(CATALOG, "message.sent", data, event_id="evt_1", now=0)
    assert info.value.path == path


@pytest.mark.parametrize("event_id", ["", "has space", "a" * 129, "évt", "a/b", "a.b", 5])
def test_build_event_refuses_bad_ids(event_id: Any) -> None:
    from webhook_core.envelope import build_event

    with pytest.raises(PayloadError) as info:
        build_event(CATALOG, "message.sent", minimal(MessageData), event_id=event_id, now=0)
    assert info.value.path == "id"


def test_verification_event_body() -> None:
    from webhook_core.envelope import VERIFICATION_EVENT, verification_event

    event = verification_event("tok_abc", event_id="evt_v", now=1704067200)
    assert event.name == VERIFICATION_EVENT == "webhook.verification"
    assert json.loads(event.body) == {
        "event": "webhook.verification",
        "timestamp": "2024-01-01T00:00:00Z",
        "data": {"verification_token": "tok_abc"},
        "id": "evt_v",
    }
