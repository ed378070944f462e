"""The event catalog: event names and the typed models of their ``data``.

The platform's 13 events ship in ``platform_catalog()``; applications register
their own with ``EventCatalog.register``. ``data`` is validated strictly: a
missing or mistyped field, or a field the model does not have, is refused with
a ``PayloadError`` naming it (``data.amount``). Every model accepts an optional
free-form ``metadata`` object for the application's own fields. Optional fields
left as ``None`` are omitted from the body.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn
from cattrs.v import format_exception

from webhook_core.canonical import MAX_BODY
from webhook_core.errors import ConfigError, PayloadError, UnknownEvent
from webhook_core.names import validate_event_name

JSONObject = dict[str, Any]
T = TypeVar("T")


@attrs.frozen(kw_only=True)
class MessageData:
    """``data`` of the message events: one message on one channel to one recipient."""

    message_id: str
    channel: str  # "whatsapp", "sms", "email", "rcs", "voice", ...
    to: str  # recipient address: E.164 phone number or e-mail address
    status: str  # "sent", "delivered", "failed" or "read"
    campaign_id: str | None = None
    template: str | None = None
    error_code: str | None = None  # message.failed: the channel's error code
    error_message: str | None = None  # message.failed: human-readable reason
    metadata: JSONObject | None = None


@attrs.frozen(kw_only=True)
class GrievanceData:
    """``data`` of the grievance events: a citizen's or customer's complaint."""

    grievance_id: str
    status: str  # "open", "in_progress", "resolved", "closed"
    category: str | None = None
    priority: str | None = None  # "low", "medium", "high", "urgent"
    subject: str | None = None
    reporter: str | None = None  # who filed it: phone number, e-mail or user id
    assigned_to: str | None = None
    previous_status: str | None = None  # grievance.updated: the status before this change
    resolution: str | None = None  # grievance.resolved: how it was resolved
    metadata: JSONObject | None = None


@attrs.frozen(kw_only=True)
class PaymentData:
    """``data`` of the payment events. Amounts are integers in the currency's minor unit."""

    payment_id: str
    amount: int  # minor units: paise for INR, cents for USD
    currency: str  # ISO 4217 code, e.g. "INR"
    status: str  # "processed", "failed", "refunded"
    method: str | None = None  # "upi", "card", "netbanking", ...
    order_id: str | None = None
    failure_reason: str | None = None  # payment.failed
    refund_id: str | None = None  # payment.refunded
    refunded_amount: int | None = None  # payment.refunded, minor units
    metadata: JSONObject | None = None


@attrs.frozen(kw_only=True)
class CampaignData:
    """``data`` of the campaign events: a bulk send over one channel."""

    campaign_id: str
    name: str
    channel: str
    status: str  # "running", "completed", "failed"
    audience_size: int | None = None  # campaign.started
    sent_count: int | None = None  # campaign.completed
    delivered_count: int | None = None  # campaign.completed
    failed_count: int | None = None  # campaign.completed
    error_message: str | None = None  # campaign.failed
    metadata: JSONObject | None = None


PLATFORM_EVENTS: dict[str, tuple[type[Any], str]] = {
    "message.sent": (MessageData, "Message was sent"),
    "message.delivered": (MessageData, "Message was delivered"),
    "message.failed": (MessageData, "Message delivery failed"),
    "message.read": (MessageData, "Message was read (WhatsApp only)"),
    "grievance.created": (GrievanceData, "New grievance created"),
    "grievance.updated": (GrievanceData, "Grievance status updated"),
    "grievance.resolved": (GrievanceData, "Grievance resolved"),
    "payment.processed": (PaymentData, "Payment processed"),
    "payment.failed": (PaymentData, "Payment failed"),
    "payment.refunded": (PaymentData, "Payment refunded"),
    "campaign.started": (CampaignData, "Campaign started"),
    "campaign.completed": (CampaignData, "Campaign completed"),
    "campaign.failed": (CampaignData, "Campaign failed"),
}


def _strict(kind: type[T], accept: tuple[type, ...]) -> Callable[[Any, type], T]:
    names = " or ".join(a.__name__ for a in accept)

    def structure(value: Any, _: type) -> T:
        if type(value) is bool and bool not in accept:
            raise TypeError(f"expected {names}, got bool")
        if not isinstance(value, accept):
            raise TypeError(f"expected {names}, got {type(value).__name__}")
        return value  # type: ignore[return-value]

    return structure


def _json_object(value: Any, _: type) -> JSONObject:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"object key {key!r} is not a string")
    return dict(value)


def _describe(exc: BaseException, kind: type | None) -> str:
    """cattrs' error text, but keeping our hooks' own reasons ("expected int, got bool")."""
    if isinstance(exc, TypeError) and exc.args and str(exc.args[0]).startswith(_OWN_REASONS):
        return str(exc.args[0])
    return format_exception(exc, kind)


