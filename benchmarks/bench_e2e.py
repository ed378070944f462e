"""End-to-end fan-out to a local receiver: our drivers next to naive clients.

Run from the repository root::

    PYTHONPATH=src python -m benchmarks.bench_e2e [--deliveries 2000] [--endpoints 10]
        [--repeat 3] [--receiver nginx|python] [--only ROW,ROW] [--profile asyncio|trio]

Shape: ``deliveries / endpoints`` events, each fanned out to every one of
``endpoints`` endpoints, all pointing at different paths of one local receiver
(nginx answering ``200 OK``; see ``benchmarks.receiver``). Every request is a
POST of the same ~180-byte canonical JSON body with Standard Webhooks headers.

Rows:

* naive baselines a user might write, with no storage and no retries, each
  signing every request with ``hmac`` (Standard Webhooks headers):
  ``httpx.AsyncClient`` + ``asyncio.gather`` under a semaphore of 64;
  ``httpx.AsyncClient`` with 8 connections (DESIGN section 4: httpx's best);
  ``aiohttp.ClientSession`` + ``gather`` (64 connections);
  ``httpx.Client`` shared by 32 threads;
* ours, with the in-memory store: ``WebhookService`` on asyncio and on trio
  (``max_in_flight=64``), and ``ThreadedWebhookService`` (if importable);
* a diagnostic row: ``WebhookService`` on asyncio sending through
  ``AiohttpTransport``, a small adapter defined here (not part of the library)
  that implements the ``AsyncHttpTransport`` protocol on aiohttp. Set beside
  the default row it separates the service's own cost from httpx's;
* diagnostic rows with ``NullTransport`` (answers 200 at once, no socket):
  the ceiling the service's own machinery allows (publish, claim, task per
  attempt, core lifecycle, writer), with no HTTP client cost at all.

Deliveries/s is counted from the first ``publish`` until ``drain()`` returns
(ours: this includes building, validating and storing the events) and from the
first request until the last response (baselines). Endpoints are registered
and marked active (``receiver.mark_active``) before the clock starts, and the
handshake POSTs are drained first. Every row runs in its own subprocess with a
hard timeout; the rows are interleaved across ``--repeat`` rounds and the best
round of each is reported. The receiver is always stopped on exit.

``--profile asyncio`` (or ``trio``) instead runs our service once under
cProfile (and pyinstrument, if installed) and prints where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import hmac
import inspect
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import threading
import time
from typing import Any

from benchmarks.receiver import Receiver, mark_active

EVENT = "message.sent"
DATA = {"message_id": "msg_42", "channel": "sms", "to": "+919876543210", "status": "sent"}
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ROW_TIMEOUT = 45.0  # seconds for one row's timed part; the subprocess gets a bit more
LOOPBACK = ("127.0.0.0/8", "::1/128")  # let the outbound guard reach the local receiver

# (name, label, kind)
ROWS: list[tuple[str, str, str]] = [
    ("httpx-async-64", "naive httpx.AsyncClient + gather, semaphore 64", "baseline"),
    ("httpx-async-8", "naive httpx.AsyncClient + gather, 8 connections", "baseline"),
    ("aiohttp", "naive aiohttp.ClientSession + gather, 64 connections", "baseline"),
    ("httpx-threads", "naive httpx.Client, 32 threads", "baseline"),
    ("ours-asyncio", "WebhookService on asyncio (memory store, 64 in flight)", "ours"),
    ("ours-trio", "WebhookService on trio (memory store, 64 in flight)", "ours"),
    ("ours-threaded", "ThreadedWebhookService (memory store, 64 in flight)", "ours"),
    (
        "ours-asyncio-aiohttp",
        "WebhookService on asyncio, aiohttp transport (bench adapter)",
        "ours",
    ),
    ("ours-asyncio-null", "WebhookService on asyncio, null transport (no network)", "ours"),
    ("ours-trio-null", "WebhookService on trio, null transport (no network)", "ours"),
]
ROW_NAMES = [r[0] for r in ROWS]


# -- the body and naive signing ------------------------------------------------


def make_body() -> bytes:
    """The body every baseline sends: what the service sends for one event."""
    from webhook_core import build_event, platform_catalog

    event = build_event(
        platform_catalog(),
        EVENT,
        DATA,
        event_id="evt_01J9Z6Y8K3QF7W2R5T8X4N6B0C",
        now=time.time(),
    )
    return event.body


_KEY = base64.b64decode(SECRET[len("whsec_") :] + "=" * (-len(SECRET[6:]) % 4))


def naive_headers(msg_id: str, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers, the way a user would compute them by hand."""
    ts = str(int(time.time()))
    mac = hmac.digest(_KEY, f"{msg_id}.{ts}.".encode() + body, "sha256")
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def jobs(urls: list[str], events: int) -> list[tuple[str, str]]:
    return [(url, f"evt_{i:08d}") for i in range(events) for url in urls]


