"""Store faults never kill a driver: every driver on every store rides out store errors.

One service run per driver (asyncio and trio through ``WebhookService``,
threads through ``ThreadedWebhookService``) and store (memory, SQLite on a
temporary file, PostgreSQL on a fresh schema). The store is wrapped in a
``FaultyStore`` (``tests.faulty_store``) that makes one method raise the
store's own kind of error (``sqlite3.OperationalError("database is
locked")``, a psycopg ``OperationalError``, a ``RuntimeError`` for memory)
for ``WINDOW`` seconds, then recover. In turn, each call the driver makes on
its own fails once (an *episode*), with events published in between:

==================  ==================================================  ==================
episode             what fails                                          log names
==================  ==================================================  ==================
claim               the dispatcher's ``claim``                          claim
complete            the writer's ``complete`` (results must be kept     writ/result/complet
                    and written later, not dropped)
next_due            the dispatcher's ``next_due``                       due/next/sleep/wait
list_endpoints      the dispatcher's scan for handshakes to (re)start   endpoint/scan/...
handshake read      ``get_endpoint`` after a handshake answer           handshake/verif
handshake write     ``save_endpoint`` after a handshake answer          handshake/verif
drain               ``count_deliveries`` while the host drains          drain/count/open
disable             ``get_endpoint`` of ``disable_if_enabled`` after    disabl
                    an endpoint answered 410 Gone
==================  ==================================================  ==================

The host's own calls (publish, add_endpoint) never hit a fault: faults are
armed around them, and the test reads the real store directly, not through
the wrapper or the service.

Afterwards the service still runs (nothing escaped into the host's ``async
with``; no thread of the threaded driver died), every event published to a
healthy endpoint arrived exactly once and is ``delivered`` after one attempt,
the two handshaked endpoints are ``active`` and the 410 endpoint is
``disabled``. Each episode is logged once: exactly one record at WARNING or
above, on a logger under ``transports``, whose ``store_call`` field (set by
the driver through ``extra``) names the driver's activity (the failing
``Store`` method, or for a handshake's answer and a disable, which call
several, ``record_handshake`` and ``disable_endpoint``) and whose
message names what the driver was doing (the right-hand column, as a
case-insensitive pattern). Retries within the episode may log below WARNING.

The drivers back off after a store error (from about 0.05-0.1 s, doubling,
at most about 2 s), so an episode settles well within a second; the waits
below allow several seconds. Problems found in one episode are collected and
reported together at the end, so one run shows every episode that misbehaves;
a service that died stops the run at once.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.from_thread
import attrs
import pytest

from tests import pg
from tests.faulty_store import Fault, FaultyStore
from transports.aio.service import WebhookService
from transports.driving import operations
from transports.stores.interface import DeliveryFilter, Store
from transports.stores.memory import MemoryStore
from transports.stores.sqlite import SQLiteStore
from transports.sync.service import ThreadedWebhookService
from transports.testing import (
    LOOPBACK_NETWORKS,
    Behaviour,
    Delay,
    Handler,
    LoopbackReceiver,
    ReceivedRequest,
    Respond,
)
from webhook_core import DeliveryState, Endpoint, EndpointState, RetryPolicy

WINDOW = 0.3  # seconds each fault lasts
HANDSHAKE_DELAY = 0.2  # the receiver answers handshakes this late (arming a fault is quicker)
HIT_TIMEOUT = 3.0  # for the driver to make the failing call
SETTLE_TIMEOUT = 4.0  # for the driver to try again after the window, and finish its work
POLL = 0.05  # the services' poll interval
POLICY = RetryPolicy(schedule=(0.2, 0.2, 0.2, 0.2), timeout=2.0)
VERIFICATION = "webhook.verification"

DRIVERS = ("asyncio", "trio", "threads")
STORES = ("memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres))


def message(i: int) -> dict[str, Any]:
    return {"message_id": f"msg_{i}", "channel": "sms", "to": "+919876543210", "status": "sent"}


# -- stores ----------------------------------------------------------------------


def memory_error(method: str) -> Exception:
    return RuntimeError(f"store unavailable (injected into {method})")


def sqlite_error(method: str) -> Exception:
    return sqlite3.OperationalError("database is locked")


def postgres_error(method: str) -> Exception:
    import psycopg

    return psycopg.OperationalError(
        "consuming input failed: server closed the connection unexpectedly"
    )


@contextlib.contextmanager
def faulty_store(kind: str, directory: Path) -> Iterator[FaultyStore]:
    inner: Store
    error: Callable[[str], Exception]
    if kind == "memory":
        inner, error = MemoryStore(), memory_error
    elif kind == "sqlite":
        inner, error = SQLiteStore(directory / "webhooks.db"), sqlite_error
    else:
        from transports.stores.postgres import PostgresStore

        inner = PostgresStore(pg.require_postgres(), schema=pg.fresh_schema())
        error = postgres_error
    try:
        yield FaultyStore(inner, error)
    finally:
        inner.close()


# -- one synchronous face for every driver --------------------------------------------


class Run(Protocol):
    """A running service, driven from the test's thread."""

    def add_endpoint(self, url: str) -> Endpoint: ...

    def publish(self, data: dict[str, Any]) -> operations.PublishResult: ...

    def drain(self, timeout: float) -> None: ...

    def check_alive(self) -> None:
        """Raise AssertionError (from the cause) if the service has died."""
        ...


