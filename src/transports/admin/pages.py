"""The admin page, "Settings → Webhooks": server-rendered HTML over the management API.

Theory of operation
-------------------
The pages live in the management app (``management_app(..., pages=True)``)
beside ``/api/v1``, and every change they make goes through the same
``transports.driving.operations`` calls, with the same tenant scoping, as the
API's handlers (``Api.call``); errors become the same messages
(``problem_for``), shown on the page instead of as problem documents.

Signing in: a person pastes a token (tenant or operator). It is checked exactly
as a bearer token is (``authenticate``), and the session (Starlette's
``SessionMiddleware``: a signed, ``HttpOnly``, ``SameSite=Strict`` cookie)
keeps only the token's SHA-256 digest, never the token. Every request checks
that digest again (a revoked token ends its sessions at once) with
``caller_for_digest``. An operator picks the tenant to look at; a tenant token
sees its own tenant only. When the host passes ``authorize``, the host's own
session decides and there is no sign-in form.

Every form is a plain ``POST`` carrying the session's CSRF token (checked in
constant time before anything else); every change answers with a redirect
(post/redirect/get) and a one-line notice, except creation and rotation,
whose answer is the page showing the new secret once. A little hand-written
JavaScript (``static/admin.js``) adds copy buttons, live handshake status
(polling ``/endpoints/{id}/status``) and checking sample data as it is typed;
everything works without it. ``SecurityHeaders`` sets the CSP (no inline
script or style), ``frame-ancestors``/``X-Frame-Options``, ``Referrer-Policy``,
``nosniff`` and ``no-store`` on every response.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode

import attrs
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from transports.admin.app import BODY_LIMIT, Api
from transports.admin.auth import Caller, authenticate, caller_for_digest, token_digest
from transports.admin.probe import TIMEOUT, is_test, send_test
from transports.admin.problems import Problem, problem_for
from transports.driving import operations
from transports.http.httpx_transport import HttpxSyncTransport
from transports.stores.interface import DeliveryFilter
from webhook_core import (
    DEFAULT_TENANT,
    ConfigError,
    Delivery,
    DeliveryState,
    Endpoint,
    EndpointState,
    Event,
    build_event,
    parse_rfc3339,
    rfc3339,
    validate_tenant,
)
from webhook_core.request import delivery_request
from webhook_core.samples import SAMPLES

ENV_SESSION_KEY = "WEBHOOKS_ADMIN_SESSION_KEY"
SESSION_COOKIE = "webhooks_admin"
SESSION_MAX_AGE = 8 * 3600
LOG_PAGE = 50
ROTATE_GRACE_HOURS = 24

_HERE = Path(__file__).parent
templates = Jinja2Templates(directory=_HERE / "templates")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


class SecurityHeaders:
    """ASGI middleware: the security headers on every response (kept where a route set them)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def session_key(given: str | None = None) -> str:
    """The key that signs session cookies: ``given``, else ``WEBHOOKS_ADMIN_SESSION_KEY``, else
    a random key made now (sessions then end when the process does, and are not shared
    between processes)."""
    key = given if given is not None else os.environ.get(ENV_SESSION_KEY, "").strip()
    if not key:
        return secrets.token_urlsafe(32)
    if len(key) < 32:
        raise ConfigError(f"{ENV_SESSION_KEY} must be at least 32 characters long")
    return key


def middleware(key: str | None = None, *, https_only: bool = False) -> list[Middleware]:
    """The pages' middleware: security headers, then signed session cookies."""
    return [
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=session_key(key),
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_MAX_AGE,
            same_site="strict",
            https_only=https_only,
        ),
    ]


# -- who is asking -------------------------------------------------------------


@attrs.frozen
class Viewer:
    """The signed-in person: their caller, the tenant on screen, and how they signed in."""

    caller: Caller
    tenant: str
    host_session: bool

    @property
    def operator(self) -> bool:
        """True for the operator token (every tenant)."""
        return self.caller.tenant is None


