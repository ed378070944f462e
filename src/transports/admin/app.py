"""The management API: an ASGI application (Starlette) over a store.

Theory of operation
-------------------
``OPERATIONS`` is the API: each ``Operation`` is a method, a path, its handler,
its request body's schema and what it answers. The Starlette routes and the
OpenAPI document (``transports.admin.openapi``) are both made from it, so they
cannot disagree. Every request under ``/api/v1`` is authenticated first
(``transports.admin.auth``): the caller's tenant scopes every store call,
which goes through ``transports.driving.operations`` as the library's and the
command line's do (the same checks, the same messages). A blocking store is
called from worker threads. Bodies are read up to 1 MiB (413 beyond, before
reading the rest), parsed, and checked against the operation's schema;
anything wrong is a 4xx ``application/problem+json`` (``problems``). Lists
page with an opaque cursor: ``{"data": [...], "next_cursor": ... or null}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread
import attrs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from transports.admin.auth import Authorize, Caller, authenticate, operator_token_from_env
from transports.admin.probe import TIMEOUT, is_test, send_test
from transports.admin.problems import Problem, problem_for
from transports.admin.schema import HEADERS, JSON, STRING, STRINGS, body, check
from transports.clocks import Clock, SystemClock
from transports.driving import operations
from transports.driving.documents import delivery_json, endpoint_json
from transports.http.guard import OutboundPolicy
from transports.http.httpx_transport import HttpxSyncTransport
from transports.stores.interface import AdminToken, DeliveryFilter, Store
from webhook_core import (
    DeliveryState,
    EventCatalog,
    parse_rfc3339,
    platform_catalog,
    rfc3339,
)
from webhook_core.request import delivery_request
from webhook_core.samples import SAMPLES

BODY_LIMIT = 1024 * 1024
PAGE_LIMIT = 100
MAX_PAGE = 1000
PREFIX = "/api/v1"

P = ParamSpec("P")
T = TypeVar("T")


@attrs.frozen
class Operation:
    """One route of the API, as the router and the OpenAPI document see it."""

    method: str
    path: str
    handler: Callable[[Api, Request, Caller], Awaitable[Response]]
    summary: str
    status: int = 200
    request: JSON | None = None
    query: tuple[tuple[str, str], ...] = ()
    """Query parameters: name and description."""
    public: bool = False


class Api:
    """The state the handlers share: the store, the catalog, the clock and the outbound policy."""

    def __init__(
        self,
        store: Store,
        catalog: EventCatalog,
        clock: Clock,
        outbound: OutboundPolicy,
        operator_token: str | None,
        authorize: Authorize | None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.clock = clock
        self.outbound = outbound
        self.operator_token = operator_token
        self.authorize = authorize

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call the store (through an operation), in a worker thread when it blocks."""
        if not self.store.blocking:
            return fn(*args, **kwargs)
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    async def find_token(self, digest: str) -> AdminToken | None:
        """The stored token with this digest (none, for a store that keeps no tokens)."""
        find: Callable[[str], AdminToken | None] | None = getattr(self.store, "find_token", None)
        return None if find is None else await self.call(find, digest)


