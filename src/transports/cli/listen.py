"""``webhooks listen``: a local receiver that prints every verified event.

It is the library's own ``Receiver`` behind its WSGI adapter, on a small
threaded server: it answers the verification handshake, de-duplicates by
event id, and prints rejected requests with the reason.
"""

from __future__ import annotations

import json
import logging
import signal
import socketserver
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import click
from rich.console import Console

from transports.cli.context import UserError
from transports.cli.output import console
from transports.receiving import ReceivedEvent, Receiver, wsgi_app

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Requests are reported by the receiver's own lines instead."""


class _ConsoleLog(logging.Handler):
    """Prints the receiver's log lines: handshakes, duplicates and rejections with their reason."""

    def __init__(self, out: Console) -> None:
        super().__init__(logging.INFO)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        mark = "✗" if record.levelno >= logging.WARNING else "•"
        self.out.print(f"{mark} {record.getMessage()}", markup=False)


def _printer(out: Console) -> Any:
    def show(event: ReceivedEvent[Any]) -> None:
        extra = ""
        if event.delivery_id:
            extra = f" (delivery {event.delivery_id}, attempt {event.attempt})"
        out.print(f"✓ verified {event.name} {event.id}{extra}", markup=False)
        data = json.loads(event.body)["data"]
        for line in json.dumps(data, indent=2, ensure_ascii=False).splitlines():
            out.print(f"    {line}", markup=False)

    return show


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port (0: any free port).",
)
@click.option("--secret", required=True, help="The endpoint's secret, to verify signatures with.")
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="Seconds webhook-timestamp may differ from now.",
)
def listen(host: str, port: int, secret: str, tolerance: float) -> None:
    """Receive webhooks locally and print each verified event until Ctrl+C."""
    receiver = Receiver(secret, tolerance=tolerance)
    receiver.add_handler("*", _printer(console))
    log = logging.getLogger("transports.receiving")
    handler = _ConsoleLog(console)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        server = make_server(
            host, port, wsgi_app(receiver), server_class=_Server, handler_class=_QuietHandler
        )
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in _STOP_SIGNALS}
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    thread.start()
    try:
        console.print(
            f"listening on http://{host}:{server.server_port}/ "
            "(verifying signatures; Ctrl+C stops)",
            markup=False,
        )
        stop.wait()
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
        log.removeHandler(handler)
        for s, previous_handler in previous.items():
            signal.signal(s, previous_handler)
    console.print("stopped", markup=False)
