"""Each framework adapter, served by a real server on 127.0.0.1, answering real requests.

ASGI apps run under uvicorn, WSGI apps (plain, Flask, Django) under Werkzeug's
threaded server. Every adapter must answer 200 to a verified event, the
handshake with its token, 401 to a bad signature, 400 to a malformed body, 200
to a duplicate, 405 to a GET and 413 to an oversized body; and a real sender
(the threaded driver) must get its endpoint verified and its event handled.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.receiving.receiving_helpers import (
    OTHER_SECRET,
    SECRET,
    event_request,
    handshake_request,
    serve_asgi,
    serve_wsgi,
    sign,
)
from transports.receiving import ReceivedEvent, Receiver, ThreadWorkQueue, asgi_app, wsgi_app
from transports.stores.memory import MemoryStore
from transports.sync.service import ThreadedWebhookService
from transports.testing.loopback import LOOPBACK_NETWORKS
from webhook_core import EndpointState, MessageData
from webhook_core.canonical import MAX_BODY

FRAMEWORKS = ("asgi", "starlette-route", "starlette-mount", "fastapi", "wsgi", "flask", "django")
PATH = "/webhooks/netasampark"


def _starlette_route(receiver: Receiver) -> Any:
    from starlette.applications import Starlette
    from starlette.routing import Route

    from transports.receiving.starlette import webhook_endpoint

    return Starlette(routes=[Route(PATH, webhook_endpoint(receiver), methods=["POST"])])


def _starlette_mount(receiver: Receiver) -> Any:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    return Starlette(routes=[Mount("/webhooks", asgi_app(receiver))])


def _fastapi(receiver: Receiver) -> Any:
    from fastapi import FastAPI

    from transports.receiving.starlette import webhook_endpoint

    app = FastAPI()
    app.post(PATH)(webhook_endpoint(receiver))
    return app


def _flask(receiver: Receiver) -> Any:
    import flask

    from transports.receiving.flask import flask_view

    app = flask.Flask("webhook_receiver_test")
    app.add_url_rule(PATH, view_func=flask_view(receiver), methods=["POST"])
    return app


DJANGO_URLS = types.ModuleType("webhook_receiver_test_urls")
DJANGO_URLS.urlpatterns = []  # type: ignore[attr-defined]


def _django(receiver: Receiver) -> Any:
    import django
    from django.conf import settings

    if not settings.configured:
        sys.modules[DJANGO_URLS.__name__] = DJANGO_URLS
        settings.configure(
            DEBUG=False,
            SECRET_KEY="test-only",
            ALLOWED_HOSTS=["127.0.0.1"],
            ROOT_URLCONF=DJANGO_URLS.__name__,
            MIDDLEWARE=[
                "django.middleware.common.CommonMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware",
            ],
            INSTALLED_APPS=[],
        )
        django.setup()
    from django.core.wsgi import get_wsgi_application
    from django.urls import clear_url_caches, path

    from transports.receiving.django import django_view

    DJANGO_URLS.urlpatterns = [path(PATH.lstrip("/"), django_view(receiver))]  # type: ignore[attr-defined]
    clear_url_caches()
    return get_wsgi_application()


def _plain_wsgi(receiver: Receiver) -> Any:
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    def not_found(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]

    return DispatcherMiddleware(not_found, {"/webhooks": wsgi_app(receiver)})


BUILDERS: dict[str, tuple[Callable[[Receiver], Any], Callable[[Any], Any]]] = {
    "asgi": (asgi_app, serve_asgi),
    "starlette-route": (_starlette_route, serve_asgi),
    "starlette-mount": (_starlette_mount, serve_asgi),
    "fastapi": (_fastapi, serve_asgi),
    "wsgi": (_plain_wsgi, serve_wsgi),
    "flask": (_flask, serve_wsgi),
    "django": (_django, serve_wsgi),
}


@contextlib.contextmanager
def running(framework: str, receiver: Receiver) -> Iterator[str]:
    """``receiver`` served through ``framework``; yields the webhook URL."""
    build, serve = BUILDERS[framework]
    with serve(build(receiver)) as base:
        yield base + ("" if framework == "asgi" else PATH)


class Site:
    """A receiver served through one framework, with what its handlers saw."""

    def __init__(self, url: str, receiver: Receiver, seen: list[ReceivedEvent[Any]]) -> None:
        self.url = url
        self.receiver = receiver
        self.seen = seen
        self.client = httpx.Client(timeout=10, trust_env=False)

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.client.post(self.url, content=body, headers=headers)


@pytest.fixture(params=FRAMEWORKS)
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    receiver = Receiver(SECRET)
    seen: list[ReceivedEvent[Any]] = []
    receiver.add_handler("message.*", seen.append)
    with running(request.param, receiver) as url:
        site = Site(url, receiver, seen)
        yield site
        site.client.close()


def test_a_verified_event_is_handled(site: Site) -> None:
    response = site.post(*event_request())
    assert response.status_code == 200, response.text
    [event] = site.seen
    assert isinstance(event.data, MessageData)
    assert event.data.message_id == "msg_1"


def test_the_handshake_is_answered(site: Site) -> None:
    response = site.post(*handshake_request("tok_framework"))
    assert response.status_code == 200
    assert response.json() == {"verification_token": "tok_framework"}
    assert site.seen == []


def test_a_bad_signature_is_401(site: Site) -> None:
    response = site.post(*event_request(secret=OTHER_SECRET))
    assert response.status_code == 401
    assert "no signature" in response.text
    assert site.seen == []


def test_an_unsigned_request_is_401(site: Site) -> None:
    body, _ = event_request()
    response = site.post(body, {"Content-Type": "application/json"})
    assert response.status_code == 401
    assert "missing header webhook-signature" in response.text


def test_a_malformed_body_is_400(site: Site) -> None:
    body = b'{"event": "message.sent", "timestamp": "now", "data": {}}'
    response = site.post(body, sign(body))
    assert response.status_code == 400
    assert "timestamp" in response.text


def test_a_duplicate_is_2xx_and_handled_once(site: Site) -> None:
    body, headers = event_request(event_id="evt_twice")
    statuses = [site.post(body, headers).status_code for _ in range(2)]
    assert statuses == [200, 200]
    assert len(site.seen) == 1


def test_a_get_is_405(site: Site) -> None:
    assert site.client.get(site.url).status_code == 405


def test_an_oversized_body_is_413(site: Site) -> None:
    body = b'{"event": "message.sent", "data": "' + b"x" * MAX_BODY + b'"}'
    response = site.post(body, sign(body))
    assert response.status_code == 413
    assert site.seen == []


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_library_sender_is_verified_and_delivers(framework: str) -> None:
    receiver = Receiver(SECRET)
    got = threading.Event()
    seen: list[ReceivedEvent[Any]] = []

    @receiver.on("message.*")
    def handle(event: ReceivedEvent[Any]) -> None:
        seen.append(event)
        got.set()

    with (
        running(framework, receiver) as url,
        ThreadedWebhookService(
            MemoryStore(), allow_http=True, allowed_networks=LOOPBACK_NETWORKS
        ) as hooks,
    ):
        endpoint = hooks.add_endpoint(url, secret=SECRET, events=["message.*"])
        for _ in range(1000):
            current = hooks.get_endpoint(endpoint.id)
            assert current is not None
            if current.state is not EndpointState.VERIFYING:
                break
            got.wait(0.01)
        assert current is not None
        assert current.state is EndpointState.ACTIVE, current.last_error
        result = hooks.publish(
            "message.read",
            {"message_id": "m9", "channel": "whatsapp", "to": "+91", "status": "read"},
        )
        hooks.drain(timeout=30)
        assert got.wait(10)
    [event] = seen
    assert (event.name, event.id, event.attempt) == ("message.read", result.event.id, 1)
    assert json.loads(event.body)["data"]["message_id"] == "m9"


@pytest.mark.parametrize("framework", ["starlette-route", "flask", "django"])
def test_respond_fast_through_a_framework(framework: str) -> None:
    release = threading.Event()
    done: list[str | None] = []
    with ThreadWorkQueue(workers=2) as work:
        receiver = Receiver(SECRET, background=work)

        @receiver.on("*")
        def slow(event: ReceivedEvent[Any]) -> None:
            assert release.wait(30)
            done.append(event.id)

        with running(framework, receiver) as url, httpx.Client(trust_env=False) as client:
            body, headers = event_request(event_id="evt_fast")
            response = client.post(url, content=body, headers=headers, timeout=10)
            assert response.status_code == 202
            assert done == []  # acknowledged while the handler is still blocked
            release.set()
            work.join()
    assert done == ["evt_fast"]


def _signed_envelope(data: bytes) -> tuple[bytes, dict[str, str]]:
    body = b'{"event":"message.sent","timestamp":"2026-01-01T00:00:00Z","data":' + data + b"}"
    return body, sign(body)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_a_signed_body_nested_too_deep_is_400(site: Site, depth: int) -> None:
    response = site.post(*_signed_envelope(b'{"a":' + b"[" * depth + b"]" * depth + b"}"))
    assert response.status_code == 400, response.text
    assert "nested too deeply" in response.text
    assert site.seen == []


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_a_signed_body_with_nan_is_400(site: Site, constant: bytes) -> None:
    response = site.post(*_signed_envelope(b'{"amount":' + constant + b"}"))
    assert response.status_code == 400, response.text
    assert "not JSON" in response.text


def test_a_signed_body_that_is_not_utf8_is_400(site: Site) -> None:
    response = site.post(*_signed_envelope(b'{"note":"\xff\xfe"}'))
    assert response.status_code == 400, response.text
    assert "not UTF-8" in response.text