async def read_json(request: Request, schema: JSON) -> JSON:
    """The request's JSON body checked against ``schema`` (an empty body is ``{}``)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > BODY_LIMIT:
        raise Problem(413, f"the request body is larger than {BODY_LIMIT} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_LIMIT:
            raise Problem(413, f"the request body is larger than {BODY_LIMIT} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        document: Any = {}
    else:
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise Problem(400, f"the request body is not valid JSON: {exc}") from None
    check(document, schema)
    return document  # type: ignore[no-any-return]


def _query(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    return value if value not in (None, "") else None


def _page(request: Request) -> tuple[int, int]:
    """The offset the ``cursor`` stands for, and the ``limit``."""
    raw_limit = _query(request, "limit")
    limit = PAGE_LIMIT
    if raw_limit is not None:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
            raise Problem(422, f"query parameter 'limit' must be an integer from 1 to {MAX_PAGE}")
        limit = int(raw_limit)
    cursor = _query(request, "cursor")
    if cursor is None:
        return 0, limit
    try:
        offset = int(base64.urlsafe_b64decode(cursor.encode("ascii") + b"==").decode("ascii"))
    except (ValueError, UnicodeError, binascii.Error):
        offset = -1
    if offset < 0:
        raise Problem(422, "query parameter 'cursor' is not a cursor this API gave out")
    return offset, limit


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode("ascii")).decode("ascii").rstrip("=")


def _paged(items: Sequence[Any], offset: int, limit: int, more: bool) -> Response:
    return JSONResponse(
        {"data": list(items), "next_cursor": _cursor(offset + limit) if more else None}
    )


# -- documents -------------------------------------------------------------------

_REDACTED = "[redacted]"


def _delivery_document(api: Api, delivery: Any, event: Any = None, endpoint: Any = None) -> JSON:
    document = delivery_json(delivery, event)
    document["test"] = is_test(delivery)
    if event is None or endpoint is None:
        return document
    for index, (attempt, shown) in enumerate(
        zip(delivery.attempts, document["attempts"], strict=True)
    ):
        before = attrs.evolve(delivery, attempts=delivery.attempts[:index])
        sent = delivery_request(before, event, endpoint, attempt.started_at, TIMEOUT)
        shown["request_headers"] = {
            name: _REDACTED if "signature" in name.lower() else value
            for name, value in sent.headers
        }
    return document


def _endpoint_document(endpoint: Any, *, secret: bool = False) -> JSON:
    document = endpoint_json(endpoint)
    document["tenant"] = endpoint.tenant
    if secret:
        document["secret"] = endpoint.secrets[0].value
    return document


# -- handlers ----------------------------------------------------------------------


async def event_types(api: Api, request: Request, caller: Caller) -> Response:
    """The catalog: names, descriptions, JSON Schemas of ``data`` and samples."""
    from transports.admin.openapi import model_schema  # noqa: PLC0415 (a cycle otherwise)

    data = [
        {
            "name": t.name,
            "description": t.description,
            "schema": model_schema(t.model),
            "sample": SAMPLES.get(t.name),
        }
        for t in api.catalog
    ]
    return JSONResponse({"data": data, "next_cursor": None})


ENDPOINT_CREATE = body(
    ("url",),
    url=STRING,
    events=STRINGS,
    description=STRING,
    secret=STRING,
    headers=HEADERS,
)
ENDPOINT_CHANGE = body(url=STRING, events=STRINGS, headers=HEADERS)
DISABLE = body(reason=STRING)
ROTATE = body(grace_seconds={"type": "number", "minimum": 0}, secret=STRING)
TEST = body(event=STRING)
PUBLISH = body(("event", "data"), event=STRING, data={}, id=STRING)
RECOVER = body(("since",), since=STRING)
EMPTY = body()


async def create_endpoint(api: Api, request: Request, caller: Caller) -> Response:
    """Register an endpoint; answers it with its secret."""
    tenant = caller.tenant_for(request)
    given = await read_json(request, ENDPOINT_CREATE)
    endpoint = await api.call(
        operations.add_endpoint,
        api.store,
        given["url"],
        api.clock.now(),
        secret=given.get("secret"),
        events=given.get("events", ("*",)),
        headers=given.get("headers"),
        description=given.get("description", ""),
        allow_http=api.outbound.allow_http,
        tenant=tenant,
    )
    return JSONResponse(_endpoint_document(endpoint, secret=True), status_code=201)


async def list_endpoints(api: Api, request: Request, caller: Caller) -> Response:
    """The tenant's endpoints, oldest first."""
    tenant = caller.tenant_for(request)
    offset, limit = _page(request)
    found = await api.call(operations.list_endpoints, api.store, tenant)
    page = found[offset : offset + limit]
    return _paged([_endpoint_document(e) for e in page], offset, limit, len(found) > offset + limit)


async def _endpoint_id(api: Api, request: Request) -> str:
    return str(request.path_params["endpoint_id"])


async def get_endpoint(api: Api, request: Request, caller: Caller) -> Response:
    """One endpoint (without its secrets)."""
    tenant = caller.tenant_for(request)
    endpoint_id = await _endpoint_id(api, request)
    endpoint = await api.call(operations.find_endpoint, api.store, endpoint_id, tenant)
    if endpoint is None:
        raise operations.NotFound(f"no endpoint with id {endpoint_id!r}")
    return JSONResponse(_endpoint_document(endpoint))


async def change_endpoint(api: Api, request: Request, caller: Caller) -> Response:
    """Change the URL, events or headers; a new URL is verified again."""
    tenant = caller.tenant_for(request)
    given = await read_json(request, ENDPOINT_CHANGE)
    endpoint = await api.call(
        operations.change_endpoint,
        api.store,
        await _endpoint_id(api, request),
        api.clock.now(),
        url=given.get("url"),
        events=given.get("events"),
        headers=given.get("headers"),
        allow_http=api.outbound.allow_http,
        tenant=tenant,
    )
    return JSONResponse(_endpoint_document(endpoint))


