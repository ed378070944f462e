"""``webhooks serve``: run the dispatcher until SIGINT or SIGTERM, then stop gracefully.

Stopping: claiming stops at once, attempts and handshakes in flight finish
(each within its 30 s deadline) and their results are written; claims never
started go back to the store. Nothing is lost: a claim that was not written
back is claimed again when its lease ends.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable

import anyio
import click

from transports.aio.service import WebhookService
from transports.cli.admin import admin_in_thread
from transports.cli.context import Context, outbound_from_env
from transports.cli.output import console
from transports.http.guard import OutboundPolicy
from transports.stores.interface import Store
from transports.sync.service import ThreadedWebhookService

RUNTIMES = ("trio", "asyncio", "threads")
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def _serve_async(store: Store, outbound: OutboundPolicy, ready: Callable[[], None]) -> str:
    with anyio.open_signal_receiver(*_STOP_SIGNALS) as signals:
        async with WebhookService(
            store, allow_http=outbound.allow_http, allowed_networks=outbound.allowed_networks
        ):
            ready()
            async for signum in signals:
                return signal.Signals(signum).name
    return "end"  # pragma: no cover - the signal receiver never ends by itself


def _serve_threads(store: Store, outbound: OutboundPolicy, ready: Callable[[], None]) -> str:
    received: list[str] = []
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in _STOP_SIGNALS}
    try:
        service = ThreadedWebhookService(
            store, allow_http=outbound.allow_http, allowed_networks=outbound.allowed_networks
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
    "--admin",
    "admin_listen",
    metavar="HOST:PORT",
    help="Serve the management API there too, in the same process (e.g. 127.0.0.1:8400).",
)
@click.pass_obj
def serve(state: Context, runtime: str, admin_listen: str | None) -> None:
    """Run the dispatcher: handshakes, deliveries and retries, until SIGINT or SIGTERM.

    Plain http endpoints are delivered to only with WEBHOOKS_ALLOW_HTTP=1, and loopback or
    private addresses only within WEBHOOKS_ALLOWED_NETWORKS (comma-separated CIDRs).
    """
    outbound = outbound_from_env()
    store = state.store()

    def ready() -> None:
        console.print(
            f"webhooks serve: dispatching from {state.db_url} on {runtime}; "
            "Ctrl+C or SIGTERM stops",
            markup=False,
        )

    with contextlib.ExitStack() as stack:
        if admin_listen is not None:
            url = stack.enter_context(admin_in_thread(store, admin_listen))
            console.print(f"webhooks serve: management API on {url}/api/v1", markup=False)
        if runtime == "threads":
            name = _serve_threads(store, outbound, ready)
        else:
            name = anyio.run(_serve_async, store, outbound, ready, backend=runtime)
    console.print(f"{name}: stopped; attempts in flight finished and were recorded", markup=False)
