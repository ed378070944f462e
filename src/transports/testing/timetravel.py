"""The time-travel kit: run a sender in virtual time against a recording receiver.

Real sockets and virtual clocks do not mix (a virtual clock jumps ahead while
a socket is waiting), so retry-behaviour tests use ``RecordingReceiver``: an
in-process HTTP transport that answers from a script and records when each
request arrived on the service's clock. It answers verification handshakes by
itself, so endpoints become active as they would against a real receiver.

Virtual time per runtime:

* trio: ``anyio.run(main, backend="trio", backend_options=virtual_trio())``
  (trio's ``MockClock`` with autojump);
* asyncio: ``anyio.run(main, backend="asyncio", backend_options=virtual_asyncio())``
  (a ``looptime`` event loop);
* threads: ``ThreadedWebhookService(MemoryStore(), clock=VirtualClock())``.

Inside the loop, create ``AnyioClock(epoch=...)`` and hand the same clock to
the service and the receiver.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import attrs
import trio.testing

from transports.clocks import Clock
from transports.http.transport import HttpResponse, TransportError
from webhook_core import VERIFICATION_EVENT, HttpRequest, Outcome

Answer = int | HttpResponse | Outcome
DEFAULT_EPOCH = 1_700_000_000.0


@attrs.frozen
class RecordedRequest:
    """A request the recording receiver saw, with the time it arrived."""

    at: float
    request: HttpRequest

    @property
    def url(self) -> str:
        """Where it was sent."""
        return self.request.url

    def header(self, name: str) -> str | None:
        """A request header's value (case-insensitive), or None."""
        lowered = name.lower()
        return next((v for k, v in self.request.headers if k.lower() == lowered), None)

    def json(self) -> Any:
        """The parsed body."""
        return json.loads(self.request.body)


class RecordingReceiver:
    """Scripted answers per URL, every request recorded with its arrival time.

    ``script(url, 500, 500, 200)`` answers the first two requests to ``url``
    with 500 and every later one with 200 (the last answer repeats). An answer
    is a status, an ``HttpResponse`` (for headers such as ``Retry-After``), or an
    error ``Outcome`` such as ``Outcome.TIMEOUT``. Unscripted URLs answer
    ``default``. Use ``as_async()`` for the trio and asyncio service and
    ``as_sync()`` for the threaded one.
    """

    def __init__(
        self, clock: Clock, *, default: Answer = 200, answer_handshakes: bool = True
    ) -> None:
        self.clock = clock
        self.default = default
        self.answer_handshakes = answer_handshakes
        self._scripts: dict[str, list[Answer]] = {}
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []

    def script(self, url: str, *answers: Answer) -> None:
        """Answer requests to ``url`` in this order; the last answer repeats."""
        if not answers:
            raise ValueError("script at least one answer")
        with self._lock:
            self._scripts[url] = list(answers)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every delivery request received so far (handshakes excluded)."""
        with self._lock:
            return [
                r for r in self._requests if r.header("X-Netasampark-Event") != VERIFICATION_EVENT
            ]

    @property
    def handshakes(self) -> list[RecordedRequest]:
        """Every verification request received so far."""
        with self._lock:
            return [
                r for r in self._requests if r.header("X-Netasampark-Event") == VERIFICATION_EVENT
            ]

    def times(self, url: str) -> list[float]:
        """When each delivery request to ``url`` arrived."""
        return [r.at for r in self.requests if r.url == url]

    def handle(self, request: HttpRequest) -> HttpResponse:
        """Record ``request`` and produce its scripted answer (raises ``TransportError``)."""
        recorded = RecordedRequest(self.clock.now(), request)
        with self._lock:
            self._requests.append(recorded)
            if (
                self.answer_handshakes
                and recorded.header("X-Netasampark-Event") == VERIFICATION_EVENT
            ):
                token = recorded.json()["data"]["verification_token"]
                return HttpResponse(200, (), token.encode())
            script = self._scripts.get(request.url) or [self.default]
            answer = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(answer, Outcome):
            raise TransportError(answer, "scripted failure")
        if isinstance(answer, int):
            return HttpResponse(answer, (), b"")
        return answer

    def as_async(self) -> _AsyncRecording:
        """This receiver as an async transport for ``WebhookService``."""
        return _AsyncRecording(self.handle)

    def as_sync(self) -> _SyncRecording:
        """This receiver as a blocking transport for ``ThreadedWebhookService``."""
        return _SyncRecording(self.handle)


class _AsyncRecording:
    def __init__(self, handle: Callable[[HttpRequest], HttpResponse]) -> None:
        self._handle = handle

    async def send(self, request: HttpRequest) -> HttpResponse:
        return self._handle(request)

    async def aclose(self) -> None:
        return None


class _SyncRecording:
    def __init__(self, handle: Callable[[HttpRequest], HttpResponse]) -> None:
        self._handle = handle

    def send(self, request: HttpRequest) -> HttpResponse:
        return self._handle(request)

    def close(self) -> None:
        return None


def virtual_trio() -> dict[str, Any]:
    """anyio backend options that run trio on a ``MockClock`` that jumps ahead when idle."""
    return {"clock": trio.testing.MockClock(autojump_threshold=0)}


def virtual_asyncio(start: float = 0.0) -> dict[str, Any]:
    """anyio backend options that run asyncio on a ``looptime`` loop (virtual, fast-forwarding)."""
    import looptime  # noqa: PLC0415 - optional: the 'testing' extra installs it

    def loop_factory() -> Any:
        return looptime.new_event_loop(start=start, noop_cycles=42)

    return {"loop_factory": loop_factory}