async def delete_endpoint(api: Api, request: Request, caller: Caller) -> Response:
    """Remove an endpoint; its waiting deliveries fail."""
    tenant = caller.tenant_for(request)
    endpoint_id = await _endpoint_id(api, request)
    await api.call(operations.remove_endpoint, api.store, endpoint_id, api.clock.now(), tenant)
    return Response(status_code=204)


async def verify_endpoint(api: Api, request: Request, caller: Caller) -> Response:
    """Send the handshake again (the running dispatcher sends it)."""
    tenant = caller.tenant_for(request)
    await read_json(request, EMPTY)
    endpoint = await api.call(
        operations.request_verification,
        api.store,
        await _endpoint_id(api, request),
        api.clock.now(),
        tenant,
    )
    return JSONResponse(_endpoint_document(endpoint))


async def enable_endpoint(api: Api, request: Request, caller: Caller) -> Response:
    """Resume a disabled endpoint."""
    tenant = caller.tenant_for(request)
    await read_json(request, EMPTY)
    endpoint = await api.call(
        operations.enable_endpoint,
        api.store,
        await _endpoint_id(api, request),
        api.clock.now(),
        tenant,
    )
    return JSONResponse(_endpoint_document(endpoint))


async def disable_endpoint(api: Api, request: Request, caller: Caller) -> Response:
    """Stop deliveries to an endpoint; its waiting deliveries fail."""
    tenant = caller.tenant_for(request)
    given = await read_json(request, DISABLE)
    endpoint = await api.call(
        operations.disable_endpoint,
        api.store,
        await _endpoint_id(api, request),
        api.clock.now(),
        given.get("reason", "disabled through the management API"),
        tenant,
    )
    return JSONResponse(_endpoint_document(endpoint))


async def rotate_secret(api: Api, request: Request, caller: Caller) -> Response:
    """A new secret; the old one keeps signing for ``grace_seconds`` (a day by default)."""
    tenant = caller.tenant_for(request)
    given = await read_json(request, ROTATE)
    grace = float(given.get("grace_seconds", 86_400))
    if not math.isfinite(grace):
        raise Problem(422, "field 'grace_seconds' must be a finite number")
    endpoint = await api.call(
        operations.rotate_endpoint_secret,
        api.store,
        await _endpoint_id(api, request),
        api.clock.now(),
        secret=given.get("secret"),
        grace=grace,
        tenant=tenant,
    )
    return JSONResponse(_endpoint_document(endpoint, secret=True))


async def test_endpoint(api: Api, request: Request, caller: Caller) -> Response:
    """Send a sample event to the endpoint now; answers the attempt."""
    tenant = caller.tenant_for(request)
    given = await read_json(request, TEST)
    endpoint_id = await _endpoint_id(api, request)

    def run() -> Any:
        http = HttpxSyncTransport(policy=api.outbound)
        try:
            return send_test(
                api.store, api.catalog, http, api.clock, endpoint_id, given.get("event"), tenant
            )
        finally:
            http.close()

    delivery = await anyio.to_thread.run_sync(run)
    (attempt,) = delivery.attempts
    return JSONResponse(
        {
            "delivery_id": delivery.id,
            "event_id": delivery.event_id,
            "state": delivery.state.value,
            "status": attempt.status,
            "outcome": attempt.outcome.value,
            "duration_ms": round((attempt.ended_at - attempt.started_at) * 1000, 1),
            "error": attempt.error,
            "response_excerpt": attempt.response_excerpt,
        }
    )


async def publish_event(api: Api, request: Request, caller: Caller) -> Response:
    """Publish an event to the tenant's subscribed endpoints."""
    tenant = caller.tenant_for(request)
    given = await read_json(request, PUBLISH)
    result = await api.call(
        operations.publish,
        api.store,
        api.catalog,
        given["event"],
        given["data"],
        api.clock.now(),
        event_id=given.get("id"),
        tenant=tenant,
    )
    return JSONResponse({"id": result.event.id, "deliveries": result.deliveries}, status_code=202)


def _since(text: str, where: str) -> float:
    try:
        return parse_rfc3339(text, where)
    except Exception as exc:
        raise Problem(422, f"{where} must be an RFC 3339 time: {exc}") from None