def service_options(store: Store) -> dict[str, Any]:
    return {
        "store": store,
        "allow_http": True,
        "allowed_networks": LOOPBACK_NETWORKS,
        "poll_interval": POLL,
        "policy": POLICY,
        "max_in_flight": 8,
    }


class ThreadedRun:
    def __init__(self, service: ThreadedWebhookService, died: list[Any]) -> None:
        self.service = service
        self.died = died

    def add_endpoint(self, url: str) -> Endpoint:
        return self.service.add_endpoint(url)

    def publish(self, data: dict[str, Any]) -> operations.PublishResult:
        return self.service.publish("message.sent", data)

    def drain(self, timeout: float) -> None:
        self.service.drain(timeout=timeout)

    def check_alive(self) -> None:
        if self.died:
            args = self.died[0]
            thread = args.thread.name if args.thread is not None else "?"
            raise AssertionError(
                f"thread {thread} of the service died: {args.exc_value!r}"
            ) from args.exc_value


@contextlib.contextmanager
def threaded_run(store: Store) -> Iterator[ThreadedRun]:
    died: list[Any] = []
    previous = threading.excepthook

    def hook(args: Any) -> None:
        died.append(args)
        previous(args)

    threading.excepthook = hook
    try:
        service = ThreadedWebhookService(**service_options(store))
        service.start()
        try:
            yield ThreadedRun(service, died)
        finally:
            service.stop(timeout=20)
    finally:
        threading.excepthook = previous


class AsyncRun:
    def __init__(
        self,
        service: WebhookService,
        portal: anyio.from_thread.BlockingPortal,
        host: concurrent.futures.Future[None],
    ) -> None:
        self.service = service
        self.portal = portal
        self.host = host

    def add_endpoint(self, url: str) -> Endpoint:
        return self.portal.call(self.service.add_endpoint, url)

    def publish(self, data: dict[str, Any]) -> operations.PublishResult:
        return self.portal.call(functools.partial(self.service.publish, "message.sent", data))

    def drain(self, timeout: float) -> None:
        async def bounded() -> None:
            with anyio.fail_after(timeout):
                await self.service.drain()

        self.portal.call(bounded)

    def check_alive(self) -> None:
        if self.host.done():
            exc = self.host.exception()
            raise AssertionError(f"the service stopped: {exc!r}") from exc


@contextlib.contextmanager
def async_run(backend: str, store: Store) -> Iterator[AsyncRun]:
    """The service entered by a host task (``async with``) in an event loop of its own;
    the task's future holds whatever escaped from the ``async with``."""
    with anyio.from_thread.start_blocking_portal(backend) as portal:
        service = WebhookService(**service_options(store))
        stop = portal.call(anyio.Event)
        entered = threading.Event()

        async def host() -> None:
            async with service:
                entered.set()
                await stop.wait()

        future = portal.start_task_soon(host)
        deadline = time.monotonic() + 20
        while not entered.wait(0.05) and not future.done():
            assert time.monotonic() < deadline, "the service did not start"
        run = AsyncRun(service, portal, future)
        run.check_alive()
        body_failed = False
        try:
            yield run
        except BaseException:
            body_failed = True
            raise
        finally:
            if not future.done():
                portal.call(stop.set)
            try:
                future.result(timeout=20)  # raises what escaped into the host's async with
            except BaseException:
                if not body_failed:  # else the test's own failure says more (and names this)
                    raise


