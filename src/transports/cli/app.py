"""The ``webhooks`` command group and its global ``--db`` option."""

from __future__ import annotations

from typing import Any

import click

from transports.cli import admin, deliveries, endpoints, listen, publish, serve, tester
from transports.cli.context import Context, UserError, database_errors, first_line
from transports.driving.operations import NotFound
from transports.stores.url import ENV_VAR
from webhook_core import DEFAULT_TENANT, WebhookError


class WebhooksGroup(click.Group):
    """A click group that turns the library's user errors into one-line messages (exit 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (WebhookError, NotFound) as exc:
            raise UserError(str(exc)) from None
        except database_errors() as exc:
            raise UserError(f"database error: {first_line(exc)}") from None


@click.group(cls=WebhooksGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    metavar="URL",
    help=f"Database: a SQLite file path, sqlite:///path, postgresql://... or memory: "
    f"(default: ${ENV_VAR}, else webhooks.db in the working directory).",
)
@click.option(
    "--tenant",
    metavar="ID",
    default=DEFAULT_TENANT,
    show_default=True,
    help="The tenant whose endpoints, events and deliveries the command sees and changes.",
)
@click.version_option(package_name="webhooks-delivery", prog_name="webhooks")
@click.pass_context
def cli(ctx: click.Context, db: str | None, tenant: str) -> None:
    """Reliable webhook delivery: dispatcher, endpoints, deliveries and testing tools."""
    try:
        state = Context(db, tenant)
    except WebhookError as exc:
        raise UserError(str(exc)) from None
    ctx.obj = state
    ctx.call_on_close(state.close)


def main() -> None:
    """Entry point of the ``webhooks`` script."""
    cli(prog_name="webhooks")


cli.add_command(serve.serve)
cli.add_command(endpoints.endpoints)
cli.add_command(publish.publish)
cli.add_command(deliveries.deliveries)
cli.add_command(tester.test)
cli.add_command(listen.listen)
cli.add_command(admin.admin)
cli.add_command(admin.tokens)