# -- baselines -------------------------------------------------------------------


async def _httpx_async(urls: list[str], events: int, body: bytes, conns: int) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    sem = asyncio.Semaphore(64)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:

        async def one(url: str, msg_id: str) -> int:
            async with sem:
                response = await client.post(url, content=body, headers=naive_headers(msg_id, body))
                return response.status_code

        start = time.perf_counter()
        statuses = await asyncio.wait_for(
            asyncio.gather(*(one(u, m) for u, m in jobs(urls, events))), ROW_TIMEOUT
        )
        elapsed = time.perf_counter() - start
    return {"elapsed": elapsed, "ok": sum(s == 200 for s in statuses), "total": len(statuses)}


async def _aiohttp(urls: list[str], events: int, body: bytes) -> dict[str, Any]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:

        async def one(url: str, msg_id: str) -> int:
            async with session.post(url, data=body, headers=naive_headers(msg_id, body)) as r:
                await r.read()
                return r.status

        start = time.perf_counter()
        statuses = await asyncio.wait_for(
            asyncio.gather(*(one(u, m) for u, m in jobs(urls, events))), ROW_TIMEOUT
        )
        elapsed = time.perf_counter() - start
    return {"elapsed": elapsed, "ok": sum(s == 200 for s in statuses), "total": len(statuses)}


def _httpx_threads(urls: list[str], events: int, body: bytes) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    with httpx.Client(limits=limits, timeout=30.0) as client:

        def one(job: tuple[str, str]) -> int:
            url, msg_id = job
            return client.post(url, content=body, headers=naive_headers(msg_id, body)).status_code

        todo = jobs(urls, events)
        with ThreadPoolExecutor(max_workers=32) as pool:
            start = time.perf_counter()
            statuses = list(pool.map(one, todo, timeout=ROW_TIMEOUT))
            elapsed = time.perf_counter() - start
    return {"elapsed": elapsed, "ok": sum(s == 200 for s in statuses), "total": len(statuses)}


# -- ours ------------------------------------------------------------------------


def _delivered_counts(store: Any) -> tuple[int, int]:
    from transports.store import DeliveryFilter
    from webhook_core import DeliveryState

    ok = store.count_deliveries(DeliveryFilter(state=DeliveryState.DELIVERED))
    total = store.count_deliveries(DeliveryFilter())
    return ok, total


class AiohttpTransport:
    """``AsyncHttpTransport`` on aiohttp (asyncio only): a benchmark diagnostic, not the library."""

    def __init__(self, limit: int = 64, body_limit: int = 64 * 1024) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self.body_limit = body_limit
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit), auto_decompress=False
        )

    async def send(self, request: Any) -> Any:
        from transports.http import HttpResponse, TransportError
        from webhook_core import Outcome

        try:
            async with self._session.post(
                request.url,
                data=request.body,
                headers=list(request.headers),
                allow_redirects=False,
                timeout=self._aiohttp.ClientTimeout(total=request.timeout),
            ) as response:
                body = await response.content.read(self.body_limit)
                return HttpResponse(response.status, tuple(response.headers.items()), body)
        except self._aiohttp.ClientConnectionError as exc:
            raise TransportError(Outcome.NETWORK_ERROR, repr(exc)) from exc
        except self._aiohttp.ClientError as exc:
            raise TransportError(Outcome.PROTOCOL_ERROR, repr(exc)) from exc

    async def aclose(self) -> None:
        await self._session.close()