async def list_deliveries(api: Api, request: Request, caller: Caller) -> Response:
    """The tenant's deliveries, oldest first, filtered."""
    tenant = caller.tenant_for(request)
    offset, limit = _page(request)
    state_name = _query(request, "state")
    states = [s.value for s in DeliveryState]
    if state_name is not None and state_name not in states:
        raise Problem(422, f"query parameter 'state' must be one of: {', '.join(states)}")
    since = _query(request, "since")
    where = DeliveryFilter(
        state=DeliveryState(state_name) if state_name else None,
        endpoint_id=_query(request, "endpoint_id"),
        event_name=_query(request, "event"),
        created_since=None if since is None else _since(since, "query parameter 'since'"),
    )
    found = await api.call(operations.list_deliveries, api.store, where, limit + 1, offset, tenant)
    documents = [_delivery_document(api, d) for d in found[:limit]]
    return _paged(documents, offset, limit, len(found) > limit)


def _delivery_with_context(store: Store, delivery_id: str, tenant: str) -> tuple[Any, Any, Any]:
    delivery = operations.find_delivery(store, delivery_id, tenant)
    if delivery is None:
        raise operations.NotFound(f"no delivery with id {delivery_id!r}")
    event = operations.find_event(store, delivery.event_id, tenant)
    endpoint = operations.find_endpoint(store, delivery.endpoint_id, tenant)
    return delivery, event, endpoint


async def get_delivery(api: Api, request: Request, caller: Caller) -> Response:
    """One delivery with its event and attempts."""
    tenant = caller.tenant_for(request)
    delivery_id = str(request.path_params["delivery_id"])
    found = await api.call(_delivery_with_context, api.store, delivery_id, tenant)
    return JSONResponse(_delivery_document(api, *found))


async def replay_delivery(api: Api, request: Request, caller: Caller) -> Response:
    """Send a finished delivery's event again, as a new delivery."""
    tenant = caller.tenant_for(request)
    await read_json(request, EMPTY)
    fresh = await api.call(
        operations.replay_delivery,
        api.store,
        str(request.path_params["delivery_id"]),
        api.clock.now(),
        tenant,
    )
    return JSONResponse(_delivery_document(api, fresh), status_code=202)


async def retry_delivery(api: Api, request: Request, caller: Caller) -> Response:
    """Make a waiting delivery due now."""
    tenant = caller.tenant_for(request)
    await read_json(request, EMPTY)
    due = await api.call(
        operations.retry_now,
        api.store,
        str(request.path_params["delivery_id"]),
        api.clock.now(),
        tenant,
    )
    return JSONResponse(_delivery_document(api, due), status_code=202)


async def recover(api: Api, request: Request, caller: Caller) -> Response:
    """Replay every failed delivery created since a time."""
    tenant = caller.tenant_for(request)
    given = await read_json(request, RECOVER)
    since = _since(given["since"], "field 'since'")
    now = api.clock.now()
    count = await api.call(operations.replay_failed_since, api.store, since, now, tenant=tenant)
    return JSONResponse({"replayed": count, "since": rfc3339(since)}, status_code=202)


async def openapi_document(api: Api, request: Request, caller: Caller) -> Response:
    """This API's OpenAPI 3.1 document."""
    from transports.admin.openapi import openapi  # noqa: PLC0415 (a cycle otherwise)

    return JSONResponse(openapi(OPERATIONS))


async def healthz(api: Api, request: Request, caller: Caller) -> Response:
    """200 while the store answers; 503 with the reason otherwise."""
    try:
        status = await api.call(api.store.schema_status)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Problem(503, f"the store does not answer: {reason}") from None
    return JSONResponse({"status": "ok", "schema_version": status.version})


