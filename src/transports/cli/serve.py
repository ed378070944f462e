"""``webhooks serve``: run the dispatcher until SIGINT or SIGTERM, then stop gracefully.

Stopping: claiming stops at once, attempts and handshakes in flight finish
(each within its 30 s deadline) and their results are written; claims never
started go back to the store. Nothing is lost: a claim that was not written
back is claimed again when its lease ends.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import anyio
import click

from transports.aio.service import WebhookService
from transports.cli.admin import admin_in_thread
from transports.cli.context import Context, UserError, outbound_from_env, parse_age
from transports.cli.logs import FORMATS, configure_logging
from transports.cli.output import console
from transports.driving.operations import Retention
from transports.http.guard import OutboundPolicy
from transports.stores.interface import Store
from transports.sync.service import ThreadedWebhookService

RUNTIMES = ("trio", "asyncio", "threads")
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def _serve_async(
    store: Store, outbound: OutboundPolicy, ready: Callable[[], None], options: dict[str, Any]
) -> str:
    with anyio.open_signal_receiver(*_STOP_SIGNALS) as signals:
        async with WebhookService(
            store,
            allow_http=outbound.allow_http,
            allowed_networks=outbound.allowed_networks,
            **options,
        ):
            ready()
            async for signum in signals:
                return signal.Signals(signum).name
    return "end"  # pragma: no cover - the signal receiver never ends by itself


def _serve_threads(
    store: Store, outbound: OutboundPolicy, ready: Callable[[], None], options: dict[str, Any]
) -> str:
    received: list[str] = []
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in _STOP_SIGNALS}
    try:
        service = ThreadedWebhookService(
            store,
            allow_http=outbound.allow_http,
            allowed_networks=outbound.allowed_networks,
            **options,
        )
        service.start()
        try:
            ready()
            stop.wait()
        finally:
            service.stop()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return received[0]


@click.command()
@click.option(
    "--runtime",
    type=click.Choice(RUNTIMES),
    default="trio",
    show_default=True,
    help="Run the dispatcher on trio, asyncio or plain threads.",
)
@click.option(
    "--transport",
    type=click.Choice(("http1", "httpx")),
    default="http1",
    show_default=True,
    help="The HTTP client: http1 (the lean HTTP/1.1 transport), or httpx (for proxies).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="At most N attempts under way at once (default: 64).",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.01),
    default=None,
    metavar="SECONDS",
    help="How often the database is checked for work other processes stored (default: 1).",
)
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A PEM file of certificate authorities trusted besides the public ones.",
)
@click.option(
    "--retention",
    metavar="AGE",
    default="7d",
    show_default=True,
    help="Delete delivered records older than AGE (30m, 12h, 7d, 2w), or 'forever'.",
)
@click.option(
    "--retention-failed",
    metavar="AGE",
    default="forever",
    show_default=True,
    help="Delete failed records older than AGE, or 'forever' (keep them to replay).",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log to stderr failures and more: -v adds handshakes, -vv every attempt.",
)
@click.option(
    "--log-format",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text: readable lines; json: one JSON object a line, with the record's fields.",
)
@click.option(
    "--metrics",
    "metrics_address",
    metavar="HOST:PORT",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (the 'metrics' extra).",
)
@click.option(
    "--admin",
    "admin_listen",
    metavar="HOST:PORT",
    help="Serve the management API there too, in the same process (e.g. 127.0.0.1:8400).",
)
@click.pass_obj
def serve(
    state: Context,
    runtime: str,
    transport: str,
    concurrency: int | None,
    poll_interval: float | None,
    ca_file: str | None,
    retention: str,
    retention_failed: str,
    verbose: int,
    log_format: str,
    metrics_address: str | None,
    admin_listen: str | None,
) -> None:
    """Run the dispatcher: handshakes, deliveries and retries, until SIGINT or SIGTERM.

    Plain http endpoints are delivered to only with WEBHOOKS_ALLOW_HTTP=1, and loopback or
    private addresses only within WEBHOOKS_ALLOWED_NETWORKS (comma-separated CIDRs).
    """
    outbound = outbound_from_env()
    options: dict[str, Any] = {
        "http": transport,
        "max_in_flight": concurrency,
        "poll_interval": poll_interval,
        "ca_file": ca_file,
        "retention": Retention(
            _kept_for(retention, "--retention"), _kept_for(retention_failed, "--retention-failed")
        ),
    }
    with ExitStack() as stack:
        if metrics_address is not None:
            options["metrics"] = _metrics(metrics_address, stack)
        configure_logging(verbose, log_format)
        _serve(state, runtime, outbound, options, admin_listen)


def _metrics(address: str, stack: ExitStack) -> Any:
    """A ``WebhookMetrics`` on the default registry, served at ``address`` until ``stack`` ends."""
    try:
        from transports.driving.metrics import (  # noqa: PLC0415 - the metrics extra
            WebhookMetrics,
            serve_metrics,
        )
    except ImportError:
        raise UserError(
            "--metrics needs prometheus_client: pip install 'webhooks-delivery[metrics]'"
        ) from None
    try:
        stack.callback(serve_metrics(address).close)
    except ValueError as exc:
        raise UserError(f"--metrics: {exc}") from None
    except OSError as exc:
        raise UserError(f"--metrics: cannot listen on {address}: {exc.strerror}") from None
    return WebhookMetrics()


def _serve(
    state: Context,
    runtime: str,
    outbound: OutboundPolicy,
    options: dict[str, Any],
    admin_listen: str | None,
) -> None:
    store = state.store()

    def ready() -> None:
        console.print(
            f"webhooks serve: dispatching from {state.db_url} on {runtime}; "
            "Ctrl+C or SIGTERM stops",
            markup=False,
        )

    with ExitStack() as stack:
        if admin_listen is not None:
            url = stack.enter_context(admin_in_thread(store, admin_listen))
            console.print(f"webhooks serve: management API on {url}/api/v1", markup=False)
        if runtime == "threads":
            name = _serve_threads(store, outbound, ready, options)
        else:
            name = anyio.run(_serve_async, store, outbound, ready, options, backend=runtime)
    console.print(f"{name}: stopped; attempts in flight finished and were recorded", markup=False)


def _kept_for(text: str, option: str) -> float | None:
    """``--retention``'s AGE in seconds; None for ``forever``."""
    if text.strip().lower() == "forever":
        return None
    age = parse_age(text)
    if age is None or age <= 0:
        raise UserError(
            f"{option} {text!r} is not an age such as 30m, 12h, 7d or 2w, nor 'forever'"
        )
    return age
