"""``webhooks admin`` (the management API) and ``webhooks tokens`` (its tenant tokens).

The API is served by uvicorn (the ``admin`` extra): in the foreground by
``webhooks admin --listen HOST:PORT``, or beside the dispatcher, in a thread of
its own, by ``webhooks serve --admin HOST:PORT`` (whatever the dispatcher's
runtime).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import click

from transports.cli.context import Context, UserError, outbound_from_env
from transports.cli.output import console, print_json, table, when
from transports.stores.interface import Store, TokenStore
from webhook_core import ConfigError, validate_tenant

DEFAULT_LISTEN = "127.0.0.1:8400"


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8400`` for IPv6) as a host and a port; a ``UserError`` otherwise."""
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--listen/--admin {value!r} is not HOST:PORT (e.g. {DEFAULT_LISTEN})")
    return host, int(port)


def _check_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _app(store: Store) -> Any:
    try:
        from transports.admin import management_app  # noqa: PLC0415 (optional extra)

        return management_app(store, outbound=outbound_from_env())
    except ImportError as exc:  # pragma: no cover - the dev environment has the extra
        raise UserError(
            f"the management API needs the admin extra ({exc.name} is missing): "
            "pip install 'webhooks-delivery[admin]'"
        ) from None
    except ConfigError as exc:
        raise UserError(str(exc)) from None


def _uvicorn(app: Any, host: str, port: int) -> Any:
    import uvicorn  # noqa: PLC0415 (optional extra)

    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))


@contextmanager
def admin_in_thread(store: Store, listen: str) -> Iterator[str]:
    """Serve the management API in a background thread while the block runs; yield its URL."""
    host, port = parse_listen(listen)
    _check_free(host, port)
    server = _uvicorn(_app(store), host, port)
    thread = threading.Thread(target=server.run, name="webhooks-admin", daemon=True)
    thread.start()
    try:
        while not server.started and thread.is_alive():
            time.sleep(0.02)
        yield f"http://{listen}"
    finally:
        server.should_exit = True
        thread.join(10)


@click.command()
@click.option(
    "--listen",
    default=DEFAULT_LISTEN,
    show_default=True,
    metavar="HOST:PORT",
    help="Where the management API listens.",
)
@click.pass_obj
def admin(state: Context, listen: str) -> None:
    """Serve the management HTTP API (no dispatching) until SIGINT or SIGTERM.

    The operator token is WEBHOOKS_ADMIN_TOKEN; tenants use tokens from 'webhooks tokens create'.
    """
    host, port = parse_listen(listen)
    _check_free(host, port)
    server = _uvicorn(_app(state.store()), host, port)
    console.print(
        f"webhooks admin: management API on http://{listen}/api/v1 for {state.db_url}; "
        "Ctrl+C or SIGTERM stops",
        markup=False,
    )
    server.run()


def _tokens(state: Context) -> TokenStore:
    return cast(TokenStore, state.store())


@click.group()
def tokens() -> None:
    """Tokens for the management API, one tenant each (stored as digests only)."""


@tokens.command()
@click.option("--tenant", "tenant", metavar="ID", help="The token's tenant (default: --tenant).")
@click.option("--description", default="", help="A note: who or what uses the token.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def create(state: Context, tenant: str | None, description: str, as_json: bool) -> None:
    """Make a token for a tenant; it is printed once (the last line), never again."""
    from transports.admin.auth import create_token  # noqa: PLC0415 (optional extra)

    try:
        chosen = validate_tenant(tenant or state.tenant)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    record, token = create_token(_tokens(state), chosen, time.time(), description)
    if as_json:
        print_json({"token": token, "id": record.id, "tenant": record.tenant})
        return
    console.print(
        f"token {record.id} for tenant {record.tenant}; it is shown once, keep it secret:",
        markup=False,
    )
    console.print(token, markup=False)


@tokens.command(name="list")
@click.option("--tenant", "tenant", metavar="ID", help="Only this tenant's tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def list_(state: Context, tenant: str | None, as_json: bool) -> None:
    """List tokens (never the tokens themselves: only their ids)."""
    found = _tokens(state).list_tokens(tenant)
    if as_json:
        print_json(
            [
                {
                    "id": t.id,
                    "tenant": t.tenant,
                    "created_at": when(t.created_at),
                    "description": t.description,
                }
                for t in found
            ]
        )
        return
    if not found:
        console.print("no tokens; make one with: webhooks tokens create --tenant ID")
        return
    grid = table("ID", "TENANT", "CREATED", "DESCRIPTION")
    for t in found:
        grid.add_row(t.id, t.tenant, when(t.created_at), t.description)
    console.print(grid)


@tokens.command()
@click.argument("token_id", metavar="ID")
@click.pass_obj
def revoke(state: Context, token_id: str) -> None:
    """Revoke a token: requests with it are refused from now on."""
    if not _tokens(state).delete_token(token_id):
        raise UserError(f"no token with id {token_id!r}")
    console.print(f"token {token_id} revoked", markup=False)
