"""The management API over real HTTP on 127.0.0.1: uvicorn and hypercorn, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount

from tests import pg
from tests.admin.servers import SERVERS, serving
from transports.admin import management_app
from transports.admin.app import BODY_LIMIT, OPERATIONS
from transports.admin.auth import create_token
from transports.driving import operations
from transports.http.guard import OutboundPolicy
from transports.stores.interface import Store
from transports.stores.sqlite import SQLiteStore
from transports.testing.loopback import Handler, LoopbackReceiver, ReceivedRequest, Respond
from webhook_core import HandshakeResult

OPERATOR = "operator-token-0123456789"
LOOPBACK = OutboundPolicy(allowed_networks=("127.0.0.0/8",), allow_http=True)
PROBLEM = "application/problem+json"


@attrs.frozen
class Served:
    url: str
    store: Any  # a Store and a TokenStore

    def client(self, token: str | None = OPERATOR) -> httpx.Client:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=30)


def _open(kind: str, directory: Path) -> Store:
    if kind == "sqlite":
        return SQLiteStore(directory / "admin.db")
    from transports.stores.postgres import PostgresStore

    return PostgresStore(pg.require_postgres(), schema=pg.fresh_schema())


@pytest.fixture(params=[(s, k) for s in SERVERS for k in ("sqlite", "postgres")], ids=str)
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    server, kind = request.param
    store = _open(kind, tmp_path)
    app = management_app(store, operator_token=OPERATOR, outbound=LOOPBACK)
    with serving(app, server) as url:
        yield Served(url, store)
    store.close()


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Served]:
    """uvicorn over SQLite, for the tests of behaviour that does not depend on either."""
    store = SQLiteStore(tmp_path / "admin.db")
    with serving(
        management_app(store, operator_token=OPERATOR, outbound=LOOPBACK), "uvicorn"
    ) as url:
        yield Served(url, store)
    store.close()


def activate(store: Store, endpoint_id: str, tenant: str) -> None:
    """The dispatcher's handshake succeeding (as it would with a running dispatcher)."""
    endpoint = operations.find_endpoint(store, endpoint_id, tenant)
    assert endpoint is not None and endpoint.verification_token is not None
    token = endpoint.verification_token
    operations.record_handshake(store, endpoint_id, token, HandshakeResult(0, 200, token.encode()))