class NullTransport:
    """``AsyncHttpTransport`` that answers 200 at once (one checkpoint, no socket)."""

    async def send(self, request: Any) -> Any:
        import anyio

        from transports.http import HttpResponse

        await anyio.lowlevel.checkpoint()
        return HttpResponse(200, (("content-length", "2"),), b"OK")

    async def aclose(self) -> None:
        pass


async def _ours_async(urls: list[str], events: int, http_name: str = "httpx") -> dict[str, Any]:
    http: Any = None
    if http_name == "aiohttp":
        http = AiohttpTransport()
    elif http_name == "null":
        http = NullTransport()
    try:
        return await _ours_async_with(urls, events, http)
    finally:
        if http is not None:
            await http.aclose()


async def _ours_async_with(urls: list[str], events: int, http: Any) -> dict[str, Any]:
    import anyio

    from transports.memory import MemoryStore
    from transports.service import WebhookService

    with anyio.fail_after(ROW_TIMEOUT + 10):
        async with WebhookService(
            MemoryStore(), allow_http=True, allowed_networks=LOOPBACK, max_in_flight=64, http=http
        ) as hooks:
            endpoints = [await hooks.add_endpoint(u, secret=SECRET) for u in urls]
            now = hooks.clock.now()
            for ep in endpoints:
                mark_active(hooks.store, ep, now)
            await hooks.drain()  # let the (ignored) handshake POSTs finish, untimed
            with anyio.fail_after(ROW_TIMEOUT):
                start = time.perf_counter()
                for _ in range(events):
                    await hooks.publish(EVENT, DATA)
                await hooks.drain()
                elapsed = time.perf_counter() - start
            ok, total = _delivered_counts(hooks.store)
    return {"elapsed": elapsed, "ok": ok, "total": total}


def _threaded_class() -> Any:
    from transports.threaded import ThreadedWebhookService

    return ThreadedWebhookService


def _ours_threaded(urls: list[str], events: int) -> dict[str, Any]:
    cls = _threaded_class()
    wanted = {"allow_http": True, "allowed_networks": LOOPBACK, "max_in_flight": 64}
    params = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in wanted.items() if k in params}
    from transports.memory import MemoryStore

    with cls(MemoryStore(), **kwargs) as hooks:
        endpoints = [hooks.add_endpoint(u, secret=SECRET) for u in urls]
        clock = getattr(hooks, "clock", None)
        now = clock.now() if clock is not None else time.time()
        for ep in endpoints:
            mark_active(hooks.store, ep, now)
        hooks.drain(timeout=ROW_TIMEOUT)
        start = time.perf_counter()
        for _ in range(events):
            hooks.publish(EVENT, DATA)
        hooks.drain(timeout=ROW_TIMEOUT)
        elapsed = time.perf_counter() - start
        ok, total = _delivered_counts(hooks.store)
    return {"elapsed": elapsed, "ok": ok, "total": total}


