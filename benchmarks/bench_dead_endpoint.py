"""One dead endpoint among 100 healthy ones: how much it slows the healthy ones.

Run from the repository root::

    PYTHONPATH=src python -m benchmarks.bench_dead_endpoint [--events 300] [--rounds 2]

Each event goes to 100 endpoints on a local receiver (nginx where installed)
and, in the rows that have one, to an endpoint that never answers (a port that
takes connections and sends nothing) with the platform's 30 s deadline. Rows,
interleaved round by round, best of ``--rounds``; each ratio is against the
first row of the same round:

* 100 healthy endpoints alone (the baseline);
* the same plus the dead endpoint, with the endpoint gate on (the default);
* the same plus the dead endpoint, with the gate off (``gate=None``).

The machine is shared and noisy, so each round's ratios are taken against
that round's baseline, and the table shows the median over the rounds.

Deliveries/s counts the healthy deliveries from the first publish until the
last healthy one is delivered (the asyncio driver, in-memory store, the lean
HTTP/1.1 transport, 64 in flight, one attempt each). The target: the dead endpoint
slows the healthy ones by no more than 10 % (ratio at least 0.90).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import anyio

from benchmarks.receiver import Blackhole, Receiver, mark_active
from transports.aio.service import WebhookService
from transports.driving import operations
from transports.stores.interface import DeliveryFilter
from transports.stores.memory import MemoryStore
from transports.testing import LOOPBACK_NETWORKS
from webhook_core import DeliveryState, GatePolicy, RetryPolicy

HEALTHY = 100
DATA = {"message_id": "msg_1", "channel": "sms", "to": "+919876543210", "status": "sent"}


class _Done(Exception):
    """Ends a run without waiting 30 s for the dead endpoint's attempts."""


async def run(
    base_url: str, dead_url: str | None, events: int, gate: GatePolicy | None, out: list[float]
) -> None:
    store = MemoryStore()
    urls = [f"{base_url}hook/{n}" for n in range(HEALTHY)]
    for url in urls + ([dead_url] if dead_url else []):
        endpoint = operations.add_endpoint(store, url, time.time(), allow_http=True)
        mark_active(store, endpoint, time.time())
    healthy = {e.id for e in store.list_endpoints() if e.url != dead_url}
    wanted = events * HEALTHY
    async with WebhookService(
        store,
        http="http1",
        allow_http=True,
        allowed_networks=LOOPBACK_NETWORKS,
        max_in_flight=64,
        policy=RetryPolicy(schedule=(), timeout=30.0),
        gate=gate,
    ) as hooks:
        start = time.perf_counter()
        for _ in range(events):
            await hooks.publish("message.sent", DATA)
        delivered = DeliveryFilter(state=DeliveryState.DELIVERED)
        while store.count_deliveries(delivered) < wanted:
            await anyio.sleep(0.01)
        elapsed = time.perf_counter() - start
        assert all(d.endpoint_id in healthy for d in store.list_deliveries(delivered, wanted))
        out.append(wanted / elapsed)
        raise _Done


def measure(base_url: str, dead_url: str | None, events: int, gate: GatePolicy | None) -> float:
    result: list[float] = []

    async def main() -> None:
        try:
            await run(base_url, dead_url, events, gate, result)
        except* _Done:
            pass

    anyio.run(main)
    return result[0] if result else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    rows = {
        "100 healthy endpoints": (False, GatePolicy()),
        "+ 1 dead endpoint, gate on (default)": (True, GatePolicy()),
        "+ 1 dead endpoint, gate off": (True, None),
    }
    ratios: dict[str, list[float]] = {name: [] for name in rows}
    rates: dict[str, list[float]] = {name: [] for name in rows}
    with Receiver() as receiver, Blackhole() as blackhole:
        print(f"receiver: {receiver.kind}; {args.events} events x {HEALTHY} healthy endpoints")
        for round_number in range(1, args.rounds + 1):
            baseline = 0.0
            for name, (dead, gate) in rows.items():
                dead_url = blackhole.url() if dead else None
                rate = measure(receiver.url("/"), dead_url, args.events, gate)
                baseline = baseline or rate
                rates[name].append(rate)
                ratios[name].append(rate / baseline)
                print(f"  round {round_number}: {name:40} {rate:8,.0f}/s {rate / baseline:5.2f}")
    print("\n| row | healthy deliveries/s (median) | ratio (median of rounds) |\n|---|---:|---:|")
    for name in rows:
        print(
            f"| {name} | {statistics.median(rates[name]):,.0f} | "
            f"{statistics.median(ratios[name]):.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