@contextlib.contextmanager
def running(driver: str, store: Store) -> Iterator[Run]:
    if driver == "threads":
        with threaded_run(store) as threaded:
            yield threaded
    else:
        with async_run(driver, store) as asynchronous:
            yield asynchronous


# -- the receiver -------------------------------------------------------------------


def answer(request: ReceivedRequest) -> Behaviour:
    """Handshakes answered correctly (a little late); ``/gone`` answers 410, others 200."""
    body = request.json()
    if body.get("event") == VERIFICATION:
        return Delay(HANDSHAKE_DELAY, Respond(200, body["data"]["verification_token"].encode()))
    if request.path_only == "/gone":
        return Respond(410, b"Gone")
    return Respond(200)


def deliveries_received(rx: LoopbackReceiver) -> Counter[tuple[str | None, str]]:
    """(event id, path) of every request that was not a handshake, counted."""
    return Counter(
        (r.header("webhook-id"), r.path_only)
        for r in rx.requests
        if r.header("X-Netasampark-Event") != VERIFICATION
    )


def active_endpoint(store: Store, url: str) -> Endpoint:
    """An endpoint at ``url`` as if its handshake had passed, written to the real store."""
    endpoint = operations.add_endpoint(store, url, time.time(), allow_http=True)
    endpoint = attrs.evolve(endpoint, state=EndpointState.ACTIVE, verification_token=None)
    store.save_endpoint(endpoint)
    return endpoint


# -- episodes -----------------------------------------------------------------------


@attrs.define
class Episode:
    name: str
    fault: Fault
    activity: str  # a pattern the log message must match
    call: str  # the ``store_call`` the driver logs: its activity (ACTIVITIES)
    first_record: int  # index of the first log record captured during the episode
    end_record: int | None = None


