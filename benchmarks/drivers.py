"""Our drivers as benchmark rows: each driver on each registered store, lean HTTP/1.1 transport.

Endpoints are created in the store and marked active before the service
starts (no handshakes are sent), the clock starts at the first ``publish``,
and the row ends when ``drain()`` returns, or, in a shape with failing or
dead endpoints, when every healthy delivery is delivered or none has been
for five deadlines (the last deliveries to a failing or dead endpoint wait
minutes on its circuit breaker, which opens after 5 failures in a row).

Events are published the way a web service's request handlers would:
``PUBLISHERS`` concurrent callers (tasks under asyncio and trio, threads for
the threaded driver), each publishing its share of the events one event per
call; the publish time is from the first publish until the last caller is
done. Figures come from the stored records: each delivered record's last
attempt end, against the first publish (the rate) and against its own
creation (the latency).

Stores are a registry: ``register_store(name, StoreKind(...))`` adds a backend
to every driver's rows (``python -m benchmarks`` adds PostgreSQL when it is
reachable).

The defaults rows (``run_defaults``) show what a user gets without tuning:
each driver made with no store and no transport argument (the SQLite file
``$WEBHOOKS_DB``, here in the row's directory, and the lean HTTP/1.1
transport), its default ``max_in_flight``, fed by ``DEFAULT_PUBLISHERS``
concurrent callers each publishing one event per call.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.receiver import mark_active
from benchmarks.workload import DATA, EVENT, SECRET, Shape, summary
from transports.driving import operations
from transports.stores.interface import DeliveryFilter, Store
from transports.stores.memory import MemoryStore
from transports.stores.sqlite import SQLiteStore
from transports.testing import LOOPBACK_NETWORKS
from webhook_core import DeliveryState, RetryPolicy

PUBLISHERS = 16
DEFAULT_PUBLISHERS = 64
_SETTLE_POLL = 0.05  # seconds between checks for the last healthy delivery
_STALL = 5  # deadlines without a new delivery after which a row with bad endpoints is over
ASYNC_IN_FLIGHT = 64
THREADED_IN_FLIGHT = 32
DRIVERS = ("asyncio", "trio", "threads")
TRANSPORTS = ("http1", "httpx", "null")


@dataclass(frozen=True)
class StoreKind:
    """How to open a store in a fresh directory.

    ``open_for_setup``, if given, opens the same data faster for the untimed
    set-up (thousands of endpoints); the timed run then uses ``open``.
    ``cleanup``, if given, removes what the row left outside its directory.
    """

    label: str
    open: Callable[[Path], Store]
    open_for_setup: Callable[[Path], Store] | None = None
    cleanup: Callable[[Path], None] | None = None


def _sqlite(synchronous: str) -> Callable[[Path], Store]:
    return lambda directory: SQLiteStore(directory / "webhooks.db", synchronous=synchronous)


STORES: dict[str, StoreKind] = {
    "memory": StoreKind("memory", lambda _: MemoryStore()),
    "sqlite": StoreKind("SQLite", _sqlite("FULL"), _sqlite("NORMAL")),
    "sqlite-normal": StoreKind("SQLite synchronous=NORMAL", _sqlite("NORMAL")),
}


def register_store(name: str, kind: StoreKind) -> None:
    """Add a storage backend to the benchmark's rows."""
    STORES[name] = kind


def prepared_store(kind: StoreKind, directory: Path, urls: list[str], now: float) -> Store:
    """A store of ``kind`` holding one active endpoint per URL."""
    store = (kind.open_for_setup or kind.open)(directory)
    for url in urls:
        # Distinct URLs: allow_duplicate skips a lookup that would make setup quadratic.
        endpoint = operations.add_endpoint(
            store, url, now, secret=SECRET, allow_http=True, allow_duplicate=True
        )
        mark_active(store, endpoint, now)
    if kind.open_for_setup is None:
        return store
    store.close()
    return kind.open(directory)