_OWN_REASONS = ("expected ", "object key ")


def make_converter() -> cattrs.Converter:
    """A cattrs converter that refuses wrong types instead of coercing them."""
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(str, _strict(str, (str,)))
    converter.register_structure_hook(int, _strict(int, (int,)))
    converter.register_structure_hook(float, _strict(float, (int, float)))
    converter.register_structure_hook(bool, _strict(bool, (bool,)))
    converter.register_structure_hook_func(lambda t: t == JSONObject, _json_object)
    return converter


@attrs.frozen
class EventType:
    """A registered event: its name, the model of its ``data`` (None: free-form), a description."""

    name: str
    model: type[Any] | None
    description: str = ""


class EventCatalog:
    """Event names known to the application, with the models of their ``data``.

    ``max_body``: the largest event body (in bytes) that may be published; by
    default what the library's receiver accepts (``MAX_BODY``, 1 MiB), since a
    larger one would be refused with 413 on every attempt.
    """

    def __init__(self, *, max_body: int = MAX_BODY) -> None:
        if not (isinstance(max_body, int) and max_body > 0):
            raise ConfigError("max_body must be a positive number of bytes")
        self.max_body = max_body
        self._types: dict[str, EventType] = {}
        self._converter = make_converter()

    def register(self, name: str, model: type[Any] | None = None, description: str = "") -> None:
        """Register an event name with an attrs model for its ``data`` (None: any object)."""
        validate_event_name(name)
        if model is not None:
            if not attrs.has(model):
                raise TypeError(f"the model for {name!r} must be an attrs class, not {model!r}")
            self._register_model(model)
        existing = self._types.get(name)
        if existing is not None and existing.model is not model:
            raise ValueError(f"event {name!r} is already registered with {existing.model!r}")
        self._types[name] = EventType(name, model, description)

    def _register_model(self, model: type[Any]) -> None:
        conv = self._converter
        conv.register_structure_hook(
            model, make_dict_structure_fn(model, conv, _cattrs_forbid_extra_keys=True)
        )
        conv.register_unstructure_hook(
            model, make_dict_unstructure_fn(model, conv, _cattrs_omit_if_default=True)
        )

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Any:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)

    def get(self, name: str) -> EventType:
        """The registered ``EventType`` for ``name``; ``UnknownEvent`` if there is none."""
        try:
            return self._types[name]
        except KeyError:
            validate_event_name(name)
            raise UnknownEvent(
                f"event {name!r} is not in the catalog; register it with "
                "EventCatalog.register(name, model)"
            ) from None

    def to_json(self, name: str, data: Any) -> JSONObject:
        """Validate ``data`` for event ``name`` and return it as a JSON-ready dict.

        ``data`` may be an instance of the event's model or a mapping of its fields.
        """
        model = self.get(name).model
        if model is None:
            if isinstance(data, Mapping):
                return _json_object(data, dict)
            if attrs.has(type(data)):
                raise PayloadError("data", f"{name!r} is free-form; pass a mapping, not a model")
            raise PayloadError("data", f"expected an object, got {type(data).__name__}")
        if isinstance(data, model):
            # attrs models do not check their field types: validate what was built.
            result: JSONObject = self._converter.unstructure(data)
            self.from_json(name, result)
            return result
        if attrs.has(type(data)):
            raise PayloadError(
                "data", f"{name!r} takes {model.__name__}, not {type(data).__name__}"
            )
        return self._converter.unstructure(self.from_json(name, data))  # type: ignore[no-any-return]

    def from_json(self, name: str, data: Any) -> Any:
        """Structure a received ``data`` object into the event's model (free-form: a dict)."""
        model = self.get(name).model
        if not isinstance(data, Mapping):
            raise PayloadError("data", f"expected an object, got {type(data).__name__}")
        if model is None:
            return _json_object(data, dict)
        try:
            return self._converter.structure(data, model)
        except Exception as exc:
            messages = cattrs.transform_error(exc, path="data", format_exception=_describe)
            problems = [m.rpartition(" @ ") for m in messages]
            if not problems:
                raise PayloadError("data", str(exc)) from None
            reason, _, path = problems[0]
            others = [f"{r} at {p}" for r, _, p in problems[1:]]
            raise PayloadError(path or "data", "; ".join([reason, *others])) from None


def platform_catalog(*, max_body: int = MAX_BODY) -> EventCatalog:
    """A new catalog holding the platform's 13 events (``max_body``: see ``EventCatalog``)."""
    catalog = EventCatalog(max_body=max_body)
    for name, (model, description) in PLATFORM_EVENTS.items():
        catalog.register(name, model, description)
    return catalog