def run_row(name: str, base_url: str, deliveries: int, endpoints: int) -> dict[str, Any]:
    """Run one row in this process; return elapsed seconds and counts."""
    urls = [f"{base_url}/hooks/{j}" for j in range(endpoints)]
    events = max(1, deliveries // endpoints)
    body = make_body()
    if name == "httpx-async-64":
        return asyncio.run(_httpx_async(urls, events, body, 64))
    if name == "httpx-async-8":
        return asyncio.run(_httpx_async(urls, events, body, 8))
    if name == "aiohttp":
        return asyncio.run(_aiohttp(urls, events, body))
    if name == "httpx-threads":
        return _httpx_threads(urls, events, body)
    if name in ("ours-asyncio", "ours-trio"):
        import anyio

        backend = name.split("-")[1]
        return anyio.run(_ours_async, urls, events, backend=backend)
    if name == "ours-threaded":
        return _ours_threaded(urls, events)
    if name.startswith("ours-") and name.count("-") == 2:
        import anyio

        _, backend, http_name = name.split("-")
        return anyio.run(_ours_async, urls, events, http_name, backend=backend)
    raise ValueError(f"unknown row {name!r}")


# -- the parent: receiver, subprocesses, table -------------------------------------


def _child(args: argparse.Namespace) -> int:
    if args.row == "ours-threaded":
        try:
            _threaded_class()
        except Exception as exc:
            print(json.dumps({"unavailable": f"{type(exc).__name__}: {exc}"}))
            return 0
    result = run_row(args.row, args.url, args.deliveries, args.endpoints)
    print(json.dumps(result))
    return 0


def _spawn_row(name: str, base_url: str, deliveries: int, endpoints: int) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "benchmarks.bench_e2e",
        "--row",
        name,
        "--url",
        base_url,
        "--deliveries",
        str(deliveries),
        "--endpoints",
        str(endpoints),
    ]
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=ROW_TIMEOUT + 30,
            env=os.environ.copy(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {ROW_TIMEOUT + 30:g} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    parsed: dict[str, Any] = json.loads(lines[-1])
    return parsed


def _fmt_rate(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:,.0f}"


def _fmt_ratio(rate: float | None, ref: float | None) -> str:
    if rate is None or not ref:
        return "n/a"
    return f"{rate / ref:.2f}x"


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _nproc() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="end-to-end fan-out benchmark")
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds; the best of each row is kept"
    )
    parser.add_argument("--receiver", choices=("nginx", "python"), default="nginx")
    parser.add_argument("--receiver-workers", type=int, default=None)
    parser.add_argument("--only", default="", help="comma-separated rows: " + ",".join(ROW_NAMES))
    parser.add_argument(
        "--profile",
        choices=("asyncio", "trio", "asyncio-aiohttp", "asyncio-null", "trio-null"),
        default=None,
    )
    parser.add_argument("--row", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.deliveries < 1 or args.endpoints < 1 or not 1 <= args.repeat <= 10:
        parser.error("--deliveries and --endpoints must be positive, --repeat 1-10")
    if args.row:
        return _child(args)

    selected = [r for r in ROWS if not args.only or r[0] in args.only.split(",")]
    watchdog = _Watchdog(110 * args.repeat + 60)
    with Receiver(prefer=args.receiver, workers=args.receiver_workers) as rx:
        watchdog.receiver = rx
        if args.profile:
            return profile_service(args.profile, rx.base_url, args.deliveries, args.endpoints)
        events = max(1, args.deliveries // args.endpoints)
        deliveries = events * args.endpoints
        print(
            f"machine: {platform.machine()}, {_nproc()} CPU(s), Python {platform.python_version()}"
            f" ({sys.executable}), load average at start {_load()}"
        )
        print(f"receiver: {rx.describe()}")
        print(
            f"shape: {events} events x {args.endpoints} endpoints = {deliveries} deliveries, "
            f"{len(make_body())}-byte body; best of {args.repeat} round(s), rows interleaved"
        )
        best: dict[str, dict[str, Any]] = {}
        for round_no in range(args.repeat):
            for name, _label, _kind in selected:
                result = _spawn_row(name, rx.base_url, deliveries, args.endpoints)
                if "elapsed" in result:
                    result["rate"] = result["ok"] / result["elapsed"]
                    prev = best.get(name)
                    if prev is None or "rate" not in prev or result["rate"] > prev["rate"]:
                        best[name] = result
                elif name not in best:
                    best[name] = result
                print(f"  round {round_no + 1}: {name:<21} {_summary(result)}", flush=True)
        print(f"load average at end {_load()}")
        print()
        ref_aio = best.get("aiohttp", {}).get("rate")
        ref_thr = best.get("httpx-threads", {}).get("rate")
        width = max(len(label) for _, label, _ in selected)
        print(
            f"| {'client':<{width}} | {'deliveries/s':>12} | {'vs aiohttp':>10} | "
            f"{'vs httpx threads':>16} | {'ok / total':>11} |"
        )
        print(f"| {'-' * width} | {'-' * 11}:| {'-' * 9}:| {'-' * 15}:| {'-' * 10}:|")
        for name, label, _kind in selected:
            result = best[name]
            rate = result.get("rate")
            if "unavailable" in result:
                cells = ("n/a (not available)", "", "", "")
            elif "error" in result:
                cells = ("error", "", "", "")
            else:
                cells = (
                    _fmt_rate(rate),
                    _fmt_ratio(rate, ref_aio),
                    _fmt_ratio(rate, ref_thr),
                    f"{result['ok']}/{result['total']}",
                )
            print(
                f"| {label:<{width}} | {cells[0]:>12} | {cells[1]:>10} | {cells[2]:>16} "
                f"| {cells[3]:>11} |"
            )
        notes = [
            f"{name}: {best[name].get('unavailable') or best[name].get('error')}"
            for name, _, _ in selected
            if "unavailable" in best[name] or "error" in best[name]
        ]
        for note in notes:
            print(f"note: {note}")
    watchdog.cancel()
    return 0


def _summary(result: dict[str, Any]) -> str:
    if "unavailable" in result:
        return f"n/a (not available: {result['unavailable']})"
    if "error" in result:
        return f"ERROR {result['error']}"
    return (
        f"{result['rate']:>9,.0f}/s  {result['elapsed']:.2f} s  ok {result['ok']}/{result['total']}"
    )


class _Watchdog:
    """Kill the receiver and exit if the whole run overstays (every loop is bounded)."""

    def __init__(self, seconds: float) -> None:
        self.receiver: Receiver | None = None
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        print("watchdog: benchmark overran its time budget; stopping", file=sys.stderr, flush=True)
        if self.receiver is not None:
            self.receiver.stop()
        os._exit(3)

    def cancel(self) -> None:
        self._timer.cancel()


# -- profiling our service -------------------------------------------------------------


def profile_service(backend: str, base_url: str, deliveries: int, endpoints: int) -> int:
    """Run ``WebhookService`` once under cProfile (and pyinstrument) and print the hot spots."""
    import anyio

    backend, _, http_name = backend.partition("-")
    http_name = http_name or "httpx"
    urls = [f"{base_url}/hooks/{j}" for j in range(endpoints)]
    events = max(1, deliveries // endpoints)
    # warm-up (imports, first connections) outside the profile
    anyio.run(_ours_async, urls, max(1, events // 10), http_name, backend=backend)

    prof = cProfile.Profile()
    prof.enable()
    result = anyio.run(_ours_async, urls, events, http_name, backend=backend)
    prof.disable()
    rate = result["ok"] / result["elapsed"]
    print(
        f"WebhookService on {backend} ({http_name} transport) under cProfile: "
        f"{_fmt_rate(rate)} deliveries/s (slowed by the profiler)"
    )
    for key, title in (("tottime", "own time"), ("cumulative", "cumulative time")):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats(key).print_stats(30)
        text = out.getvalue()
        start = text.find("   ncalls")
        print(f"\n-- cProfile, top 30 by {title} --")
        print(text[start:].rstrip() if start >= 0 else text.rstrip())
    _summarise_by_package(prof)

    try:
        from pyinstrument import Profiler
    except ImportError:
        print("\n(pyinstrument not installed; skipped)")
        return 0
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    result = anyio.run(_ours_async, urls, events, http_name, backend=backend)
    profiler.stop()
    print(f"\n-- pyinstrument ({_fmt_rate(result['ok'] / result['elapsed'])} deliveries/s) --")
    print(profiler.output_text(unicode=False, color=False, show_all=False, timeline=False))
    return 0


def _summarise_by_package(prof: cProfile.Profile) -> None:
    """Own time grouped by package (webhook_core, transports, httpx, httpcore, anyio, ...)."""
    stats = pstats.Stats(prof)
    groups: dict[str, float] = {}
    total = 0.0
    for (filename, _line, _func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        total += tt
        groups[_package_of(filename)] = groups.get(_package_of(filename), 0.0) + tt
    print("\n-- own time by package --")
    for name, tt in sorted(groups.items(), key=lambda kv: -kv[1])[:14]:
        print(f"  {name:<28} {tt:7.3f} s  {100 * tt / total:5.1f}%")


def _package_of(filename: str) -> str:
    norm = filename.replace("\\", "/")
    for marker in ("/site-packages/", "/src/"):
        if marker in norm:
            rest = norm.split(marker, 1)[1]
            return rest.split("/", 1)[0].removesuffix(".py")
    if norm.startswith("<") or norm == "~":
        return "builtins/C"
    if "/lib/python3" in norm:
        parts = norm.split("/lib/python3", 1)[1].split("/", 2)
        return "stdlib:" + (parts[1].removesuffix(".py") if len(parts) > 1 else "?")
    return os.path.basename(norm)


if __name__ == "__main__":
    sys.exit(main())
