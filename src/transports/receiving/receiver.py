"""The receiver: verifies, de-duplicates and routes webhook requests to handlers.

Theory of operation
-------------------
``Receiver.handle`` (WSGI, Django, plain code) and ``Receiver.handle_async``
(ASGI) take a request's raw body and headers and return the ``Reply`` to
send. The decisions are the core's (``webhook_core.receiving``): a bad
signature or a timestamp outside the tolerance is 401, a malformed body 400,
the handshake is answered with its token. A verified event's id is then
claimed in the idempotency store: a duplicate gets 200 and runs nothing.
Otherwise the handlers whose pattern matches run in registration order; if
one raises, the id is released and the answer is 500 so the sender retries.
With a background queue (respond fast) the answer is 202 at once and the
handlers run on the queue. Every rejection is logged on the
``transports.receiving`` logger with its reason.
"""

from __future__ import annotations

import inspect
import logging
import queue
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread

from transports.receiving.idempotency import IdempotencyStore, MemoryIdempotencyStore
from webhook_core import ConfigError, EventCatalog, Secret, VerificationError, Verifier
from webhook_core.catalog import platform_catalog
from webhook_core.receiving import (
    ACCEPTED,
    DUPLICATE,
    HANDLER_FAILED,
    QUEUED,
    MalformedBody,
    ReceivedEvent,
    Reply,
    Routes,
    check_request,
    decode_event,
    dedup_key,
    handshake_reply,
    is_handshake,
    rejection_reply,
)
from webhook_core.signing import DEFAULT_TOLERANCE

log = logging.getLogger("transports.receiving")

DEFAULT_TTL = 3 * 86_400.0
"""How long an event id is remembered: well past the sender's last retry (about 81 minutes)."""

BUSY = Reply(503, b"the background queue is full; send it again later")

EventHandler = Callable[[ReceivedEvent[Any]], Any]
F = TypeVar("F", bound=EventHandler)
T = TypeVar("T")


class WorkQueue(Protocol):
    """Where a respond-fast receiver puts its handlers' work (``ThreadWorkQueue``)."""

    def submit(self, job: Callable[[], None]) -> None:
        """Queue ``job``; raise ``queue.Full`` when there is no room."""
        ...


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _run_sync(handler: EventHandler, event: ReceivedEvent[Any]) -> None:
    result = handler(event)
    if inspect.isawaitable(result):
        anyio.run(_await, result)