class Scenario:
    """The checks shared by every step: waits that notice a dead service, problems
    collected per episode, expected deliveries."""

    def __init__(
        self,
        run: Run,
        store: FaultyStore,
        rx: LoopbackReceiver,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        self.run = run
        self.store = store
        self.real = store.inner
        self.rx = rx
        self.caplog = caplog
        self.episodes: list[Episode] = []
        self.problems: list[str] = []
        self.expected: Counter[tuple[str | None, str]] = Counter()
        self.paths: dict[str, str] = {}  # endpoint id -> path
        self.receiving: list[str] = []  # paths of the endpoints a publish fans out to
        self.stage = "before the faults"

    def wait(self, done: Callable[[], bool], timeout: float) -> bool:
        """Poll ``done`` until it holds; False on timeout. Fails at once if the service died."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            if done():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def check_alive(self) -> None:
        """Stop the run if the service died, with the problems found before."""
        try:
            self.run.check_alive()
        except AssertionError as exc:
            earlier = "".join(f"\n  {p}" for p in self.problems)
            raise AssertionError(
                f"[{self.stage}] {exc}; problems before:{earlier or ' none'}"
            ) from exc.__cause__

    def problem(self, text: str) -> None:
        self.problems.append(f"[{self.stage}] {text}")

    def add_active(self, path: str) -> Endpoint:
        endpoint = active_endpoint(self.real, self.rx.url(path))
        self.paths[endpoint.id] = path
        self.receiving.append(path)
        return endpoint

    def add_handshaked(self, path: str) -> Endpoint:
        endpoint = self.run.add_endpoint(self.rx.url(path))
        self.paths[endpoint.id] = path
        return endpoint

    def publish(self, i: int) -> str:
        result = self.run.publish(message(i))
        if result.deliveries != len(self.receiving):
            self.problem(
                f"event {i} fanned out to {result.deliveries} endpoints, "
                f"not {len(self.receiving)} ({self.receiving})"
            )
        for path in self.receiving:
            self.expected[(result.event.id, path)] += 1
        return result.event.id

    def finished(self, event_id: str) -> bool:
        records = self.real.list_deliveries(DeliveryFilter(event_id=event_id))
        return len(records) == sum(1 for e, _ in self.expected if e == event_id) and all(
            d.state in (DeliveryState.DELIVERED, DeliveryState.FAILED) for d in records
        )

    def expect_finished(self, event_id: str) -> None:
        if not self.wait(lambda: self.finished(event_id), SETTLE_TIMEOUT):
            states = [
                (self.paths.get(d.endpoint_id), d.state.value)
                for d in self.real.list_deliveries(DeliveryFilter(event_id=event_id))
            ]
            self.problem(f"event {event_id} not finished within {SETTLE_TIMEOUT} s: {states}")

    def endpoint_state(self, endpoint_id: str) -> EndpointState | None:
        endpoint = self.real.get_endpoint(endpoint_id)
        return None if endpoint is None else endpoint.state

    def expect_endpoint(self, endpoint_id: str, state: EndpointState) -> bool:
        if self.wait(lambda: self.endpoint_state(endpoint_id) is state, SETTLE_TIMEOUT):
            return True
        now = self.endpoint_state(endpoint_id)
        self.problem(
            f"endpoint {self.paths[endpoint_id]} is {now and now.value}, not {state.value} "
            f"after {SETTLE_TIMEOUT} s"
        )
        return False

    # -- faults

    def arm(self, name: str, method: str, activity: str, call: str | None = None) -> Fault:
        """Start an episode: ``method`` fails for ``WINDOW`` seconds from its next call;
        the driver logs it as ``call`` (the Store method unless the activity calls several)."""
        self.close_episode()
        fault = self.store.fail(method, seconds=WINDOW)
        episode = Episode(name, fault, activity, call or method, len(self.caplog.records))
        self.episodes.append(episode)
        self.stage = name
        return fault

    def close_episode(self) -> None:
        if self.episodes and self.episodes[-1].end_record is None:
            self.episodes[-1].end_record = len(self.caplog.records)
            self.stage = f"after {self.episodes[-1].name}"

    def settle(self, fault: Fault) -> None:
        """Wait for the driver to hit the fault and to call the method again after it."""
        if not self.wait(lambda: fault.raised > 0, HIT_TIMEOUT):
            self.problem(f"the driver did not call {fault.method} within {HIT_TIMEOUT} s")
            return
        if not self.wait(lambda: fault.spent, WINDOW + SETTLE_TIMEOUT):
            self.problem(
                f"the driver did not call {fault.method} again after the fault "
                f"({fault.raised} calls failed)"
            )

    def check_logs(self) -> None:
        """Each episode logged once, at WARNING or above, with the fields and wording."""
        self.close_episode()
        records = self.caplog.records
        for episode in self.episodes:
            method = episode.call
            logged = [
                r
                for r in records[episode.first_record : episode.end_record]
                if r.levelno >= logging.WARNING
                and (r.name == "transports" or r.name.startswith("transports."))
                and getattr(r, "store_call", None) == method
            ]
            where = f"[{episode.name}] {episode.fault.raised} failed calls of {method}"
            if len(logged) != 1:
                others = [
                    f"{r.name} {r.levelname} store_call={getattr(r, 'store_call', None)!r}: "
                    f"{r.getMessage()}"
                    for r in records[episode.first_record : episode.end_record]
                    if r.levelno >= logging.WARNING
                ]
                self.problems.append(
                    f"{where}: {len(logged)} WARNING+ records with store_call={method!r} "
                    f"on a transports logger, not 1; WARNING+ records in the episode: {others}"
                )
                continue
            text = logged[0].getMessage()
            if not re.search(episode.activity, text, re.IGNORECASE):
                self.problems.append(
                    f"{where}: the message {text!r} does not say what the driver was doing "
                    f"(expected to match {episode.activity!r})"
                )


# -- the test -----------------------------------------------------------------------


@pytest.mark.parametrize("store_kind", STORES)
@pytest.mark.parametrize("driver", DRIVERS)
def test_store_faults_never_kill_the_driver(
    driver: str, store_kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="transports")
    with (
        LoopbackReceiver(default=Handler(answer)) as rx,
        faulty_store(store_kind, tmp_path) as store,
    ):
        ok = [active_endpoint(store.inner, rx.url(f"/ok/{n}")) for n in (1, 2)]
        with running(driver, store) as run:
            s = Scenario(run, store, rx, caplog)
            for n, endpoint in enumerate(ok, 1):
                s.paths[endpoint.id] = f"/ok/{n}"
                s.receiving.append(f"/ok/{n}")
            s.expect_finished(s.publish(0))

            fault = s.arm("claim", "claim", r"claim")
            event = s.publish(1)
            s.settle(fault)
            s.expect_finished(event)

            fault = s.arm("complete", "complete", r"writ|result|complet")
            event = s.publish(2)
            s.settle(fault)
            s.expect_finished(event)

            fault = s.arm("next_due", "next_due", r"due|next|sleep|wait")
            event = s.publish(3)
            s.settle(fault)
            s.expect_finished(event)

            # publish lists endpoints too: only once the scan's fault is over
            fault = s.arm("list_endpoints", "list_endpoints", r"endpoint|scan|handshake|verif")
            s.settle(fault)
            s.expect_finished(s.publish(4))

            first = s.add_handshaked("/new/1")
            fault = s.arm("handshake read", "get_endpoint", r"handshake", "record_handshake")
            s.settle(fault)
            if s.expect_endpoint(first.id, EndpointState.ACTIVE):
                s.receiving.append("/new/1")
            s.expect_finished(s.publish(5))

            second = s.add_handshaked("/new/2")  # saves the endpoint: before the fault
            fault = s.arm("handshake write", "save_endpoint", r"handshake", "record_handshake")
            s.settle(fault)
            if s.expect_endpoint(second.id, EndpointState.ACTIVE):
                s.receiving.append("/new/2")
            s.expect_finished(s.publish(6))

            event = s.publish(7)
            fault = s.arm("drain", "count_deliveries", r"drain|count|open")
            try:
                run.drain(timeout=WINDOW + SETTLE_TIMEOUT)
            except Exception as exc:
                s.problem(f"drain raised {exc!r}")
            else:
                if fault.raised == 0:
                    s.problem("drain never called count_deliveries while it failed")
                elif not fault.spent:
                    s.problem("drain returned without counting again after the fault")
            s.expect_finished(event)

            gone = s.add_active("/gone")
            fault = s.arm("disable", "get_endpoint", r"disabl", "disable_endpoint")
            event = s.publish(8)
            s.settle(fault)
            s.expect_endpoint(gone.id, EndpointState.DISABLED)
            s.receiving.remove("/gone")
            s.expect_finished(event)
            s.close_episode()
            s.stage = "after the faults"

            s.expect_finished(s.publish(9))
            try:
                run.drain(timeout=SETTLE_TIMEOUT)
            except Exception as exc:
                s.problem(f"the last drain raised {exc!r}")
            s.check_alive()

            received = deliveries_received(rx)
            if received != s.expected:
                s.problems.append(
                    "deliveries received (event id, path) -> count differ from those expected "
                    f"once each: missing {dict(s.expected - received)}, "
                    f"extra {dict(received - s.expected)}"
                )
            for d in s.real.list_deliveries(limit=10**6):
                path = s.paths.get(d.endpoint_id)
                want = DeliveryState.FAILED if path == "/gone" else DeliveryState.DELIVERED
                if d.state is not want or len(d.attempts) != 1:
                    s.problems.append(
                        f"delivery of {d.event_id} to {path} is {d.state.value} after "
                        f"{len(d.attempts)} attempts, not {want.value} after 1"
                    )
            for endpoint_id, want_state in (
                (ok[0].id, EndpointState.ACTIVE),
                (ok[1].id, EndpointState.ACTIVE),
                (first.id, EndpointState.ACTIVE),
                (second.id, EndpointState.ACTIVE),
                (gone.id, EndpointState.DISABLED),
            ):
                if (state := s.endpoint_state(endpoint_id)) is not want_state:
                    s.problems.append(
                        f"endpoint {s.paths[endpoint_id]} ended "
                        f"{state and state.value}, not {want_state.value}"
                    )
            s.check_logs()
            assert not s.problems, "\n".join(s.problems)