def problem(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    document: dict[str, Any] = response.json()
    assert document["status"] == status and document["title"]
    for word in words:
        assert word in document["detail"], document
    return document


def test_tenants_see_and_change_only_their_own_endpoints(served: Served) -> None:
    _, acme_token = create_token(served.store, "acme", 0.0)
    with served.client() as operator, served.client(acme_token) as acme:
        mine = acme.post("/endpoints", json={"url": "https://acme.example/hook"})
        assert mine.status_code == 201, mine.text
        created = mine.json()
        assert created["tenant"] == "acme" and created["secret"].startswith("whsec_")
        assert created["state"] == "verifying"
        theirs = operator.post("/endpoints", json={"url": "https://default.example/hook"}).json()
        assert theirs["tenant"] == "default"

        assert [e["id"] for e in acme.get("/endpoints").json()["data"]] == [created["id"]]
        listed = operator.get("/endpoints", params={"tenant": "acme"}).json()
        assert [e["id"] for e in listed["data"]] == [created["id"]]
        assert "secret" not in listed["data"][0] and "secrets" not in listed["data"][0]
        problem(acme.get(f"/endpoints/{theirs['id']}"), 404, theirs["id"])
        problem(acme.delete(f"/endpoints/{theirs['id']}"), 404)
        problem(acme.get("/endpoints", params={"tenant": "default"}), 403, "acme")
        problem(operator.get("/endpoints", params={"tenant": "no such/tenant"}), 422, "tenant")

        changed = acme.patch(f"/endpoints/{created['id']}", json={"events": ["message.*"]})
        assert changed.json()["events"] == ["message.*"]
        rotated = acme.post(f"/endpoints/{created['id']}/rotate-secret", json={"grace_seconds": 60})
        assert rotated.json()["secret"] != created["secret"]
        assert acme.delete(f"/endpoints/{created['id']}").status_code == 204
        problem(acme.get(f"/endpoints/{created['id']}"), 404)
        assert operator.get(f"/endpoints/{theirs['id']}").status_code == 200


def test_requests_without_a_valid_token_are_refused(served: Served) -> None:
    record, token = create_token(served.store, "acme", 0.0)
    with served.client(None) as anonymous:
        problem(anonymous.get("/endpoints"), 401, "Bearer")
    with served.client("wrong-token") as wrong:
        problem(wrong.get("/endpoints"), 401)
    with served.client(token) as acme:
        assert acme.get("/endpoints").status_code == 200
        served.store.delete_token(record.id)
        problem(acme.get("/endpoints"), 401, "revoked")
    assert httpx.get(served.url + "/healthz").json()["status"] == "ok"


def test_bad_input_is_a_problem_naming_the_field_and_stores_nothing(local: Served) -> None:
    with local.client() as api:
        bad = api.post(
            "/endpoints", content=b'{"url": ', headers={"content-type": "application/json"}
        )
        problem(bad, 400, "not valid JSON")
        problem(api.post("/endpoints", json={"url": 5}), 422, "'url'", "string")
        problem(api.post("/endpoints", json={}), 422, "'url' is required")
        problem(
            api.post("/endpoints", json={"url": "https://a.example", "colour": 1}), 422, "colour"
        )
        problem(api.post("/endpoints", json=[1]), 422, "object")
        problem(api.post("/endpoints", json={"url": "ftp://a.example"}), 422, "ftp")
        problem(
            api.post("/endpoints", json={"url": "https://a.example", "events": ["Bad Name"]}),
            422,
            "Bad Name",
        )
        problem(
            api.post("/endpoints", json={"url": "https://a.example", "headers": {"x": 1}}),
            422,
            "headers.x",
        )
        problem(api.post("/events", json={"event": "no.such", "data": {}}), 422, "no.such")
        problem(api.post("/events", json={"event": "message.sent", "data": {}}), 422, "message_id")
        problem(api.get("/deliveries", params={"state": "lost"}), 422, "state")
        problem(api.get("/deliveries", params={"since": "yesterday"}), 422, "since")
        problem(api.get("/deliveries", params={"cursor": "!!"}), 422, "cursor")
        problem(api.get("/deliveries", params={"limit": "0"}), 422, "limit")
        problem(api.get("/nothing/here"), 404, "/api/v1/nothing/here")
        problem(api.put("/endpoints"), 405, "PUT")
        huge = b'{"url": "' + b"a" * BODY_LIMIT + b'"}'
        problem(api.post("/endpoints", content=huge), 413, "larger")

        def chunks() -> Iterator[bytes]:
            yield b'{"url": "'
            for _ in range(BODY_LIMIT // 65536 + 1):
                yield b"a" * 65536

        problem(api.post("/endpoints", content=chunks()), 413, "larger")
        assert api.get("/endpoints").json() == {"data": [], "next_cursor": None}


def test_events_deliveries_tests_replays_and_recovery(served: Served) -> None:
    def verify(request: ReceivedRequest) -> Respond:
        return Respond(200, body=request.json()["data"].get("verification_token", "ok").encode())

    with LoopbackReceiver() as rx, served.client() as api:
        rx.route("/hook", Handler(verify))
        endpoint = api.post("/endpoints", json={"url": rx.url("/hook")}).json()
        problem(api.post(f"/endpoints/{endpoint['id']}/test", json={}), 422, "verifying")
        activate(served.store, endpoint["id"], "default")

        tested = api.post(f"/endpoints/{endpoint['id']}/test", json={"event": "payment.failed"})
        assert tested.status_code == 200, tested.text
        outcome = tested.json()
        assert outcome["status"] == 200 and outcome["state"] == "delivered"
        assert outcome["duration_ms"] >= 0
        (sent,) = rx.requests_for("/hook")
        assert sent.json()["event"] == "payment.failed" and sent.header("webhook-signature")

        published = api.post("/events", json={"event": "message.sent", "data": _message()})
        assert published.status_code == 202
        assert published.json()["deliveries"] == 1
        waiting = api.get("/deliveries", params={"state": "pending", "event": "message.sent"})
        (delivery,) = waiting.json()["data"]
        assert delivery["test"] is False
        retried = api.post(f"/deliveries/{delivery['id']}/retry")
        assert retried.status_code == 202
        problem(api.post(f"/deliveries/{delivery['id']}/replay"), 409, "pending")

        shown = api.get(f"/deliveries/{outcome['delivery_id']}").json()
        assert shown["test"] is True and shown["event"]["name"] == "payment.failed"
        (attempt,) = shown["attempts"]
        assert attempt["status"] == 200
        headers = attempt["request_headers"]
        assert headers["webhook-signature"] == "[redacted]"
        assert headers["webhook-id"] == sent.header("webhook-id")

        api.post(f"/endpoints/{endpoint['id']}/disable", json={"reason": "maintenance"})
        api.post(f"/endpoints/{endpoint['id']}/enable")
        failed = api.get("/deliveries", params={"state": "failed"}).json()["data"]
        assert [d["id"] for d in failed] == [delivery["id"]]
        replayed = api.post(f"/deliveries/{delivery['id']}/replay")
        assert replayed.status_code == 202 and replayed.json()["replay_of"] == delivery["id"]
        recovered = api.post("/deliveries/recover", json={"since": "2000-01-01T00:00:00Z"})
        assert recovered.json()["replayed"] == 1

        first = api.get("/deliveries", params={"limit": 2}).json()
        assert len(first["data"]) == 2 and first["next_cursor"]
        rest = api.get("/deliveries", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        assert rest["next_cursor"] is None
        every = [d["id"] for d in first["data"] + rest["data"]]
        assert len(every) == len(set(every)) == 4
        problem(api.get("/deliveries/dlv_nothing"), 404, "dlv_nothing")


def test_the_event_catalog_has_schemas_and_samples(local: Served) -> None:
    with local.client() as api:
        types = {t["name"]: t for t in api.get("/event-types").json()["data"]}
    sent = types["message.sent"]
    assert sent["description"] and sent["sample"]["message_id"]
    assert "message_id" in sent["schema"]["required"]
    assert sent["schema"]["properties"]["to"] == {"type": "string"}


def test_the_openapi_document_matches_the_routes(local: Served) -> None:
    with local.client() as api:
        document = api.get("/openapi.json").json()
        assert document["openapi"] == "3.1.0"
        listed = {
            (method.upper(), path)
            for path, methods in document["paths"].items()
            for method in methods
        }
        assert listed == {(op.method, op.path) for op in OPERATIONS}
        for method, path in sorted(listed):
            target = path.replace("{endpoint_id}", "ep_x").replace("{delivery_id}", "dlv_x")
            answer = api.request(method, local.url + target)
            assert answer.status_code != 405, (method, path)
            if answer.status_code == 404:
                assert "no such resource" not in answer.json()["detail"], (method, path)
            entry = document["paths"][path][method.lower()]
            body = entry.get("requestBody", {}).get("content", {}).get("application/json")
            required = (body or {}).get("schema", {}).get("required", [])
            if required and "{" not in path:
                refused = problem(api.request(method, local.url + target, json={}), 422)
                assert f"'{required[0]}' is required" in refused["detail"]


def test_healthz_reports_a_store_that_does_not_answer(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "gone.db")
    with serving(management_app(store, operator_token=OPERATOR), "uvicorn") as url:
        assert httpx.get(url + "/healthz").status_code == 200
        store.close()
        problem(httpx.get(url + "/healthz"), 503, "does not answer")


def test_a_host_mounts_the_app_and_authorizes_its_own_way(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "host.db")

    def authorize(request: Request) -> str | None:
        return request.headers.get("x-customer")

    host = Starlette(routes=[Mount("/admin", app=management_app(store, authorize=authorize))])
    with serving(host, "hypercorn") as url:
        problem(httpx.get(url + "/admin/api/v1/endpoints"), 401)
        made = httpx.post(
            url + "/admin/api/v1/endpoints",
            json={"url": "https://globex.example/"},
            headers={"x-customer": "globex"},
        )
        assert made.json()["tenant"] == "globex"
        seen = httpx.get(url + "/admin/api/v1/endpoints", headers={"x-customer": "acme"})
        assert seen.json()["data"] == []
    store.close()


def _message() -> dict[str, str]:
    return {"message_id": "msg_1", "channel": "sms", "to": "+919876543210", "status": "sent"}
