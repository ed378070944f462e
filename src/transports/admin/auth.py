"""Who is calling the management API, and which tenant's records they may see.

``Authorization: Bearer <token>``. The operator token (``WEBHOOKS_ADMIN_TOKEN``)
reaches every tenant: a request names one with ``?tenant=ID`` (``default``
otherwise). A tenant token (``webhooks tokens create --tenant acme``) reaches
its own tenant only; naming another is refused (403). Tenant tokens are kept in
the store as SHA-256 digests only (they are long random strings, so a plain
digest is enough; there is nothing to guess): the database never holds a
token that works. The operator token is compared in constant time
(``hmac.compare_digest``), a tenant token by looking up its digest.

A host that mounts the app may pass ``authorize(request) -> tenant or None``
instead: the tenant it returns is the caller's, None refuses the request (401).
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import os
import secrets
from collections.abc import Awaitable, Callable

import attrs
from starlette.requests import Request

from transports.admin.problems import Problem
from transports.ids import new_id
from transports.stores.interface import AdminToken, TokenStore
from webhook_core import DEFAULT_TENANT, ConfigError, validate_tenant

ENV_ADMIN_TOKEN = "WEBHOOKS_ADMIN_TOKEN"
TOKEN_PREFIX = "whadm_"

Authorize = Callable[[Request], "str | Awaitable[str | None] | None"]
"""A host's own check: the caller's tenant, or None to refuse (may be async)."""


def token_digest(token: str) -> str:
    """The SHA-256 of a token, in hex: what the store keeps."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(
    store: TokenStore, tenant: str, now: float, description: str = ""
) -> tuple[AdminToken, str]:
    """A new token for ``tenant``: the stored record, and the token itself (shown once)."""
    validate_tenant(tenant)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = AdminToken(new_id("tok"), tenant, token_digest(token), now, description)
    store.save_token(record)
    return record, token


def operator_token_from_env() -> str | None:
    """``WEBHOOKS_ADMIN_TOKEN``, or None when unset; a short one is refused."""
    value = os.environ.get(ENV_ADMIN_TOKEN, "").strip()
    if not value:
        return None
    if len(value) < 16:
        raise ConfigError(f"{ENV_ADMIN_TOKEN} must be at least 16 characters long")
    return value


@attrs.frozen
class Caller:
    """An authenticated caller: ``tenant`` None is the operator (every tenant)."""

    tenant: str | None

    def tenant_for(self, request: Request) -> str:
        """The tenant this request acts for (``?tenant=`` for the operator)."""
        named = request.query_params.get("tenant")
        if named is not None:
            try:
                validate_tenant(named)
            except ConfigError as exc:
                raise Problem(422, f"query parameter 'tenant': {exc}") from None
        if self.tenant is None:
            return named or DEFAULT_TENANT
        if named is not None and named != self.tenant:
            raise Problem(403, f"this token is for tenant {self.tenant!r}, not {named!r}")
        return self.tenant


_UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="webhooks"'}


def bearer(request: Request) -> str:
    """The request's bearer token; a 401 problem without one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(
            401, "send 'Authorization: Bearer <token>' with a valid token", headers=_UNAUTHORIZED
        )
    return token.strip()


async def authenticate(
    request: Request,
    lookup: Callable[[str], Awaitable[AdminToken | None]],
    operator_token: str | None,
    authorize: Authorize | None,
) -> Caller:
    """The caller of ``request``; a 401 problem when it is not authenticated."""
    if authorize is not None:
        answer = authorize(request)
        tenant = await answer if inspect.isawaitable(answer) else answer
        if tenant is None:
            raise Problem(401, "the request is not authorized", headers=_UNAUTHORIZED)
        return Caller(validate_tenant(tenant))
    caller = await caller_for_digest(token_digest(bearer(request)), lookup, operator_token)
    if caller is None:
        raise Problem(
            401, "the token is not valid (revoked, or never issued)", headers=_UNAUTHORIZED
        )
    return caller


async def caller_for_digest(
    digest: str,
    lookup: Callable[[str], Awaitable[AdminToken | None]],
    operator_token: str | None,
) -> Caller | None:
    """The caller whose token has this SHA-256 ``digest`` (the operator, or a stored tenant
    token's tenant), or None. Bearer tokens and the admin page's sessions (which keep only
    the digest) are both checked here."""
    if operator_token is not None and hmac.compare_digest(
        digest.encode("utf-8"), token_digest(operator_token).encode("utf-8")
    ):
        return Caller(None)
    found = await lookup(digest)
    if found is None or not hmac.compare_digest(found.digest, digest):
        return None
    return Caller(found.tenant)
