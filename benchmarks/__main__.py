"""End-to-end throughput: our drivers on each store next to naive clients, in one run.

Run from the repository root::

    PYTHONPATH=src python -m benchmarks [--quick] [--scale 0.1] [--rounds 1]
        [--shapes fanout,events,failing,dead] [--rows aiohttp,asyncio+memory,...]
        [--receiver nginx|python] [--diagnostics] [--observed] [--markdown FILE]
    PYTHONPATH=src python -m benchmarks --profile asyncio+memory [--shape events]

A local receiver that is not the bottleneck is started (nginx where it is
installed, else a multi-process Python receiver; see ``benchmarks.receiver``)
with a blackhole port beside it for endpoints that time out. Then every row
runs every shape (``benchmarks.workload``), each in its own forked process
(so its peak RSS is its own), rows interleaved, best of ``--rounds``:

* baselines (``benchmarks.baselines``): naive ``httpx.AsyncClient`` and
  ``aiohttp`` with ``asyncio.gather``, naive ``httpx.Client`` on threads;
* ours (``benchmarks.drivers``): the asyncio, trio and threaded drivers on
  every registered store (memory, SQLite, and PostgreSQL when it is
  reachable; ``--no-postgres`` leaves it out), sending through the lean HTTP/1.1 transport; with
  ``--diagnostics`` also asyncio on memory through httpx and through a null
  transport (no network: the driver's own ceiling);
* the defaults rows (``asyncio+defaults``, ``trio+defaults``,
  ``threads+defaults``): each driver with no store or transport argument (a
  SQLite file, the lean transport), its default ``max_in_flight``, fed by 64
  concurrent publishers of one event per call: what a user gets untuned;
* with ``--observed``, each driver row again as ``ROW+observed``, with
  Prometheus metrics (its own registry, store gauges refreshed every second)
  and logging at INFO to JSON lines (into /dev/null); the overhead is the
  median of the rounds' paired ratios (rate, and CPU a delivery).

The table gives successful deliveries per second, p50/p99 latency from
publish to the receiver's 2xx, the time ``publish`` took (the fan-out), peak RSS, and each rate as a
ratio to the baselines measured in the same run; then every target of the
throughput issue, met or missed. ``--quick`` (scale 0.001, fan-out to 500
endpoints, one round) is a smoke run of a minute or two.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks.baselines import BASELINES
from benchmarks.drivers import (
    DRIVERS,
    STORES,
    StoreKind,
    register_store,
    run_defaults,
    run_ours,
)
from benchmarks.postgres import PG_URL, drop_postgres, open_postgres, postgres_reachable
from benchmarks.receiver import Blackhole, Receiver
from benchmarks.workload import SHAPE_NAMES, SHAPES, Shape, scaled

CHILD_TIMEOUT = 900.0


@dataclass(frozen=True)
class Row:
    """One client configuration: a baseline, or a driver on a store through a transport."""

    name: str
    label: str
    driver: str | None = None
    store: str = "memory"
    transport: str = "http1"
    defaults: bool = False
    observed: bool = False


DEFAULTS_LABEL = "ours: {}, defaults, 64 publishers"


def all_rows(diagnostics: bool, observed: bool = False) -> list[Row]:
    """Baselines, every driver on every store, the diagnostic rows if asked for, and the
    driver rows with metrics and logging on if ``observed``."""
    rows = [Row(name, label) for name, (label, _) in BASELINES.items()]
    for driver in DRIVERS:
        for store, kind in STORES.items():
            rows.append(Row(f"{driver}+{store}", f"ours: {driver}, {kind.label}", driver, store))
            if observed:
                rows.append(
                    Row(
                        f"{driver}+{store}+observed",
                        f"ours: {driver}, {kind.label}, metrics+logging",
                        driver,
                        store,
                        observed=True,
                    )
                )
    for driver in DRIVERS:
        label = DEFAULTS_LABEL.format(driver)
        rows.append(Row(f"{driver}+defaults", label, driver, "sqlite", defaults=True))
    if diagnostics:
        rows.append(
            Row(
                "asyncio+memory+httpx",
                "ours: asyncio, memory, httpx transport",
                "asyncio",
                transport="httpx",
            )
        )
        rows.append(
            Row(
                "asyncio+memory+null",
                "ours: asyncio, memory, null transport (no I/O)",
                "asyncio",
                transport="null",
            )
        )
    return rows


# -- one row in a child process ------------------------------------------------------


def run_row(
    row: Row, shape: Shape, base_url: str, dead_url: str, directory: Path
) -> dict[str, Any]:
    """Run ``row`` on ``shape`` in this process."""
    urls = shape.urls(base_url, dead_url)
    if row.driver is None:
        return BASELINES[row.name][1](urls, shape)
    if row.defaults:
        return run_defaults(row.driver, urls, shape, directory)
    return run_ours(
        row.driver, row.store, row.transport, urls, shape, directory, observed=row.observed
    )


def _child(row: Row, shape: Shape, base_url: str, dead_url: str, results: Connection) -> None:
    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as directory:
            result = run_row(row, shape, base_url, dead_url, Path(directory))
        result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except BaseException as exc:  # reported in the table, not raised in the child
        result = {"error": f"{type(exc).__name__}: {exc}"}
    results.send(result)
    results.close()


def spawn(row: Row, shape: Shape, base_url: str, dead_url: str) -> dict[str, Any]:
    """Run one row on one shape in a forked child process; its figures or an error.

    The parent has imported everything the rows use, so a fork starts at once
    and each run's peak RSS is its own process's.
    """
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(row, shape, base_url, dead_url, send))
    process.start()
    send.close()
    try:
        if not receive.poll(CHILD_TIMEOUT):
            return {"error": f"timed out after {CHILD_TIMEOUT:g} s"}
        result: dict[str, Any] = receive.recv()
        return result
    except EOFError:
        return {"error": f"the child process died (exit {process.exitcode})"}
    finally:
        receive.close()
        if process.is_alive():
            process.kill()
        process.join()


def _import_everything() -> None:
    """Import what the rows use, once, before the children are forked."""
    import aiohttp  # noqa: F401
    import anyio  # noqa: F401
    import httpx  # noqa: F401
    import trio  # noqa: F401

    import benchmarks.diagnostics  # noqa: F401
    import transports.aio.service
    import transports.http.lean
    import transports.http.lean_async
    import transports.sync.service  # noqa: F401


# -- the table ---------------------------------------------------------------------------

HEADINGS = (
    "client",
    "deliveries/s",
    "x aiohttp",
    "x httpx async",
    "x httpx threads",
    "p50 ms",
    "p99 ms",
    "publish s",
    "CPU us/dlv",
    "peak RSS MB",
    "ok / total",
)
BASELINE_COLUMNS = ("aiohttp", "httpx-async", "httpx-threads")


def cells(row: Row, result: dict[str, Any], refs: dict[str, float | None]) -> list[str]:
    """The table cells of one row on one shape."""
    if "error" in result:
        return [row.label, "error", *[""] * (len(HEADINGS) - 2)]
    rate = result.get("rate")

    def ratio(ref: float | None) -> str:
        return f"{rate / ref:.2f}" if rate and ref else "n/a"

    def millis(value: float | None) -> str:
        return "n/a" if value is None else f"{value * 1000:,.0f}"

    publish = result.get("publish")
    return [
        row.label,
        "n/a" if rate is None else f"{rate:,.0f}",
        *(ratio(refs.get(name)) for name in BASELINE_COLUMNS),
        millis(result.get("p50")),
        millis(result.get("p99")),
        "" if publish is None else f"{publish:.3f}",
        "n/a" if result.get("cpu_us") is None else f"{result['cpu_us']:,.0f}",
        f"{result['rss_mb']:,.0f}",
        f"{result['ok']:,} / {result['total']:,}",
    ]


def markdown(table: list[list[str]]) -> str:
    """``table`` (headings first) as a Markdown table."""
    lines = [
        "| " + " | ".join(table[0]) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(HEADINGS) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in table[1:]]
    return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    """A goal of the throughput issue, checked against the run's figures."""

    text: str
    check: Callable[[dict[tuple[str, str], dict[str, Any]]], tuple[str, bool] | None]


