"""``webhooks endpoints``: add, list, show, verify, disable, enable, rotate and remove endpoints."""

from __future__ import annotations

import time

import click

from transports.cli.context import WAIT_OPTION, Context, UserError, outbound_from_env, poll
from transports.cli.output import console, endpoint_json, fields, print_json, table, when
from transports.driving import operations
from transports.http.guard import ENV_ALLOW_HTTP
from webhook_core import Endpoint, EndpointState

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
pass_context = click.make_pass_decorator(Context)


def _summary(endpoint: Endpoint, verb: str, as_json: bool) -> None:
    if as_json:
        print_json(endpoint_json(endpoint))
    else:
        console.print(f"endpoint {endpoint.id} {verb}; state: {endpoint.state.value}", markup=False)


def _await_handshake(state: Context, endpoint: Endpoint, timeout: float | None) -> Endpoint:
    """With ``--wait``: the endpoint once the running dispatcher's handshake has finished."""
    if timeout is None or endpoint.state is not EndpointState.VERIFYING:
        return endpoint
    store = state.store()

    def finished() -> Endpoint | None:
        current = operations.find_endpoint(store, endpoint.id, state.tenant)
        if current is None:
            raise operations.NotFound(f"endpoint {endpoint.id} was removed meanwhile")
        return None if current.state is EndpointState.VERIFYING else current

    done = poll(finished, timeout)
    if done is None:
        raise UserError(
            f"endpoint {endpoint.id} is still verifying after {timeout:g} s; "
            "is 'webhooks serve' running against this database?"
        )
    return done


def _handshake_note(endpoint: Endpoint) -> str:
    if endpoint.state is EndpointState.VERIFYING:
        return "verifying (the running dispatcher sends the handshake)"
    if endpoint.state is EndpointState.UNVERIFIED:
        return f"unverified: {endpoint.last_error}"
    return str(endpoint.state.value)


@click.group()
def endpoints() -> None:
    """Register and manage the URLs events are delivered to."""