class Receiver:
    """Verifies webhook requests and runs the handlers registered for their events.

    ``secrets``: the endpoint's secret, or several during a rotation.
    ``tolerance``: how far ``webhook-timestamp`` may be from now, in seconds.
    ``catalog``: types handlers' ``data`` (default: the platform's 13 events).
    ``idempotency``: where event ids are remembered for ``ttl`` seconds
    (default: in memory). ``allow_platform_only``: also accept requests that
    carry only ``X-Netasampark-Signature`` (no replay protection).
    ``background``: a work queue for respond-fast mode. ``on_error`` is called
    with the event and the exception when a background handler fails.
    """

    def __init__(
        self,
        secrets: str | Secret | Iterable[str | Secret],
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        catalog: EventCatalog | None = None,
        idempotency: IdempotencyStore | None = None,
        ttl: float = DEFAULT_TTL,
        allow_platform_only: bool = False,
        background: WorkQueue | None = None,
        on_error: Callable[[ReceivedEvent[Any], BaseException], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(secrets, (str, Secret)):
            secrets = [secrets]
        self.verifier = Verifier(secrets, tolerance=tolerance)
        self.catalog = catalog if catalog is not None else platform_catalog()
        self.idempotency: IdempotencyStore = (
            idempotency if idempotency is not None else MemoryIdempotencyStore()
        )
        if not ttl > 0:
            raise ConfigError("ttl must be a positive number of seconds")
        self.ttl = ttl
        self.allow_platform_only = allow_platform_only
        self.background = background
        self.on_error = on_error
        self.clock = clock
        self.routes: Routes[EventHandler] = Routes()

    def on(self, pattern: str) -> Callable[[F], F]:
        """Decorator: run the function for events that ``pattern`` selects (``message.*``)."""

        def register(handler: F) -> F:
            self.routes.add(pattern, handler)
            return handler

        return register

    def add_handler(self, pattern: str, handler: EventHandler) -> None:
        """Run ``handler`` for events that ``pattern`` selects."""
        self.routes.add(pattern, handler)

    # -- the decision, shared by both entry points ---------------------------------

    def _prepare(
        self, body: bytes, headers: Mapping[str, str]
    ) -> Reply | tuple[ReceivedEvent[Any], str | None]:
        try:
            verified, envelope = check_request(
                self.verifier,
                body,
                headers,
                self.clock(),
                allow_platform_only=self.allow_platform_only,
            )
            if is_handshake(envelope):
                log.info("answered the verification handshake")
                return handshake_reply(envelope)
            event = decode_event(self.catalog, envelope, body, headers)
        except (VerificationError, MalformedBody) as exc:
            reply = rejection_reply(exc)
            log.warning("rejected a request with %d: %s", reply.status, exc)
            return reply
        return event, dedup_key(verified, envelope)

    def _claim(self, event: ReceivedEvent[Any], key: str | None) -> bool:
        """Record the event's id; False (and logged) for a duplicate."""
        if key is None:
            return True
        now = self.clock()
        if self.idempotency.claim(key, now, now + self.ttl):
            return True
        log.info("duplicate %s %s: already received", event.name, key)
        return False

    def _failed(self, event: ReceivedEvent[Any], key: str | None, exc: BaseException) -> None:
        log.error("a handler failed on %s %s", event.name, event.id, exc_info=exc)
        if key is not None:
            self.idempotency.release(key)

    def _queue(self, event: ReceivedEvent[Any], key: str | None) -> Reply:
        assert self.background is not None
        handlers = self.routes.match(event.name)

        def job() -> None:
            try:
                for handler in handlers:
                    _run_sync(handler, event)
            except Exception as exc:
                self._failed(event, key, exc)
                if self.on_error is not None:
                    self.on_error(event, exc)

        try:
            self.background.submit(job)
        except queue.Full:
            if key is not None:
                self.idempotency.release(key)
            log.warning("the background queue is full; answered 503 to %s", event.id)
            return BUSY
        return QUEUED

    # -- entry points ----------------------------------------------------------------

    def handle(self, body: bytes, headers: Mapping[str, str]) -> Reply:
        """Decide and act on one request (blocking); returns the reply to send."""
        decision = self._prepare(body, headers)
        if isinstance(decision, Reply):
            return decision
        event, key = decision
        if not self._claim(event, key):
            return DUPLICATE
        if self.background is not None:
            return self._queue(event, key)
        try:
            for handler in self.routes.match(event.name):
                _run_sync(handler, event)
        except Exception as exc:
            self._failed(event, key, exc)
            return HANDLER_FAILED
        return ACCEPTED

    async def handle_async(self, body: bytes, headers: Mapping[str, str]) -> Reply:
        """``handle`` for an event loop: blocking work runs in worker threads."""
        decision = self._prepare(body, headers)
        if isinstance(decision, Reply):
            return decision
        event, key = decision
        blocking = self.idempotency.blocking
        if blocking:
            fresh = await anyio.to_thread.run_sync(self._claim, event, key)
        else:
            fresh = self._claim(event, key)
        if not fresh:
            return DUPLICATE
        if self.background is not None:
            # submit() may wait for room in the queue: not on the event loop.
            return await anyio.to_thread.run_sync(self._queue, event, key)
        try:
            for handler in self.routes.match(event.name):
                if inspect.iscoroutinefunction(handler):
                    await handler(event)
                else:
                    result = await anyio.to_thread.run_sync(handler, event)
                    if inspect.isawaitable(result):
                        await result
        except Exception as exc:
            if blocking:
                await anyio.to_thread.run_sync(self._failed, event, key, exc)
            else:
                self._failed(event, key, exc)
            return HANDLER_FAILED
        return ACCEPTED