def _ratio_target(row: str, baseline: str, least: float) -> Callable[..., tuple[str, bool] | None]:
    def check(best: dict[tuple[str, str], dict[str, Any]]) -> tuple[str, bool] | None:
        ours = best.get((row, "events"), {}).get("rate")
        ref = best.get((baseline, "events"), {}).get("rate")
        if not ours or not ref:
            return None
        return f"{ours / ref:.2f}x", ours / ref >= least

    return check


def _fanout_target(best: dict[tuple[str, str], dict[str, Any]]) -> tuple[str, bool] | None:
    found: list[tuple[str, float]] = []
    for driver in DRIVERS:
        publish = best.get((f"{driver}+sqlite", "fanout"), {}).get("publish")
        if publish is not None:
            found.append((driver, publish))
    if not found:
        return None
    return ", ".join(f"{d} {p:.3f} s" for d, p in found), all(p < 0.5 for _, p in found)


def _best_target(best: dict[tuple[str, str], dict[str, Any]]) -> tuple[str, bool] | None:
    ref = best.get(("aiohttp", "events"), {}).get("rate")
    ours = [
        (rate, row)
        for (row, shape), result in best.items()
        if shape == "events" and "+" in row and (rate := result.get("rate"))
    ]
    if not ref or not ours:
        return None
    rate, row = max(ours)
    return f"{rate / ref:.2f}x ({row})", rate / ref >= 1.5


