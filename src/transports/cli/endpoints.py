"""``webhooks endpoints``: add, list, show, verify, disable, enable, rotate and remove endpoints."""

from __future__ import annotations

import time

import click

from transports.cli.context import WAIT_OPTION, Context, UserError, outbound_from_env, poll
from transports.cli.output import (
    Column,
    console,
    endpoint_json,
    fields,
    print_json,
    print_table,
    when,
)
from transports.driving import operations
from transports.http.guard import ENV_ALLOW_HTTP
from webhook_core import Endpoint, EndpointState, platform_catalog

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
HEADER_OPTION = click.option(
    "--header",
    "header_lines",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="A header sent with every delivery to the endpoint; repeatable.",
)
EVENTS_HELP = (
    "Event name or pattern to subscribe to (message.delivered, message.*, *); repeatable. "
    "'webhooks events' lists them."
)


def parse_headers(lines: tuple[str, ...]) -> dict[str, str]:
    """``--header 'Name: value'`` options as a mapping."""
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise UserError(f"--header {line!r} is not 'NAME: VALUE' (e.g. 'X-Team: billing')")
        headers[name.strip()] = value.strip()
    return headers


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
            f"endpoint {endpoint.id} is stored but still verifying after {timeout:g} s; "
            f"is 'webhooks serve' running against this database? (check: webhooks endpoints "
            f"show {endpoint.id})"
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
    help=EVENTS_HELP + " Default: every event.",
)
@HEADER_OPTION
@click.option(
    "--secret", help="The signing secret, at least 24 bytes (default: a new whsec_ secret)."
)
@click.option("--description", default="", help="A note for operators.")
@click.option(
    "--allow-duplicate", is_flag=True, help="Register URL even if another endpoint has it."
)
@WAIT_OPTION
@click.option("--quiet", "-q", is_flag=True, help="Print only the endpoint id.")
@JSON_OPTION
@pass_context
def add(
    state: Context,
    url: str,
    patterns: tuple[str, ...],
    header_lines: tuple[str, ...],
    secret: str | None,
    description: str,
    allow_duplicate: bool,
    wait_seconds: float | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Register URL; prints its id and secret. The running dispatcher sends the handshake.

    Plain http URLs are refused unless WEBHOOKS_ALLOW_HTTP=1, and loopback or private
    addresses unless WEBHOOKS_ALLOWED_NETWORKS allows them.
    """
    outbound = outbound_from_env()
    allow_http = outbound.allow_http
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
        headers=parse_headers(header_lines),
        description=description,
        allow_http=allow_http,
        outbound=outbound,
        catalog=platform_catalog(),
        allow_duplicate=allow_duplicate,
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
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most N.")
@click.option(
    "--offset", type=click.IntRange(min=0), default=0, help="Skip the first N (oldest first)."
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the endpoint ids.")
@JSON_OPTION
@pass_context
def list_(state: Context, limit: int | None, offset: int, quiet: bool, as_json: bool) -> None:
    """List the endpoints, oldest first."""
    everything = operations.list_endpoints(state.store(), state.tenant)
    found = everything[offset : None if limit is None else offset + limit]
    if quiet:
        for e in found:
            console.print(e.id, markup=False)
        return
    if as_json:
        print_json([endpoint_json(e) for e in found])
        return
    if not found:
        console.print("no endpoints; add one with: webhooks endpoints add URL")
        return
    print_table(ENDPOINT_COLUMNS, endpoint_rows(found))
    if len(found) < len(everything):
        console.print(
            f"({offset + 1}-{offset + len(found)} of {len(everything)}; page with --offset N)",
            markup=False,
        )


ENDPOINT_COLUMNS = (
    Column("ID", 0),
    Column("STATE", 2),
    Column("EVENTS", 3, shrink_to=8),
    Column("URL", 1, shrink_to=20),
)


def endpoint_rows(found: list[Endpoint]) -> list[list[str]]:
    """``endpoints list``'s rows (``ENDPOINT_COLUMNS``)."""
    return [[e.id, e.state.value, ", ".join(e.filters), e.url] for e in found]


@endpoints.command()
@click.argument("endpoint_id", metavar="ID")
@click.option("--url", help="A new URL (the endpoint is verified again before it gets events).")
@click.option("--events", "patterns", multiple=True, metavar="PATTERN", help=EVENTS_HELP)
@HEADER_OPTION
@click.option("--no-headers", is_flag=True, help="Remove every header set with --header.")
@click.option("--description", default=None, help="A note for operators.")
@click.option(
    "--max-in-flight",
    type=click.IntRange(min=1),
    default=None,
    help="At most N attempts to this endpoint at once.",
)
@JSON_OPTION
@pass_context
def update(
    state: Context,
    endpoint_id: str,
    url: str | None,
    patterns: tuple[str, ...],
    header_lines: tuple[str, ...],
    no_headers: bool,
    description: str | None,
    max_in_flight: int | None,
    as_json: bool,
) -> None:
    """Change an endpoint's URL, events, headers, description or concurrency cap."""
    headers = parse_headers(header_lines) if header_lines or no_headers else None
    if (url, patterns, headers, description, max_in_flight) == (None, (), None, None, None):
        raise UserError(
            "nothing to change; give --url, --events, --header, --no-headers, --description "
            "or --max-in-flight"
        )
    store, now = state.store(), time.time()
    outbound = outbound_from_env()
    endpoint = operations.change_endpoint(
        store,
        endpoint_id,
        now,
        url=url,
        events=patterns or None,
        headers=headers,
        allow_http=outbound.allow_http,
        outbound=outbound,
        catalog=platform_catalog(),
        tenant=state.tenant,
    )
    if description is not None or max_in_flight is not None:
        endpoint = operations.set_endpoint_details(
            store,
            endpoint_id,
            description=description,
            max_in_flight=max_in_flight,
            tenant=state.tenant,
        )
    _summary(endpoint, "updated", as_json)


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
            ("headers", ", ".join(f"{k}: {v}" for k, v in endpoint.headers)),
            ("max in flight", endpoint.max_in_flight),
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
