"""The SQLite store's CPU per delivery on the default service's path, for callgrind.

Run from the repository root::

    PYTHONPATH=src python -m benchmarks.bench_store_cpu --events 200
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.200 \\
        python -m benchmarks.bench_store_cpu --events 200

On a fresh SQLite file with 10 active endpoints it publishes ``--events``
events (``operations.publish_groups``, ``--group`` callers of one event
each per call, as the async drivers' publisher groups them), claims every
delivery (``--batch`` a claim, as the dispatcher does), turns each claim
into the record of a 200 answer with the core's ``Start`` and ``Finish``
(what ``DriverState.begin`` and ``finish`` apply; the request itself is not
built, its signing is not the store's cost), and writes them back
``--batch`` a call with ``operations.write_results`` under the default
health policy. Instructions per delivery are the difference between two
runs of different sizes divided by the difference in deliveries, which
cancels start-up: ``--compare 200,600`` runs both under callgrind and
prints that figure; ``--until publish`` or ``--until claim`` stops after
that step, so that differences between those figures price each step.

The figure holds the core's share of the path too (building and fanning
out events, ``Start`` and ``Finish``). Ids are made as within one
millisecond (``transports.ids`` is given a clock that stands still): under
valgrind, ids would otherwise cross millisecond boundaries as often as the
run is slow, so the count would follow the machine's load.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from unittest import mock

from benchmarks.callgrind import total, under_callgrind

ENDPOINTS = 10


def run(events: int, group: int, batch: int, until: str = "complete") -> int:
    """The workload on a fresh file, up to ``until``; the number of deliveries written."""
    from benchmarks.receiver import mark_active
    from benchmarks.workload import DATA, EVENT
    from transports import ids
    from transports.driving import operations
    from transports.driving.config import DEFAULT_HEALTH
    from transports.stores.interface import DeliveryFilter
    from transports.stores.sqlite import SQLiteStore
    from webhook_core import (
        AttemptResult,
        DeliveryState,
        Finish,
        RetryPolicy,
        Start,
        delivery_machine,
        platform_catalog,
    )

    now = 1_000_000.0
    policy = RetryPolicy()
    still = types.SimpleNamespace(time_ns=lambda: 1_000_000 * 10**9)
    with tempfile.TemporaryDirectory() as folder, mock.patch.object(ids, "time", still):
        store = SQLiteStore(Path(folder) / "cpu.db")
        for i in range(ENDPOINTS):
            endpoint = operations.add_endpoint(
                store, f"https://receiver{i}.example/hook", now, allow_http=True
            )
            mark_active(store, endpoint, now)
        catalog = platform_catalog()
        for first in range(0, events, group):
            specs = [
                ([(EVENT, DATA, None)], now, "default", None)
                for _ in range(first, min(first + group, events))
            ]
            for outcome in operations.publish_groups(store, catalog, specs):
                assert not isinstance(outcome, Exception), outcome
        written = 0
        while until != "publish" and (claimed := store.claim(now + 1, batch, "worker", now + 61)):
            if until == "claim":
                continue
            finished = []
            for c in claimed:
                started, _ = delivery_machine.apply(c.delivery, Start(now + 1), policy)
                result = AttemptResult(now + 1, now + 1.01, status=200)
                done, _ = delivery_machine.apply(started, Finish(result), policy)
                finished.append(done)
            operations.write_results(store, finished, "worker", DEFAULT_HEALTH)
            written += len(finished)
        if until == "complete":
            delivered = store.count_deliveries(DeliveryFilter(DeliveryState.DELIVERED))
            assert delivered == events * ENDPOINTS == written, (delivered, written)
        store.close()
    return written


def instructions(events: int, group: int, batch: int, until: str) -> int:
    """Instructions callgrind counts for a run of ``events`` events."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        command = [
            sys.executable,
            "-m",
            "benchmarks.bench_store_cpu",
            "--events",
            str(events),
            "--group",
            str(group),
            "--batch",
            str(batch),
            "--until",
            until,
        ]
        subprocess.run(under_callgrind(out, command), check=True, capture_output=True)
        return total(out)


def main() -> None:
    """Run the workload once, or compare two sizes under callgrind (``--compare``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--group", type=int, default=10, help="events a publish_groups call")
    parser.add_argument("--batch", type=int, default=64, help="deliveries a claim and a write")
    parser.add_argument("--until", choices=("publish", "claim", "complete"), default="complete")
    parser.add_argument("--compare", help="two sizes, as 200,600: instructions per delivery")
    args = parser.parse_args()
    if args.compare is None:
        print(run(args.events, args.group, args.batch, args.until), "deliveries written")
        return
    small, large = (int(n) for n in args.compare.split(","))
    counts = [instructions(n, args.group, args.batch, args.until) for n in (small, large)]
    per = (counts[1] - counts[0]) / ((large - small) * ENDPOINTS)
    print(f"{small}: {counts[0]:,}  {large}: {counts[1]:,}  per delivery: {per:,.0f} instructions")


if __name__ == "__main__":
    main()