TARGETS = (
    Target(
        "asyncio + memory >= 1.0x naive aiohttp", _ratio_target("asyncio+memory", "aiohttp", 1.0)
    ),
    Target(
        "asyncio + SQLite >= 0.8x naive aiohttp", _ratio_target("asyncio+sqlite", "aiohttp", 0.8)
    ),
    Target("trio + memory >= 0.6x naive aiohttp", _ratio_target("trio+memory", "aiohttp", 0.6)),
    Target(
        "threads + memory >= 1.5x naive httpx.Client threads",
        _ratio_target("threads+memory", "httpx-threads", 1.5),
    ),
    Target(
        "fan-out shape (10,000 endpoints unless --quick), SQLite: publish < 0.5 s", _fanout_target
    ),
    Target(
        "asyncio, defaults, 64 publishers >= 1.0x naive aiohttp",
        _ratio_target("asyncio+defaults", "aiohttp", 1.0),
    ),
    Target(
        "trio, defaults, 64 publishers >= 0.8x naive aiohttp",
        _ratio_target("trio+defaults", "aiohttp", 0.8),
    ),
    Target(
        "threads, defaults, 64 publishers >= 2.5x naive httpx.Client threads",
        _ratio_target("threads+defaults", "httpx-threads", 2.5),
    ),
    Target("best of our rows (any store, any transport) >= 1.5x naive aiohttp", _best_target),
)


def latencies(best: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """p50/p99 from publish to the receiver's 2xx of each defaults row, in ``events``."""
    lines = []
    for driver in DRIVERS:
        result = best.get((f"{driver}+defaults", "events"), {})
        if result.get("p50") is not None:
            lines.append(
                f"{driver}, defaults: publish to 2xx p50 {result['p50'] * 1000:,.0f} ms, "
                f"p99 {result['p99'] * 1000:,.0f} ms"
            )
    return lines


# -- the run -----------------------------------------------------------------------------


def _machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.machine()}, {cpus} CPU(s), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average {load}"
    )


