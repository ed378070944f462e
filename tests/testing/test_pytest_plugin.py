"""The shipped pytest fixtures run async tests in virtual time."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from transports.aio.clock import AnyioClock
from transports.aio.service import WebhookService
from transports.stores.memory import MemoryStore
from transports.testing import DEFAULT_EPOCH, RecordingReceiver

URL = "https://receiver.example/hook"


@pytest.fixture
def anyio_backend(virtual_anyio_backend: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    return virtual_anyio_backend


@pytest.mark.anyio
async def test_an_hour_passes_instantly() -> None:
    before = anyio.current_time()
    await anyio.sleep(3600)
    assert anyio.current_time() - before == pytest.approx(3600, abs=1e-6)


@pytest.mark.anyio
async def test_retry_after_of_two_hours_is_capped_at_one_hour() -> None:
    from transports.http.transport import HttpResponse

    clock = AnyioClock(epoch=DEFAULT_EPOCH)
    receiver = RecordingReceiver(clock)
    receiver.script(URL, HttpResponse(503, (("Retry-After", "7200"),), b""), 200)
    async with WebhookService(MemoryStore(), http=receiver.as_async(), clock=clock) as hooks:
        await hooks.add_endpoint(URL)
        await hooks.drain()
        await hooks.publish(
            "message.read",
            {"message_id": "m", "channel": "whatsapp", "to": "+91", "status": "read"},
        )
        await hooks.drain()
    assert [t - DEFAULT_EPOCH for t in receiver.times(URL)] == [0, 3600]


def test_recording_receiver_fixture_uses_the_virtual_clock(
    recording_receiver: RecordingReceiver, virtual_clock: Any
) -> None:
    assert recording_receiver.clock is virtual_clock
    assert virtual_clock.now() == DEFAULT_EPOCH
