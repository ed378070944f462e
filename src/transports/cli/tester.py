"""``webhooks test``: the platform's webhook testing tool.

Sends one signed event to a URL now, exactly as the dispatcher would (same
body encoding, same headers), and shows what went out and what came back.
A developer tool: plain http and loopback URLs are allowed.
"""

from __future__ import annotations

import time
from http import HTTPStatus

import attrs
import click

from transports.cli.output import console
from transports.cli.publish import parse_data
from transports.http.guard import OutboundPolicy
from transports.http.httpx_transport import HttpxSyncTransport
from transports.http.transport import HttpResponse, TransportError
from transports.testing.signed import signed_request
from webhook_core import HttpRequest, validate_url
from webhook_core.samples import sample_data

EXCERPT = 500
# A developer tool: any address, loopback and private ones included, and plain http
# (the guard still refuses cloud metadata addresses).
DEVELOPER_POLICY = OutboundPolicy(allowed_networks=("0.0.0.0/0", "::/0"), allow_http=True)


@attrs.frozen
class SendOutcome:
    """What one test send produced: the request, then a response or an error, and the latency."""

    request: HttpRequest
    response: HttpResponse | None
    error: str | None
    latency: float


def send_test_event(
    url: str, event: str, secret: str, data: object | None, timeout: float = 30.0
) -> SendOutcome:
    """Build, sign and send one event to ``url``; never raises for a network failure."""
    validate_url(url, allow_http=True)
    payload = sample_data(event) if data is None else data
    request = signed_request(event, payload, secret, url=url, timeout=timeout)
    transport = HttpxSyncTransport(policy=DEVELOPER_POLICY)
    started = time.perf_counter()
    try:
        response: HttpResponse | None = transport.send(request)
        error = None
    except TransportError as exc:
        response, error = None, f"{exc.kind.value}: {exc.detail}"
    finally:
        latency = time.perf_counter() - started
        transport.close()
    return SendOutcome(request, response, error, latency)


def _show(outcome: SendOutcome) -> None:
    request = outcome.request
    console.print(f"POST {request.url}", markup=False)
    for name, value in request.headers:
        console.print(f"  {name}: {value}", markup=False)
    console.print(f"  body ({len(request.body)} bytes): {request.body.decode()}", markup=False)
    if outcome.response is None:
        console.print(
            f"no response after {outcome.latency * 1000:.0f} ms: {outcome.error}", markup=False
        )
        return
    status = outcome.response.status
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    verdict = "ok" if 200 <= status < 300 else "failed: the sender would retry"
    console.print(
        f"response: {status} {phrase} in {outcome.latency * 1000:.1f} ms ({verdict})",
        markup=False,
    )
    text = outcome.response.body.decode("utf-8", errors="replace")
    excerpt = text[:EXCERPT] + (" ..." if len(text) > EXCERPT else "")
    console.print(f"  body: {excerpt}", markup=False)


@click.command()
@click.argument("url")
@click.option("--event", required=True, help="Event name, e.g. message.delivered.")
@click.option("--secret", required=True, help="The secret the receiver verifies with.")
@click.option(
    "--data",
    metavar="JSON|@FILE",
    help="The event's data (default: a realistic sample for the event).",
)
@click.option("--timeout", type=click.FloatRange(min=0.1, max=300), default=30.0, show_default=True)
def test(url: str, event: str, secret: str, data: str | None, timeout: float) -> None:
    """Send one signed EVENT to URL now; exit 0 on a 2xx answer, 1 otherwise."""
    outcome = send_test_event(url, event, secret, parse_data(data), timeout)
    _show(outcome)
    ok = outcome.response is not None and 200 <= outcome.response.status < 300
    click.get_current_context().exit(0 if ok else 1)