@endpoints.command()
@click.argument("url")
@click.option(
    "--events",
    "patterns",
    multiple=True,
    metavar="PATTERN",
    help="Event name or pattern to subscribe to (message.delivered, message.*, *); repeatable. "
    "Default: every event.",
)
@click.option("--secret", help="The signing secret (default: a new whsec_ secret).")
@click.option("--description", default="", help="A note for operators.")
@WAIT_OPTION
@click.option("--quiet", "-q", is_flag=True, help="Print only the endpoint id.")
@JSON_OPTION
@pass_context
def add(
    state: Context,
    url: str,
    patterns: tuple[str, ...],
    secret: str | None,
    description: str,
    wait_seconds: float | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Register URL; prints its id and secret. The running dispatcher sends the handshake.

    Plain http URLs are refused unless WEBHOOKS_ALLOW_HTTP=1.
    """
    allow_http = outbound_from_env().allow_http
    if url.lower().startswith("http://") and not allow_http:
        raise UserError(
            f"URL {url!r} uses plain http; use https, or set {ENV_ALLOW_HTTP}=1 to allow it"
        )
    endpoint = operations.add_endpoint(
        state.store(),
        url,
        time.time(),
        secret=secret,
        events=patterns or ("*",),
        description=description,
        allow_http=allow_http,
        tenant=state.tenant,
    )
    if quiet:
        console.print(endpoint.id, markup=False)
    elif not as_json:
        console.print(f"added endpoint {endpoint.id}", markup=False)
        fields(
            [
                ("url", endpoint.url),
                ("events", ", ".join(endpoint.filters)),
                ("secret", endpoint.secrets[0].value),
            ]
        )
    endpoint = _await_handshake(state, endpoint, wait_seconds)
    if as_json:
        print_json(endpoint_json(endpoint, secrets=True))
    elif not quiet:
        console.print(f"state:  {_handshake_note(endpoint)}", markup=False)


@endpoints.command(name="list")
@JSON_OPTION
@pass_context
def list_(state: Context, as_json: bool) -> None:
    """List every endpoint."""
    found = operations.list_endpoints(state.store(), state.tenant)
    if as_json:
        print_json([endpoint_json(e) for e in found])
        return
    if not found:
        console.print("no endpoints; add one with: webhooks endpoints add URL")
        return
    grid = table("ID", "STATE", "EVENTS", "URL")
    for e in found:
        grid.add_row(e.id, e.state.value, ", ".join(e.filters), e.url)
    console.print(grid)


@endpoints.command()
@click.argument("endpoint_id", metavar="ID")
@JSON_OPTION
@pass_context
def show(state: Context, endpoint_id: str, as_json: bool) -> None:
    """Show one endpoint, with its secrets."""
    endpoint = operations.find_endpoint(state.store(), endpoint_id, state.tenant)
    if endpoint is None:
        raise operations.NotFound(f"no endpoint with id {endpoint_id!r}")
    if as_json:
        print_json(endpoint_json(endpoint, secrets=True))
        return
    fields(
        [
            ("id", endpoint.id),
            ("url", endpoint.url),
            ("state", endpoint.state.value),
            ("events", ", ".join(endpoint.filters)),
            ("description", endpoint.description),
            ("created", when(endpoint.created_at)),
            ("verified url", endpoint.verified_url),
            ("disabled", endpoint.disabled_reason),
            ("last error", endpoint.last_error),
        ]
    )
    for secret in endpoint.secrets:
        expiry = f" (expires {when(secret.expires_at)})" if secret.expires_at else ""
        console.print(f"secret:      {secret.value}{expiry}", markup=False)


@endpoints.command()
@click.argument("endpoint_id", metavar="ID")
@WAIT_OPTION
@JSON_OPTION
@pass_context
def verify(state: Context, endpoint_id: str, wait_seconds: float | None, as_json: bool) -> None:
    """Send the verification handshake again (the running dispatcher sends it)."""
    endpoint = operations.request_verification(
        state.store(), endpoint_id, time.time(), state.tenant
    )
    endpoint = _await_handshake(state, endpoint, wait_seconds)
    if as_json:
        print_json(endpoint_json(endpoint))
    else:
        console.print(f"endpoint {endpoint.id}: {_handshake_note(endpoint)}", markup=False)


@endpoints.command()
@click.argument("endpoint_id", metavar="ID")
@click.option("--reason", default="disabled by operator", help="Why (kept on the endpoint).")
@JSON_OPTION
@pass_context
def disable(state: Context, endpoint_id: str, reason: str, as_json: bool) -> None:
    """Stop deliveries to an endpoint; its waiting deliveries fail (replay them later)."""
    endpoint = operations.disable_endpoint(
        state.store(), endpoint_id, time.time(), reason, state.tenant
    )
    _summary(endpoint, "disabled", as_json)


@endpoints.command()
@click.argument("endpoint_id", metavar="ID")
@JSON_OPTION
@pass_context
def enable(state: Context, endpoint_id: str, as_json: bool) -> None:
    """Resume deliveries to a disabled endpoint."""
    endpoint = operations.enable_endpoint(state.store(), endpoint_id, time.time(), state.tenant)
    _summary(endpoint, "enabled", as_json)


@endpoints.command(name="rotate-secret")
@click.argument("endpoint_id", metavar="ID")
@click.option("--secret", help="The new secret (default: a new whsec_ secret).")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=86_400.0,
    show_default=True,
    help="Seconds the old secret keeps signing beside the new one.",
)
@JSON_OPTION
@pass_context
def rotate_secret(
    state: Context, endpoint_id: str, secret: str | None, grace: float, as_json: bool
) -> None:
    """Give an endpoint a new secret; prints it."""
    endpoint = operations.rotate_endpoint_secret(
        state.store(), endpoint_id, time.time(), secret=secret, grace=grace, tenant=state.tenant
    )
    if as_json:
        print_json(endpoint_json(endpoint, secrets=True))
        return
    console.print(f"endpoint {endpoint.id} has a new secret", markup=False)
    console.print(f"secret: {endpoint.secrets[0].value}", markup=False)
    console.print(f"the old secret keeps signing for {grace:g} s", markup=False)


@endpoints.command()
@click.argument("endpoint_id", metavar="ID")
@pass_context
def remove(state: Context, endpoint_id: str) -> None:
    """Delete an endpoint; its waiting deliveries fail."""
    operations.remove_endpoint(state.store(), endpoint_id, time.time(), state.tenant)
    console.print(f"endpoint {endpoint_id} removed", markup=False)