class SignInNeeded(Exception):
    """The request has no valid session: send the person to the sign-in page."""


async def viewer(api: Api, request: Request) -> Viewer:
    """The person behind ``request``; ``SignInNeeded`` without a valid session."""
    if api.authorize is not None:
        try:
            caller = await authenticate(request, api.find_token, None, api.authorize)
        except Problem:
            raise SignInNeeded from None
        return Viewer(caller, caller.tenant or DEFAULT_TENANT, host_session=True)
    digest = request.session.get("digest")
    if not isinstance(digest, str):
        raise SignInNeeded
    found = await caller_for_digest(digest, api.find_token, api.operator_token)
    if found is None:
        request.session.clear()
        raise SignInNeeded
    caller = found
    tenant = caller.tenant or str(request.session.get("tenant") or DEFAULT_TENANT)
    return Viewer(caller, tenant, host_session=False)


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


class Form:
    """A submitted ``application/x-www-form-urlencoded`` form, its CSRF token checked."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def get(self, name: str, default: str = "") -> str:
        """The first value of ``name``, whitespace-trimmed."""
        return next((v.strip() for k, v in self.pairs if k == name), default)

    def all(self, name: str) -> list[str]:
        """Every value of ``name`` (checkboxes)."""
        return [v for k, v in self.pairs if k == name]


async def read_form(request: Request) -> Form:
    """The request's form, at most ``BODY_LIMIT`` bytes; a 403 problem when the CSRF token
    is missing or is not the session's."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_LIMIT:
            raise Problem(413, f"the form is larger than {BODY_LIMIT} bytes")
        chunks.append(chunk)
    try:
        pairs = parse_qsl(b"".join(chunks).decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise Problem(400, "the form is not valid UTF-8 form data") from None
    form = Form(pairs)
    expected = request.session.get("csrf")
    given = form.get("csrf")
    if not (
        isinstance(expected, str)
        and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
    ):
        raise Problem(
            403, "the form's security token is missing or has expired: reload the page and retry"
        )
    return form


# -- rendering -----------------------------------------------------------------


def _when(epoch: float | None) -> str:
    return "" if epoch is None else rfc3339(epoch).replace("T", " ").replace("Z", " UTC")


templates.env.filters["when"] = _when


def families(api: Api) -> list[tuple[str, list[Any]]]:
    """The catalog's event types grouped by family (the name's first word), in catalog order."""
    grouped: dict[str, list[Any]] = {}
    for event_type in api.catalog:
        grouped.setdefault(event_type.name.split(".", 1)[0], []).append(event_type)
    return list(grouped.items())


def render(
    request: Request,
    who: Viewer | None,
    name: str,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """A page: the template ``name`` with the viewer, CSRF token and notice in its context."""
    notice = request.session.pop("notice", None) if who is not None else None
    return templates.TemplateResponse(
        request,
        name,
        {"who": who, "csrf": csrf_token(request), "notice": notice, **context},
        status_code=status_code,
    )


def redirect(request: Request, route: str, notice: str | None = None, **params: Any) -> Response:
    """A 303 to the named page, with a one-line notice shown there."""
    if notice is not None:
        request.session["notice"] = notice
    query = params.pop("query", None)
    url = str(request.url_for(route, **params))
    return RedirectResponse(url + (f"?{urlencode(query)}" if query else ""), status_code=303)


Handler = Callable[[Api, Request, Viewer], Awaitable[Response]]


def page(api: Api, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A route: the viewer found (or the sign-in page), errors shown as an error page."""

    async def handle(request: Request) -> Response:
        try:
            who = await viewer(api, request)
        except SignInNeeded:
            if request.method == "GET" and request.url.path.endswith("/status"):
                return JSONResponse({"detail": "signed out"}, status_code=401)
            return redirect(request, "admin_signin")
        try:
            return await handler(api, request, who)
        except Exception as exc:
            problem = exc if isinstance(exc, Problem) else problem_for(exc)
            if problem is None:
                raise
            return render(
                request, who, "error.html", problem.status, status=problem.status, detail=problem
            )

    return handle


# -- signing in ------------------------------------------------------------------


async def signin_page(api: Api, request: Request) -> Response:
    """The sign-in form (or the endpoints, when signed in already)."""
    if api.authorize is not None or isinstance(request.session.get("digest"), str):
        return redirect(request, "admin_endpoints")
    return render(request, None, "signin.html")


async def signin(api: Api, request: Request) -> Response:
    """Check the token as the API does; keep its digest in the session."""
    try:
        form = await read_form(request)
    except Problem as problem:
        return render(request, None, "signin.html", problem.status, error=problem.detail)
    token = form.get("token")
    tenant = form.get("tenant") or DEFAULT_TENANT
    try:
        validate_tenant(tenant)
        caller = await caller_for_digest(token_digest(token), api.find_token, api.operator_token)
    except ConfigError as exc:
        return render(request, None, "signin.html", 422, error=str(exc), tenant=tenant)
    if not token or caller is None:
        return render(
            request,
            None,
            "signin.html",
            401,
            error="that token is not valid (revoked, or never issued)",
            tenant=tenant,
        )
    request.session.clear()
    request.session["digest"] = token_digest(token)
    request.session["tenant"] = caller.tenant or tenant
    request.session["csrf"] = secrets.token_urlsafe(32)
    return redirect(request, "admin_endpoints")


async def signout(api: Api, request: Request, who: Viewer) -> Response:
    """Forget the session."""
    await read_form(request)
    request.session.clear()
    return redirect(request, "admin_signin")


async def switch_tenant(api: Api, request: Request, who: Viewer) -> Response:
    """The operator looks at another tenant."""
    form = await read_form(request)
    if not who.operator:
        raise Problem(403, f"this token is for tenant {who.tenant!r} only")
    request.session["tenant"] = validate_tenant(form.get("tenant") or DEFAULT_TENANT)
    return redirect(request, "admin_endpoints")


async def home(api: Api, request: Request, who: Viewer) -> Response:
    """``/``: the endpoints."""
    return redirect(request, "admin_endpoints")


# -- endpoints -------------------------------------------------------------------


@attrs.frozen
class EndpointSummary:
    """An endpoint with its record of deliveries, as the list shows it."""

    endpoint: Endpoint
    delivered: int
    failed: int
    last: Delivery | None

    @property
    def success_rate(self) -> str:
        """Delivered among finished deliveries, as a percentage ("" when none finished)."""
        finished = self.delivered + self.failed
        return "" if not finished else f"{100 * self.delivered / finished:.0f}%"


def summarise(api: Api, tenant: str) -> list[EndpointSummary]:
    """The tenant's endpoints with their delivered and failed counts and latest delivery."""
    summaries = []
    store = api.store
    for endpoint in operations.list_endpoints(store, tenant):

        def where(state: DeliveryState | None, endpoint_id: str = endpoint.id) -> DeliveryFilter:
            return DeliveryFilter(state=state, endpoint_id=endpoint_id)

        total = operations.count_deliveries(store, where(None), tenant)
        last = operations.list_deliveries(store, where(None), 1, max(total - 1, 0), tenant)
        summaries.append(
            EndpointSummary(
                endpoint,
                operations.count_deliveries(store, where(DeliveryState.DELIVERED), tenant),
                operations.count_deliveries(store, where(DeliveryState.FAILED), tenant),
                last[0] if last else None,
            )
        )
    return summaries


async def endpoints_page(api: Api, request: Request, who: Viewer) -> Response:
    """Every endpoint of the tenant."""
    summaries = await api.call(summarise, api, who.tenant)
    return render(request, who, "endpoints.html", summaries=summaries)


async def _endpoint(api: Api, request: Request, who: Viewer) -> Endpoint:
    endpoint_id = str(request.path_params["endpoint_id"])
    endpoint = await api.call(operations.find_endpoint, api.store, endpoint_id, who.tenant)
    if endpoint is None:
        raise operations.NotFound(f"no endpoint with id {endpoint_id!r}")
    return endpoint


def _selected_events(form: Form) -> list[str]:
    chosen = form.all("events")
    if "*" in chosen:
        return ["*"]
    families_chosen = {p[:-2] for p in chosen if p.endswith(".*")}
    return [p for p in chosen if p.endswith(".*") or p.split(".", 1)[0] not in families_chosen]


def _endpoint_form(
    request: Request, who: Viewer, api: Api, status: int = 200, **context: Any
) -> Response:
    return render(request, who, "endpoint_form.html", status, families=families(api), **context)


async def new_endpoint_page(api: Api, request: Request, who: Viewer) -> Response:
    """The form to add an endpoint."""
    return _endpoint_form(request, who, api, values={"events": ["*"]})


async def create_endpoint(api: Api, request: Request, who: Viewer) -> Response:
    """Register the endpoint; answer with its secret, shown this once."""
    form = await read_form(request)
    url, events, description = form.get("url"), _selected_events(form), form.get("description")
    values = {"url": url, "events": events, "description": description}
    try:
        if not events:
            raise ConfigError("choose at least one event (or every event, '*')")
        endpoint = await api.call(
            operations.add_endpoint,
            api.store,
            url,
            api.clock.now(),
            events=events,
            description=description,
            allow_http=api.outbound.allow_http,
            tenant=who.tenant,
        )
    except Exception as exc:
        problem = problem_for(exc)
        if problem is None:
            raise
        return _endpoint_form(
            request, who, api, problem.status, values=values, error=problem.detail
        )
    return render(
        request,
        who,
        "endpoint.html",
        201,
        endpoint=endpoint,
        secret=endpoint.secrets[0].value,
        created=True,
        grace_hours=ROTATE_GRACE_HOURS,
    )


async def endpoint_page(api: Api, request: Request, who: Viewer) -> Response:
    """One endpoint: its state, handshake, secrets' ages and the actions."""
    endpoint = await _endpoint(api, request, who)
    return render(request, who, "endpoint.html", endpoint=endpoint, grace_hours=ROTATE_GRACE_HOURS)


def handshake(endpoint: Endpoint) -> dict[str, Any]:
    """What the page says about the endpoint's verification (the live status's JSON too)."""
    state = endpoint.state
    if state is EndpointState.VERIFYING:
        title = "Sending the verification request"
        message = (
            "The receiver must answer 2xx with the verification token it was sent "
            '(the whole body, or JSON {"verification_token": ...}).'
        )
    elif state is EndpointState.ACTIVE:
        title = "Verified"
        message = "The endpoint answered the handshake with its token: it receives events."
    elif state is EndpointState.DISABLED:
        title = "Disabled"
        message = (
            f"No events are sent: {endpoint.disabled_reason or 'disabled'}. "
            "Enable it to resume deliveries."
        )
    else:
        title = "The handshake failed"
        message = (
            "The receiver did not echo the verification token. Make it answer 2xx with the "
            "token from the request's data.verification_token, then verify again."
        )
    error = endpoint.last_error if state is not EndpointState.ACTIVE else None
    return {
        "id": endpoint.id,
        "state": state.value,
        "title": title,
        "message": message,
        "error": error,
    }


templates.env.globals["handshake"] = handshake


async def endpoint_status(api: Api, request: Request, who: Viewer) -> Response:
    """The endpoint's verification as JSON, for the page's live handshake status."""
    return JSONResponse(handshake(await _endpoint(api, request, who)))


async def edit_endpoint_page(api: Api, request: Request, who: Viewer) -> Response:
    """The form to change the URL or the events."""
    endpoint = await _endpoint(api, request, who)
    values = {"url": endpoint.url, "events": list(endpoint.filters)}
    return _endpoint_form(request, who, api, endpoint=endpoint, values=values)


async def change_endpoint(api: Api, request: Request, who: Viewer) -> Response:
    """Change the URL or events; a new URL is verified again."""
    endpoint = await _endpoint(api, request, who)
    form = await read_form(request)
    url, events = form.get("url"), _selected_events(form)
    values = {"url": url, "events": events}
    try:
        if not events:
            raise ConfigError("choose at least one event (or every event, '*')")
        await api.call(
            operations.change_endpoint,
            api.store,
            endpoint.id,
            api.clock.now(),
            url=url,
            events=events,
            allow_http=api.outbound.allow_http,
            tenant=who.tenant,
        )
    except Exception as exc:
        problem = problem_for(exc)
        if problem is None:
            raise
        return _endpoint_form(
            request,
            who,
            api,
            problem.status,
            endpoint=endpoint,
            values=values,
            error=problem.detail,
        )
    return redirect(request, "admin_endpoint", "Saved.", endpoint_id=endpoint.id)


def _action(run: Callable[[Api, Viewer, str, Form], Any], notice: str) -> Handler:
    async def handle(api: Api, request: Request, who: Viewer) -> Response:
        endpoint = await _endpoint(api, request, who)
        form = await read_form(request)
        await api.call(run, api, who, endpoint.id, form)
        return redirect(request, "admin_endpoint", notice, endpoint_id=endpoint.id)

    return handle


verify_endpoint = _action(
    lambda api, who, endpoint_id, form: operations.request_verification(
        api.store, endpoint_id, api.clock.now(), who.tenant
    ),
    "The handshake will be sent again.",
)
enable_endpoint = _action(
    lambda api, who, endpoint_id, form: operations.enable_endpoint(
        api.store, endpoint_id, api.clock.now(), who.tenant
    ),
    "Enabled.",
)
disable_endpoint = _action(
    lambda api, who, endpoint_id, form: operations.disable_endpoint(
        api.store,
        endpoint_id,
        api.clock.now(),
        form.get("reason") or "disabled on the admin page",
        who.tenant,
    ),
    "Disabled: its waiting deliveries failed (replay them once it is enabled again).",
)


def _grace_hours(form: Form) -> float:
    text = form.get("grace_hours", str(ROTATE_GRACE_HOURS))
    try:
        hours = float(text)
    except ValueError:
        hours = -1.0
    if not 0 <= hours <= 24 * 30:
        raise Problem(422, f"grace period {text!r}: give a number of hours from 0 to 720")
    return hours


async def rotate_secret(api: Api, request: Request, who: Viewer) -> Response:
    """A new secret, shown this once; the old one keeps signing for the grace period."""
    endpoint = await _endpoint(api, request, who)
    form = await read_form(request)
    hours = _grace_hours(form)
    rotated = await api.call(
        operations.rotate_endpoint_secret,
        api.store,
        endpoint.id,
        api.clock.now(),
        grace=hours * 3600,
        tenant=who.tenant,
    )
    return render(
        request,
        who,
        "endpoint.html",
        endpoint=rotated,
        secret=rotated.secrets[0].value,
        rotated_grace=hours,
        grace_hours=ROTATE_GRACE_HOURS,
    )


async def remove_page(api: Api, request: Request, who: Viewer) -> Response:
    """Ask before removing."""
    endpoint = await _endpoint(api, request, who)
    return render(request, who, "remove.html", endpoint=endpoint)


async def remove_endpoint(api: Api, request: Request, who: Viewer) -> Response:
    """Remove the endpoint; its waiting deliveries fail."""
    endpoint = await _endpoint(api, request, who)
    await read_form(request)
    await api.call(operations.remove_endpoint, api.store, endpoint.id, api.clock.now(), who.tenant)
    return redirect(request, "admin_endpoints", f"Removed {endpoint.url}.")


# -- the testing tool ------------------------------------------------------------


def _sample_text(name: str) -> str:
    return json.dumps(SAMPLES.get(name, {}), indent=2, ensure_ascii=False)


def _check_data(api: Api, name: str, text: str) -> Any:
    """The sample data parsed and checked against the catalog; ``ConfigError`` or the
    catalog's own error otherwise."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"the data is not valid JSON: {exc}") from None
    build_event(api.catalog, name, data, event_id="evt_check", now=api.clock.now())
    return data


async def _test_context(api: Api, who: Viewer) -> dict[str, Any]:
    endpoints = await api.call(operations.list_endpoints, api.store, who.tenant)
    return {
        "endpoints": endpoints,
        "event_types": list(api.catalog),
        "samples": {t.name: _sample_text(t.name) for t in api.catalog},
    }


async def test_page(api: Api, request: Request, who: Viewer) -> Response:
    """Pick an endpoint and an event; see and edit its sample data."""
    context = await _test_context(api, who)
    names = [t.name for t in context["event_types"]]
    event = request.query_params.get("event") or (names[0] if names else "")
    values = {
        "endpoint_id": request.query_params.get("endpoint_id", ""),
        "event": event,
        "data": _sample_text(event),
    }
    return render(request, who, "test.html", values=values, **context)


@attrs.frozen
class SentTest:
    """What the testing tool shows: the request as sent and the attempt's answer."""

    delivery: Delivery
    event: Event
    url: str
    headers: tuple[tuple[str, str], ...]
    body: str


def _send(api: Api, who: Viewer, endpoint_id: str, name: str, data: Any) -> SentTest:
    http = HttpxSyncTransport(policy=api.outbound)
    try:
        delivery = send_test(
            api.store, api.catalog, http, api.clock, endpoint_id, name, who.tenant, data=data
        )
    finally:
        http.close()
    event = operations.find_event(api.store, delivery.event_id, who.tenant)
    endpoint = operations.find_endpoint(api.store, endpoint_id, who.tenant)
    if event is None or endpoint is None:
        raise operations.NotFound(f"endpoint {endpoint_id!r} was removed meanwhile")
    (attempt,) = delivery.attempts
    before = attrs.evolve(delivery, attempts=())
    sent = delivery_request(before, event, endpoint, attempt.started_at, TIMEOUT)
    return SentTest(delivery, event, sent.url, sent.headers, sent.body.decode("utf-8"))


async def send_test_event(api: Api, request: Request, who: Viewer) -> Response:
    """Send the (edited) sample to the endpoint now; show the request and the answer."""
    form = await read_form(request)
    values = {
        "endpoint_id": form.get("endpoint_id"),
        "event": form.get("event"),
        "data": form.get("data"),
    }
    context = await _test_context(api, who)
    try:
        data = _check_data(api, values["event"], values["data"])
        sent = await api.call(_send, api, who, values["endpoint_id"], values["event"], data)
    except Exception as exc:
        problem = problem_for(exc)
        if problem is None:
            raise
        return render(
            request,
            who,
            "test.html",
            problem.status,
            values=values,
            error=problem.detail,
            **context,
        )
    return render(request, who, "test.html", values=values, sent=sent, **context)


async def check_test_data(api: Api, request: Request, who: Viewer) -> Response:
    """Check sample data against the catalog as it is typed (JSON in, JSON out)."""
    form = await read_form(request)
    try:
        _check_data(api, form.get("event"), form.get("data"))
    except Exception as exc:
        problem = problem_for(exc)
        if problem is None:
            raise
        return JSONResponse({"ok": False, "detail": problem.detail})
    return JSONResponse({"ok": True, "detail": "matches the catalog"})


# -- the delivery log ------------------------------------------------------------


def parse_since(text: str) -> float | None:
    """A time typed in the filter: RFC 3339, or a ``datetime-local`` value read as UTC."""
    if not text:
        return None
    try:
        return parse_rfc3339(text, "since")
    except Exception:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Problem(
            422, f"since {text!r}: give a time such as 2024-01-31T09:00 (UTC) or RFC 3339"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _log_filter(request: Request) -> tuple[dict[str, str], DeliveryFilter]:
    query = request.query_params
    shown = {
        name: query.get(name, "").strip() for name in ("endpoint_id", "event", "state", "since")
    }
    states = [s.value for s in DeliveryState]
    if shown["state"] and shown["state"] not in states:
        raise Problem(422, f"state {shown['state']!r}: choose one of {', '.join(states)}")
    where = DeliveryFilter(
        state=DeliveryState(shown["state"]) if shown["state"] else None,
        endpoint_id=shown["endpoint_id"] or None,
        event_name=shown["event"] or None,
        created_since=parse_since(shown["since"]),
    )
    return shown, where


def _log(api: Api, tenant: str, where: DeliveryFilter, page_number: int) -> dict[str, Any]:
    total = operations.count_deliveries(api.store, where, tenant)
    pages = max(1, -(-total // LOG_PAGE))
    page_number = min(max(page_number, 1), pages)
    # Newest first: the last page of the oldest-first listing, reversed.
    end = total - (page_number - 1) * LOG_PAGE
    start = max(0, end - LOG_PAGE)
    found = operations.list_deliveries(api.store, where, end - start, start, tenant)
    events = {d.event_id: operations.find_event(api.store, d.event_id, tenant) for d in found}
    return {
        "deliveries": list(reversed(found)),
        "events": events,
        "total": total,
        "page": page_number,
        "pages": pages,
        "endpoints": operations.list_endpoints(api.store, tenant),
    }


async def deliveries_page(api: Api, request: Request, who: Viewer) -> Response:
    """The delivery log, newest first, filtered."""
    shown, where = _log_filter(request)
    raw_page = request.query_params.get("page", "1")
    page_number = int(raw_page) if raw_page.isdigit() else 1
    log = await api.call(_log, api, who.tenant, where, page_number)
    query = {k: v for k, v in shown.items() if v}
    return render(
        request,
        who,
        "deliveries.html",
        filters=shown,
        query=query,
        states=[s.value for s in DeliveryState],
        event_types=list(api.catalog),
        is_test=is_test,
        **log,
    )


Found: TypeAlias = tuple[Delivery, Event | None, Endpoint | None]


async def _delivery(api: Api, request: Request, who: Viewer) -> Found:
    delivery_id = str(request.path_params["delivery_id"])

    def find() -> Found:
        delivery = operations.find_delivery(api.store, delivery_id, who.tenant)
        if delivery is None:
            raise operations.NotFound(f"no delivery with id {delivery_id!r}")
        return (
            delivery,
            operations.find_event(api.store, delivery.event_id, who.tenant),
            operations.find_endpoint(api.store, delivery.endpoint_id, who.tenant),
        )

    return await api.call(find)


async def delivery_page(api: Api, request: Request, who: Viewer) -> Response:
    """One delivery: its event and every attempt."""
    delivery, event, endpoint = await _delivery(api, request, who)
    body = "" if event is None else json.dumps(json.loads(event.body), indent=2, ensure_ascii=False)
    return render(
        request,
        who,
        "delivery.html",
        delivery=delivery,
        event=event,
        endpoint=endpoint,
        body=body,
        test=is_test(delivery),
        waiting=delivery.state in (DeliveryState.PENDING, DeliveryState.RETRY_SCHEDULED),
        finished=delivery.state in (DeliveryState.DELIVERED, DeliveryState.FAILED),
    )


async def replay_delivery(api: Api, request: Request, who: Viewer) -> Response:
    """Send a finished delivery's event again, as a new delivery."""
    delivery, _, _ = await _delivery(api, request, who)
    await read_form(request)
    fresh = await api.call(
        operations.replay_delivery, api.store, delivery.id, api.clock.now(), who.tenant
    )
    return redirect(request, "admin_delivery", f"Replayed as {fresh.id}.", delivery_id=fresh.id)


async def retry_delivery(api: Api, request: Request, who: Viewer) -> Response:
    """Make a waiting delivery due now."""
    delivery, _, _ = await _delivery(api, request, who)
    await read_form(request)
    await api.call(operations.retry_now, api.store, delivery.id, api.clock.now(), who.tenant)
    return redirect(
        request, "admin_delivery", "It will be sent right away.", delivery_id=delivery.id
    )


async def recover(api: Api, request: Request, who: Viewer) -> Response:
    """Replay every failed delivery created since a time."""
    form = await read_form(request)
    since = parse_since(form.get("since"))
    if since is None:
        raise Problem(422, "since: give the time to recover failed deliveries from")
    count = await api.call(
        operations.replay_failed_since, api.store, since, api.clock.now(), tenant=who.tenant
    )
    notice = f"Replayed {count} failed deliveries created since {_when(since)}."
    return redirect(request, "admin_deliveries", notice)


# -- routes ----------------------------------------------------------------------


def routes(api: Api) -> list[BaseRoute]:
    """The pages' routes, and their static files under ``/static``."""

    def plain(
        fn: Callable[[Api, Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            return await fn(api, request)

        return handle

    table: list[tuple[str, str, Handler, str]] = [
        ("GET", "/", home, "admin_home"),
        ("POST", "/signout", signout, "admin_signout"),
        ("POST", "/tenant", switch_tenant, "admin_tenant"),
        ("GET", "/endpoints", endpoints_page, "admin_endpoints"),
        ("POST", "/endpoints", create_endpoint, "admin_create"),
        ("GET", "/endpoints/new", new_endpoint_page, "admin_new"),
        ("GET", "/endpoints/{endpoint_id}", endpoint_page, "admin_endpoint"),
        ("GET", "/endpoints/{endpoint_id}/status", endpoint_status, "admin_status"),
        ("GET", "/endpoints/{endpoint_id}/edit", edit_endpoint_page, "admin_edit"),
        ("POST", "/endpoints/{endpoint_id}/edit", change_endpoint, "admin_change"),
        ("POST", "/endpoints/{endpoint_id}/verify", verify_endpoint, "admin_verify"),
        ("POST", "/endpoints/{endpoint_id}/enable", enable_endpoint, "admin_enable"),
        ("POST", "/endpoints/{endpoint_id}/disable", disable_endpoint, "admin_disable"),
        ("POST", "/endpoints/{endpoint_id}/rotate", rotate_secret, "admin_rotate"),
        ("GET", "/endpoints/{endpoint_id}/remove", remove_page, "admin_remove_page"),
        ("POST", "/endpoints/{endpoint_id}/remove", remove_endpoint, "admin_remove"),
        ("GET", "/test", test_page, "admin_test"),
        ("POST", "/test", send_test_event, "admin_send_test"),
        ("POST", "/test/check", check_test_data, "admin_check"),
        ("GET", "/deliveries", deliveries_page, "admin_deliveries"),
        ("POST", "/deliveries/recover", recover, "admin_recover"),
        ("GET", "/deliveries/{delivery_id}", delivery_page, "admin_delivery"),
        ("POST", "/deliveries/{delivery_id}/replay", replay_delivery, "admin_replay"),
        ("POST", "/deliveries/{delivery_id}/retry", retry_delivery, "admin_retry"),
    ]
    return [
        Route("/signin", plain(signin_page), methods=["GET"], name="admin_signin"),
        Route("/signin", plain(signin), methods=["POST"], name="admin_signin_post"),
        *(
            Route(path, page(api, handler), methods=[method], name=name)
            for method, path, handler, name in table
        ),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="admin_static"),
    ]


__all__ = ["middleware", "routes", "session_key"]