def add_postgres() -> None:
    """Add PostgreSQL to the stores if the server is reachable; say so if it is not."""
    if postgres_reachable():
        register_store("postgres", StoreKind("PostgreSQL", open_postgres, cleanup=drop_postgres))
    else:
        print(
            f"PostgreSQL is not reachable at {PG_URL}: its rows are left out "
            "(set WEBHOOKS_TEST_POSTGRES to its address)",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="end-to-end throughput benchmark")
    parser.add_argument("--quick", action="store_true", help="smoke run: scale 0.001, 1 round")
    parser.add_argument("--scale", type=float, default=None, help="event counts times this")
    parser.add_argument("--rounds", type=int, default=None, help="best of this many (default 1)")
    parser.add_argument("--shapes", default=",".join(SHAPE_NAMES))
    parser.add_argument("--rows", default="", help="comma-separated row names (default: all)")
    parser.add_argument("--receiver", choices=("nginx", "python"), default="nginx")
    parser.add_argument("--diagnostics", action="store_true")
    parser.add_argument(
        "--observed", action="store_true", help="also each driver row with metrics+logging on"
    )
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables here")
    parser.add_argument("--profile", metavar="ROW", default=None)
    parser.add_argument("--shape", default="events", help="the shape --profile runs")
    parser.add_argument("--no-postgres", action="store_true", help="leave out the PostgreSQL rows")
    args = parser.parse_args(argv)
    if not args.no_postgres:
        add_postgres()

    scale = args.scale if args.scale is not None else (0.001 if args.quick else 1.0)
    rounds = args.rounds or 1
    if scale <= 0 or rounds < 1:
        parser.error("--scale must be positive and --rounds at least 1")
    unknown = set(args.shapes.split(",")) - set(SHAPE_NAMES)
    if unknown:
        parser.error(f"unknown shape(s) {sorted(unknown)}; choose from {SHAPE_NAMES}")
    shapes = [scaled(s, scale, args.quick) for s in SHAPES if s.name in args.shapes.split(",")]
    rows = all_rows(args.diagnostics or bool(args.profile), args.observed)
    if args.rows:
        wanted = args.rows.split(",")
        missing = set(wanted) - {r.name for r in rows}
        if missing:
            parser.error(f"unknown row(s) {sorted(missing)}; choose from {[r.name for r in rows]}")
        rows = [r for r in rows if r.name in wanted]

    with Receiver(prefer=args.receiver) as receiver, Blackhole() as blackhole:
        if args.profile:
            return profile(args.profile, args.shape, rows, scale, args.quick, receiver, blackhole)
        _import_everything()
        best = measure(rows, shapes, rounds, receiver.base_url, blackhole.url(""))
        report(rows, shapes, best, receiver, scale, rounds, args.markdown, argv)
    return 0


def measure(
    rows: list[Row], shapes: list[Shape], rounds: int, base_url: str, dead_url: str
) -> dict[tuple[str, str], dict[str, Any]]:
    """Every row on every shape, rounds interleaved; the best result of each pair, holding
    every round's result under ``"rounds"`` (in round order)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    best: dict[tuple[str, str], dict[str, Any]] = {}
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns) as progress:
        task = progress.add_task("starting", total=rounds * len(shapes) * len(rows))
        for round_no in range(1, rounds + 1):
            for shape in shapes:
                for row in rows:
                    progress.update(
                        task, description=f"round {round_no}/{rounds}: {shape.name} {row.name}"
                    )
                    result = spawn(row, shape, base_url, dead_url)
                    key = (row.name, shape.name)
                    previous = best.get(key)
                    every = [*(previous or {}).get("rounds", []), dict(result)]
                    if previous is None or (result.get("rate") or 0) > (previous.get("rate") or 0):
                        best[key] = result
                    best[key]["rounds"] = every
                    progress.advance(task)
                    rate = result.get("rate")
                    shown = result.get("error") or (f"{rate:,.0f}/s" if rate else "no rate")
                    progress.console.log(f"{shape.name:<8} {row.name:<22} {shown}")
    return best


def report(
    rows: list[Row],
    shapes: list[Shape],
    best: dict[tuple[str, str], dict[str, Any]],
    receiver: Receiver,
    scale: float,
    rounds: int,
    markdown_path: Path | None,
    argv: list[str] | None,
) -> None:
    """Print the tables and the targets (and write them as Markdown if asked)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 180)
    command = "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)
    header = [
        f"command: PYTHONPATH=src {command.strip()}",
        f"machine: {_machine()}",
        f"receiver: {receiver.describe()}",
        f"scale {scale:g}, best of {rounds} round(s); one attempt per delivery, no retries",
    ]
    text = [*header, ""]
    for line in header:
        console.print(line, highlight=False)
    for shape in shapes:
        refs = {name: best.get((name, shape.name), {}).get("rate") for name in BASELINE_COLUMNS}
        table_rows = [list(HEADINGS)]
        table_rows += [cells(r, best[(r.name, shape.name)], refs) for r in rows]
        table = Table(title=f"{shape.label} ({shape.deliveries:,} deliveries)")
        for i, heading in enumerate(HEADINGS):
            table.add_column(heading, justify="left" if i == 0 else "right")
        for cells_ in table_rows[1:]:
            table.add_row(*cells_)
        console.print(table)
        text += [
            f"### {shape.label} ({shape.deliveries:,} deliveries)",
            "",
            markdown(table_rows),
            "",
        ]
    errors = [
        f"{row}/{shape}: {result['error']}"
        for (row, shape), result in best.items()
        if "error" in result
    ]
    verdicts = ["| target | measured | |", "|---|---|---|"]
    for target in TARGETS:
        outcome = target.check(best)
        measured, met = outcome if outcome else ("not measured", False)
        verdict = "met" if outcome and met else ("missed" if outcome else "")
        verdicts.append(f"| {target.text} | {measured} | {verdict} |")
        console.print(f"target: {target.text}: {measured} {verdict}", highlight=False)
    latency = latencies(best)
    for line in latency:
        console.print(f"latency: {line}", highlight=False)
    for error in errors:
        console.print(f"error: {error}", highlight=False)
    text += ["### Targets", "", *verdicts, ""]
    if latency:
        text += ["### Latency under load (events shape)", "", *(f"- {x}" for x in latency), ""]
    text += [f"error: {e}" for e in errors]
    overheads = observed_overheads(rows, shapes, best)
    for line in overheads:
        console.print(line, highlight=False)
    text += ["", *overheads]
    if markdown_path is not None:
        markdown_path.write_text("\n".join(text) + "\n", encoding="utf-8")