_ENDPOINT = PREFIX + "/endpoints/{endpoint_id}"
_DELIVERY = PREFIX + "/deliveries/{delivery_id}"
_PAGING = (
    ("cursor", "next_cursor of the previous page"),
    ("limit", f"items per page, 1 to {MAX_PAGE} ({PAGE_LIMIT} by default)"),
)
OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", PREFIX + "/event-types", event_types, "The event catalog"),
    Operation(
        "POST",
        PREFIX + "/endpoints",
        create_endpoint,
        "Register an endpoint",
        201,
        ENDPOINT_CREATE,
    ),
    Operation("GET", PREFIX + "/endpoints", list_endpoints, "List endpoints", query=_PAGING),
    Operation("GET", _ENDPOINT, get_endpoint, "Show an endpoint"),
    Operation("PATCH", _ENDPOINT, change_endpoint, "Change an endpoint", request=ENDPOINT_CHANGE),
    Operation("DELETE", _ENDPOINT, delete_endpoint, "Remove an endpoint", 204),
    Operation("POST", _ENDPOINT + "/verify", verify_endpoint, "Verify again", request=EMPTY),
    Operation("POST", _ENDPOINT + "/enable", enable_endpoint, "Enable", request=EMPTY),
    Operation("POST", _ENDPOINT + "/disable", disable_endpoint, "Disable", request=DISABLE),
    Operation(
        "POST", _ENDPOINT + "/rotate-secret", rotate_secret, "Rotate the secret", request=ROTATE
    ),
    Operation("POST", _ENDPOINT + "/test", test_endpoint, "Send a test event", request=TEST),
    Operation("POST", PREFIX + "/events", publish_event, "Publish an event", 202, PUBLISH),
    Operation(
        "GET",
        PREFIX + "/deliveries",
        list_deliveries,
        "List deliveries",
        query=(
            *_PAGING,
            ("endpoint_id", "only deliveries to this endpoint"),
            ("event", "only deliveries of events of this name"),
            ("state", "only deliveries in this state"),
            ("since", "only deliveries created at or after this RFC 3339 time"),
        ),
    ),
    Operation(
        "POST", PREFIX + "/deliveries/recover", recover, "Replay failed deliveries", 202, RECOVER
    ),
    Operation("GET", _DELIVERY, get_delivery, "Show a delivery with its attempts"),
    Operation("POST", _DELIVERY + "/replay", replay_delivery, "Replay", 202, EMPTY),
    Operation("POST", _DELIVERY + "/retry", retry_delivery, "Retry now", 202, EMPTY),
    Operation("GET", PREFIX + "/openapi.json", openapi_document, "This document"),
    Operation("GET", "/healthz", healthz, "Health", public=True),
)


def _endpoint(api: Api, operation: Operation) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        try:
            caller = Caller(None)
            if not operation.public:
                caller = await authenticate(
                    request, api.find_token, api.operator_token, api.authorize
                )
            return await operation.handler(api, request, caller)
        except Problem as problem:
            return problem.response()
        except Exception as exc:
            mapped = problem_for(exc)
            if mapped is None:
                raise
            return mapped.response()

    return handle


async def _not_found(request: Request, exc: Exception) -> Response:
    return Problem(404, f"no such resource: {request.method} {request.url.path}").response()


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return Problem(405, f"{request.method} is not allowed on {request.url.path}").response()


def management_app(
    store: Store,
    *,
    catalog: EventCatalog | None = None,
    authorize: Authorize | None = None,
    operator_token: str | None = None,
    outbound: OutboundPolicy | None = None,
    clock: Clock | None = None,
    pages: bool = True,
    session_key: str | None = None,
    secure_cookies: bool = False,
) -> Starlette:
    """The management API over ``store``, as an ASGI app (mount it, or serve it alone).

    ``operator_token`` defaults to ``WEBHOOKS_ADMIN_TOKEN``; tenant tokens come
    from the store (``webhooks tokens create``). With ``authorize`` (a host's
    ``request -> tenant or None``, may be async), the host decides instead.
    ``outbound`` (default: from the environment) governs registration and test
    sends as it does the dispatcher.

    With ``pages`` the admin page ("Settings → Webhooks", ``transports.admin.pages``)
    is served at ``/``; its session cookies are signed with ``session_key`` (default:
    ``WEBHOOKS_ADMIN_SESSION_KEY``, else a random key for this process) and marked
    ``Secure`` with ``secure_cookies`` (behind HTTPS).
    """
    api = Api(
        store,
        catalog or platform_catalog(),
        clock or SystemClock(),
        outbound or OutboundPolicy.from_env(),
        operator_token if operator_token is not None else operator_token_from_env(),
        authorize,
    )
    routes = [
        Route(op.path, _endpoint(api, op), methods=[op.method], name=op.handler.__name__)
        for op in OPERATIONS
    ]
    if not pages:
        return Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_allowed})
    from transports.admin import pages as admin_pages  # noqa: PLC0415 (a cycle otherwise)

    return Starlette(
        routes=[*routes, *admin_pages.routes(api)],
        middleware=admin_pages.middleware(session_key, https_only=secure_cookies),
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