def shares(events: int, publishers: int = PUBLISHERS) -> list[int]:
    """How many of ``events`` each of the (at most ``publishers``) publishers publishes."""
    callers = min(publishers, events)
    return [events // callers + (n < events % callers) for n in range(callers)]


class Timing:
    """The timed part of one of our rows: from the first publish until ``drain`` returns."""

    def __init__(self, store: Store, shape: Shape, now: float) -> None:
        self.store = store
        self.shape = shape
        self.first_publish = now
        self.publish_seconds = 0.0
        self._began = time.perf_counter()
        self._cpu = time.process_time()

    def published(self) -> None:
        """Every publisher is done: the publish time ends here."""
        self.publish_seconds = time.perf_counter() - self._began

    def stop(self) -> None:
        self._cpu = time.process_time() - self._cpu

    def results(self) -> dict[str, Any]:
        """The row's figures from the delivered records."""
        delivered = self.store.list_deliveries(
            DeliveryFilter(state=DeliveryState.DELIVERED), limit=self.shape.deliveries
        )
        ok_times = [d.attempts[-1].ended_at - self.first_publish for d in delivered]
        latencies = [d.attempts[-1].ended_at - d.created_at for d in delivered]
        return summary(
            ok_times,
            latencies,
            self.shape.deliveries,
            self._cpu,
            publish_seconds=self.publish_seconds,
        )


class Settling:
    """Whether a row with failing or dead endpoints is over: every healthy delivery is
    delivered, or none has been for ``_STALL`` deadlines (some ran out of time)."""

    def __init__(self, store: Store, shape: Shape) -> None:
        self.store = store
        self.shape = shape
        self._count = -1
        self._since = time.monotonic()

    def done(self) -> bool:
        count = self.store.count_deliveries(DeliveryFilter(state=DeliveryState.DELIVERED))
        if count >= self.shape.expected_ok:
            return True
        if count != self._count:
            self._count, self._since = count, time.monotonic()
        return time.monotonic() - self._since > _STALL * self.shape.timeout


def _options(shape: Shape, in_flight: int | None, observed: bool = False) -> dict[str, Any]:
    """Loopback allowed, one attempt per delivery; ``in_flight`` None: the driver's default;
    ``observed``: metrics and logging on."""
    options: dict[str, Any] = {
        "allow_http": True,
        "allowed_networks": LOOPBACK_NETWORKS,
        "policy": RetryPolicy(schedule=(), timeout=shape.timeout),
    }
    if in_flight is not None:
        options["max_in_flight"] = in_flight
    if observed:
        options["metrics"] = observe()
    return options


def observe() -> Any:
    """Metrics on a registry of their own, and the library's records at INFO as JSON lines
    into /dev/null (as ``webhooks serve --log-format json -v`` writes them to stderr)."""
    import logging
    import os

    from prometheus_client import CollectorRegistry

    from transports.cli.logs import JsonFormatter
    from transports.driving.metrics import WebhookMetrics

    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - the child's life
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("transports")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return WebhookMetrics(CollectorRegistry(), refresh_interval=1.0)


def _service_args(
    store: Store | None,
    transport: str | None,
    shape: Shape,
    in_flight: int | None,
    observed: bool = False,
) -> dict[str, Any]:
    """The driver's arguments; None leaves the store or transport to the driver's default.

    "http1" and "httpx" are made by the service, with its outbound policy.
    """
    args = _options(shape, in_flight, observed)
    if store is not None:
        args["store"] = store
    if transport == "null":
        from benchmarks.diagnostics import NullTransport

        args["http"] = NullTransport()
    elif transport is not None:
        args["http"] = transport
    return args


async def run_async(
    store: Store | None,
    shape: Shape,
    transport: str | None,
    publishers: int = PUBLISHERS,
    in_flight: int | None = ASYNC_IN_FLIGHT,
    observed: bool = False,
) -> dict[str, Any]:
    """``WebhookService`` (trio or asyncio, whichever runs this) publishing ``shape``."""
    import anyio

    from transports.aio.service import WebhookService

    async with WebhookService(
        **_service_args(store, transport, shape, in_flight, observed)
    ) as hooks:

        async def publisher(count: int) -> None:
            for _ in range(count):
                await hooks.publish(EVENT, DATA)

        timing = Timing(hooks.store, shape, hooks.clock.now())
        async with anyio.create_task_group() as tg:
            for count in shares(shape.events, publishers):
                tg.start_soon(publisher, count)
        timing.published()
        if shape.failing or shape.dead:
            settling = Settling(hooks.store, shape)
            while not settling.done():
                await anyio.sleep(_SETTLE_POLL)
        else:
            await hooks.drain()
        timing.stop()
        return timing.results()


def run_threads(
    store: Store | None,
    shape: Shape,
    transport: str | None,
    publishers: int = PUBLISHERS,
    in_flight: int | None = THREADED_IN_FLIGHT,
    observed: bool = False,
) -> dict[str, Any]:
    """``ThreadedWebhookService`` publishing ``shape``."""
    from transports.sync.service import ThreadedWebhookService

    with ThreadedWebhookService(
        **_service_args(store, transport, shape, in_flight, observed)
    ) as hooks:

        def publisher(count: int) -> None:
            for _ in range(count):
                hooks.publish(EVENT, DATA)

        timing = Timing(hooks.store, shape, hooks.clock.now())
        threads = [
            threading.Thread(target=publisher, args=(n,)) for n in shares(shape.events, publishers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        timing.published()
        if shape.failing or shape.dead:
            settling = Settling(hooks.store, shape)
            while not settling.done():
                time.sleep(_SETTLE_POLL)
        else:
            hooks.drain()
        timing.stop()
        return timing.results()


def run_ours(
    driver: str,
    store_name: str,
    transport: str,
    urls: list[str],
    shape: Shape,
    directory: Path,
    *,
    observed: bool = False,
) -> dict[str, Any]:
    """One row of ours: set up the store, run the driver (with metrics and logging on if
    ``observed``), report."""
    kind = STORES[store_name]
    try:
        store = prepared_store(kind, directory, urls, time.time())
        try:
            if driver == "threads":
                return run_threads(store, shape, transport, observed=observed)
            import anyio

            return anyio.run(
                functools.partial(run_async, observed=observed),
                store,
                shape,
                transport,
                backend=driver,
            )
        finally:
            store.close()
    finally:
        if kind.cleanup is not None:
            kind.cleanup(directory)


def run_defaults(driver: str, urls: list[str], shape: Shape, directory: Path) -> dict[str, Any]:
    """One defaults row: the driver with no store or transport argument (see the module)."""
    path = directory / "webhooks.db"
    os.environ["WEBHOOKS_DB"] = str(path)  # this row's own process (see benchmarks.__main__)
    prepared_store(STORES["sqlite"], directory, urls, time.time()).close()
    if driver == "threads":
        return run_threads(None, shape, None, DEFAULT_PUBLISHERS, None)
    import anyio

    return anyio.run(run_async, None, shape, None, DEFAULT_PUBLISHERS, None, backend=driver)