def observed_overheads(
    rows: list[Row], shapes: list[Shape], best: dict[tuple[str, str], dict[str, Any]]
) -> list[str]:
    """For each ``+observed`` row: its rate and CPU a delivery against the same row's without
    (target: under 5 % fewer deliveries a second).

    Each round runs the two rows back to back, so the figure is the median of the rounds'
    own ratios: the best-of rates of two rows can come from rounds minutes apart.
    """
    lines = []
    for row in rows:
        if not row.observed:
            continue
        plain = row.name.removesuffix("+observed")
        for shape in shapes:
            on = best.get((row.name, shape.name), {}).get("rounds", [])
            off = best.get((plain, shape.name), {}).get("rounds", [])
            pairs = [
                (a, b) for a, b in zip(on, off, strict=False) if a.get("rate") and b.get("rate")
            ]
            if not pairs:
                continue
            rate = statistics.median(a["rate"] / b["rate"] for a, b in pairs)
            cpu = statistics.median(a["cpu_us"] / b["cpu_us"] for a, b in pairs)
            lines.append(
                f"metrics+logging overhead: {plain} {shape.name}, median of {len(pairs)} "
                f"round(s): rate {rate:.3f}x ({(1 - rate) * 100:+.1f} % fewer a second), "
                f"CPU a delivery {cpu:.3f}x"
            )
    return lines


def profile(
    name: str,
    shape_name: str,
    rows: list[Row],
    scale: float,
    quick: bool,
    receiver: Receiver,
    blackhole: Blackhole,
) -> int:
    """Run one of our rows in this process under the profilers."""
    from benchmarks.diagnostics import profile_row

    row = next((r for r in rows if r.name == name), None)
    shape = next((s for s in SHAPES if s.name == shape_name), None)
    if row is None or row.driver is None or shape is None:
        print(f"--profile takes one of our rows and --shape one of {SHAPE_NAMES}", file=sys.stderr)
        return 2
    shape = scaled(shape, scale, quick)
    print(f"profiling {row.label} on {shape.label} ({shape.deliveries:,} deliveries)")
    profile_row(lambda d: run_row(row, shape, receiver.base_url, blackhole.url(""), d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
