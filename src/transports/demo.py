"""A tour of the library: real deliveries over loopback HTTP, then a retry walk.

Run it with ``python -m transports.demo``. Deliveries are stored in SQLite,
the embedded default. It starts a receiver on 127.0.0.1
that verifies every signature, registers endpoints (each verified by the
handshake), publishes one event of each of the platform's 13 kinds, and shows
a failing endpoint walking the retry schedule in ACCELERATED time (the real
schedule divided by ``--speedup``, 600 by default: 1 min becomes 0.1 s).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter

import anyio

from transports.aio.service import WebhookService
from transports.stores.sqlite import SQLiteStore
from transports.testing import (
    LOOPBACK_NETWORKS,
    Handler,
    LoopbackReceiver,
    ReceivedRequest,
    Respond,
)
from webhook_core import (
    DEFAULT_SCHEDULE,
    PLATFORM_EVENTS,
    SIGNATURE_HEADER,
    DeliveryState,
    EndpointState,
    RetryPolicy,
    VerificationError,
    Verifier,
)
from webhook_core.samples import sample_data

SECRET = "whsec_ZGVtby1zZWNyZXQtZm9yLXRoZS13ZWJob29rcy1kZW1v"


class DemoReceiver:
    """Answers handshakes, verifies both signature headers, and tallies what it got."""

    def __init__(self) -> None:
        self.verifier = Verifier([SECRET])
        self.seen: Counter[str] = Counter()
        self.bad_signatures = 0

    def handle(self, request: ReceivedRequest) -> Respond:
        body = request.json()
        headers = dict(request.headers)
        try:
            self.verifier.verify(request.body, headers, time.time())
            self.verifier.verify_platform(request.body, headers)
        except VerificationError as exc:
            self.bad_signatures += 1
            return Respond(401, str(exc).encode())
        if body["event"] == "webhook.verification":
            return Respond(200, body["data"]["verification_token"].encode())
        if request.path_only == "/flaky":
            return Respond(500, b"database unavailable")
        self.seen[f"{request.path_only} {body['event']}"] += 1
        return Respond(200)


async def wait_active(hooks: WebhookService, endpoint_id: str) -> EndpointState:
    """Wait (at most 10 s) for the handshake to finish."""
    with anyio.move_on_after(10):
        while True:
            endpoint = await hooks.get_endpoint(endpoint_id)
            assert endpoint is not None
            if endpoint.state is not EndpointState.VERIFYING:
                return endpoint.state
            await anyio.sleep(0.01)
    return EndpointState.VERIFYING


async def run(speedup: float, db: str) -> int:
    """The demo; returns the process exit status."""
    policy = RetryPolicy(schedule=tuple(d / speedup for d in DEFAULT_SCHEDULE), timeout=5.0)
    receiver = DemoReceiver()
    with LoopbackReceiver(default=Handler(receiver.handle)) as rx:
        print(
            f"Receiver listening on {rx.url()} (verifies webhook-signature and {SIGNATURE_HEADER})"
        )
        print(f"Storing deliveries in SQLite at {db}")
        async with WebhookService(
            SQLiteStore(db), allow_http=True, allowed_networks=LOOPBACK_NETWORKS, policy=policy
        ) as hooks:
            routes = {
                "/all": ["*"],
                "/messages": ["message.*"],
                "/money": ["payment.*"],
                "/flaky": ["grievance.created"],
            }
            endpoints = {}
            for path, events in routes.items():
                endpoint = await hooks.add_endpoint(rx.url(path), secret=SECRET, events=events)
                state = await wait_active(hooks, endpoint.id)
                endpoints[path] = endpoint.id
                patterns = ",".join(events)
                print(
                    f"  endpoint {endpoint.id} {path:<10} {patterns:<18} handshake: {state.value}"
                )

            print(f"\nPublishing one event of each of the {len(PLATFORM_EVENTS)} kinds...")
            started = time.perf_counter()
            fanned = 0
            for name in PLATFORM_EVENTS:
                result = await hooks.publish(name, sample_data(name))
                fanned += result.deliveries
            print(f"  {len(PLATFORM_EVENTS)} events fanned out to {fanned} deliveries")
            steps = ", ".join(f"{d:g} s -> {d / speedup:g} s" for d in DEFAULT_SCHEDULE)
            print(f"\nThe /flaky endpoint answers 500; its retry schedule runs {speedup:g}x faster")
            print(f"than real time (ACCELERATED, not virtual): {steps}")
            await hooks.drain()
            elapsed = time.perf_counter() - started

            print("\nWhat the receiver accepted (path, event: count):")
            for key, count in sorted(receiver.seen.items()):
                print(f"  {key:<36} {count}")
            deliveries = await hooks.list_deliveries(limit=1000)
            states = Counter(d.state.value for d in deliveries)
            print(f"\nDeliveries by state: {dict(sorted(states.items()))}  ({elapsed:.1f} s)")
            for d in deliveries:
                if d.endpoint_id == endpoints["/flaky"]:
                    print(f"\nRetry walk of {d.id} ({d.state.value}: {d.reason}):")
                    first = d.attempts[0].started_at
                    previous_end = None
                    for a in d.attempts:
                        offset = a.started_at - first
                        line = f"  attempt {a.number}: t={offset:6.2f} s  HTTP {a.status}"
                        if previous_end is not None:
                            waited = (a.started_at - previous_end) * speedup
                            line += f"  (waited {waited:,.0f} s in real-time terms)"
                        print(line)
                        previous_end = a.ended_at
            ok = (
                receiver.bad_signatures == 0
                and states.get(DeliveryState.FAILED.value, 0) == 1
                and states.get(DeliveryState.DELIVERED.value, 0) == fanned - 1
            )
            print(
                "\nAll signatures verified; nothing lost."
                if ok
                else "\nSomething went wrong (see above)."
            )
            return 0 if ok else 1


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--speedup",
        type=float,
        default=600.0,
        help="how much faster than real time the retry schedule runs",
    )
    parser.add_argument(
        "--db", help="SQLite file to store deliveries in (default: a new temporary file)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        db = args.db or os.path.join(scratch, "webhooks-demo.db")
        raise SystemExit(anyio.run(run, args.speedup, db))


if __name__ == "__main__":
    main()
