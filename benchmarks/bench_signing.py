"""Signing and verifying one webhook body, side by side with the floor and other libraries.

Run from the repository root::

    python -m benchmarks.bench_signing [--repeat 7] [--target 0.2]

Each operation is timed with ``timeit``: the loop count is chosen so one repeat takes about
``--target`` seconds, the repeat is done ``--repeat`` times, and the fastest repeat is kept
(the minimum is the least disturbed by the rest of the machine).
"""

from __future__ import annotations

import argparse
import base64
import hmac
import platform
import shlex
import sys
import time
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

try:
    import webhook_core  # noqa: F401
except ImportError:  # running from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import standardwebhooks
import svix.webhooks

from webhook_core.catalog import platform_catalog
from webhook_core.envelope import build_event
from webhook_core.signing import Verifier, as_secrets, signature_headers

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
MSG_ID = "msg_2a1b3c4d5e6f"


def measure(operation: Callable[[], object], repeat: int, target: float) -> float:
    """Microseconds per call: the fastest of ``repeat`` runs of about ``target`` seconds."""
    timer = timeit.Timer(operation)
    number, elapsed = timer.autorange()
    number = max(1, int(number * target / max(elapsed, 1e-9)))
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="repeats per operation (min kept)")
    parser.add_argument("--target", type=float, default=0.2, help="seconds per repeat")
    args = parser.parse_args(argv)

    now = int(time.time())
    event = build_event(
        platform_catalog(),
        "message.delivered",
        {
            "message_id": "msg_123",
            "channel": "whatsapp",
            "to": "+919876543210",
            "status": "delivered",
        },
        event_id=MSG_ID,
        now=now,
    )
    body = event.body
    text = body.decode()
    secrets = as_secrets([SECRET])
    verifier = Verifier(secrets)
    headers = signature_headers(secrets, MSG_ID, now, body)
    key = secrets[0].standard_key
    message = f"{MSG_ID}.{now}.".encode() + body
    std = standardwebhooks.Webhook(SECRET)
    sx = svix.webhooks.Webhook(SECRET)
    moment = datetime.fromtimestamp(now, tz=UTC)

    # Every operation must succeed on this input before it is timed.
    assert verifier.verify(body, headers, now).scheme == "standard"
    std.verify(body, headers)
    sx.verify(body, headers)
    assert std.sign(MSG_ID, moment, text) == headers["webhook-signature"]

    operations: list[tuple[str, Callable[[], object]]] = [
        ("hmac.digest (floor)", lambda: hmac.digest(key, message, "sha256")),
        (
            "ours: signature_headers (both headers)",
            lambda: signature_headers(secrets, MSG_ID, now, body),
        ),
        ("ours: Verifier.verify", lambda: verifier.verify(body, headers, now)),
        ("standardwebhooks sign", lambda: std.sign(MSG_ID, moment, text)),
        ("standardwebhooks verify", lambda: std.verify(body, headers)),
        (
            "standardwebhooks verify(json_parse=False)",
            lambda: std.verify(body, headers, json_parse=False),
        ),
        ("svix Webhook.verify", lambda: sx.verify(body, headers)),
    ]

    python = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"command: {shlex.join(sys.orig_argv)}")
    print(f"python:  {python} on {platform.machine()} ({sys.executable})")
    print(f"body:    {len(body)} bytes ({event.name}); {args.repeat} repeats of ~{args.target} s")
    print()

    results = [(name, measure(op, args.repeat, args.target)) for name, op in operations]
    floor = results[0][1]
    reference = dict(results)["standardwebhooks verify"]
    width = max(len(name) for name, _ in results)
    print(f"{'operation':<{width}}  {'µs/op':>8}  {'x floor':>8}  {'x std verify':>12}")
    print(f"{'-' * width}  {'-' * 8}  {'-' * 8}  {'-' * 12}")
    for name, micros in results:
        print(f"{name:<{width}}  {micros:8.2f}  {micros / floor:8.2f}  {micros / reference:12.2f}")


if __name__ == "__main__":
    main()
