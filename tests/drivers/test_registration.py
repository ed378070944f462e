"""What the library refuses when an endpoint is registered or an event published (issue 18).

Each refusal is a ``ConfigError`` or ``PayloadError`` naming what is wrong
and what to do, raised before anything is stored.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from transports.stores.memory import MemoryStore
from transports.sync.service import ThreadedWebhookService
from webhook_core import ConfigError, EventCatalog, PayloadError, platform_catalog
from webhook_core.canonical import MAX_BODY

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def hooks() -> Iterator[ThreadedWebhookService]:
    catalog = platform_catalog(max_body=4096)
    catalog.register("order.shipped")
    with ThreadedWebhookService(MemoryStore(), catalog=catalog) as service:
        yield service


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("https://169.254.169.254/latest/meta-data", "metadata"),
        ("https://127.0.0.1/hook", "127.0.0.1 is loopback (127.0.0.0/8)"),
        ("https://10.0.0.5/hook", "10.0.0.5 is private (10.0.0.0/8)"),
        ("https://[::1]/hook", "::1 is loopback (::1/128)"),
    ],
)
def test_a_literal_address_the_guard_refuses_is_refused(
    hooks: ThreadedWebhookService, url: str, rule: str
) -> None:
    with pytest.raises(ConfigError, match="allowed_networks") as caught:
        hooks.add_endpoint(url)
    assert rule in str(caught.value)
    assert hooks.list_endpoints() == []


def test_the_guard_settings_decide_at_registration_too() -> None:
    with ThreadedWebhookService(MemoryStore(), allowed_networks="127.0.0.0/8") as hooks:
        assert hooks.add_endpoint("https://127.0.0.1/hook").url == "https://127.0.0.1/hook"
        with pytest.raises(ConfigError, match="metadata"):
            hooks.add_endpoint("https://169.254.169.254/")
        endpoint = hooks.add_endpoint("https://hooks.example.com/in")
        with pytest.raises(ConfigError, match="private"):
            hooks.change_endpoint(endpoint.id, url="https://192.168.1.9/in")


@pytest.mark.parametrize("pattern", ["bogus.event", "message.bogus", "order.lost"])
def test_a_pattern_that_selects_no_event_is_refused(
    hooks: ThreadedWebhookService, pattern: str
) -> None:
    with pytest.raises(ConfigError, match="matches no known event"):
        hooks.add_endpoint("https://a.example/x", events=[pattern])


@pytest.mark.parametrize("pattern", ["message.*", "*", "order.shipped", "order.*"])
def test_catalog_and_application_events_and_wildcards_are_accepted(
    hooks: ThreadedWebhookService, pattern: str
) -> None:
    endpoint = hooks.add_endpoint("https://a.example/x", events=[pattern])
    assert endpoint.filters == (pattern,)
    with pytest.raises(ConfigError, match="matches no known event"):
        hooks.change_endpoint(endpoint.id, events=["order.lost"])


@pytest.mark.parametrize(("secret", "size"), [("short", 5), ("whsec_" + "A" * 28, 21)])
def test_a_secret_under_24_bytes_is_refused(
    hooks: ThreadedWebhookService, secret: str, size: int
) -> None:
    with pytest.raises(ConfigError, match=f"the secret holds {size} bytes; give at least 24"):
        hooks.add_endpoint("https://a.example/x", secret=secret)
    assert hooks.add_endpoint("https://a.example/x", secret=SECRET).secrets[0].value == SECRET


def test_the_same_url_twice_needs_allow_duplicate(hooks: ThreadedWebhookService) -> None:
    first = hooks.add_endpoint("https://a.example/x")
    with pytest.raises(ConfigError, match=f"endpoint {first.id} already has URL"):
        hooks.add_endpoint("https://a.example/x")
    second = hooks.add_endpoint("https://a.example/x", allow_duplicate=True)
    assert {e.id for e in hooks.list_endpoints()} == {first.id, second.id}


def test_an_event_over_the_catalogs_limit_is_refused(hooks: ThreadedWebhookService) -> None:
    hooks.publish("order.shipped", {"note": "x" * 3000})
    with pytest.raises(PayloadError, match=r"would be \d+ bytes, over the limit of 4096"):
        hooks.publish("order.shipped", {"note": "x" * 5000})


def test_the_default_limit_is_what_the_receiver_accepts() -> None:
    assert EventCatalog().max_body == platform_catalog().max_body == MAX_BODY
    with pytest.raises(ConfigError, match="max_body"):
        EventCatalog(max_body=0)


def _nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("depth", [65, 500, 5000])
@pytest.mark.parametrize("event", ["order.shipped", "message.sent"])
def test_deep_data_is_the_same_payload_error_at_any_depth(
    hooks: ThreadedWebhookService, depth: int, event: str
) -> None:
    message: dict[str, object] = {"message_id": "m", "channel": "sms", "to": "+91"}
    data: dict[str, object] = {"metadata": _nested(depth)}
    if event == "message.sent":
        data = {**message, "status": "sent", **data}
    with pytest.raises(PayloadError) as caught:
        hooks.publish(event, data)
    assert caught.value.reason == "nested deeper than 64 levels"
    assert caught.value.path == "$.data.metadata" + ".a" * 63
