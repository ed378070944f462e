"""The async driver's work queues: FIFO, one parked consumer woken per item, batches for the
writer, clean closing."""

from __future__ import annotations

from typing import cast

import anyio
import anyio.lowlevel
import pytest

from transports.aio.queues import WorkQueue
from transports.stores.interface import Claimed

BACKENDS = ["asyncio", "trio"]


def claim(name: str) -> Claimed:
    """A stand-in: the queue never looks inside a claim."""
    return cast(Claimed, name)


async def settle() -> None:
    for _ in range(5):
        await anyio.lowlevel.checkpoint()


@pytest.mark.parametrize("backend", BACKENDS)
def test_queued_claims_come_out_in_order_without_waiting(backend: str) -> None:
    async def main() -> list[Claimed | None]:
        queue: WorkQueue[Claimed] = WorkQueue()
        for name in ("a", "b", "c"):
            queue.put(claim(name))
        queue.close()
        return [await queue.get() for _ in range(4)]

    assert anyio.run(main, backend=backend) == [claim("a"), claim("b"), claim("c"), None]


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_claim_wakes_one_parked_worker_and_closing_wakes_the_rest(backend: str) -> None:
    async def main() -> list[Claimed | None]:
        queue: WorkQueue[Claimed] = WorkQueue()
        got: list[Claimed | None] = []

        async def worker() -> None:
            got.append(await queue.get())

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(worker)
            await settle()
            queue.put(claim("a"))
            await settle()
            assert got == [claim("a")]
            queue.close()
        with pytest.raises(anyio.ClosedResourceError):
            queue.put(claim("late"))
        return got

    assert anyio.run(main, backend=backend) == [claim("a"), None, None]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cancelled_worker_does_not_swallow_a_claim(backend: str) -> None:
    """A worker cancelled while parked leaves the line; one woken while its
    cancellation is under way passes the wake-up on, so the claim reaches a live worker."""

    async def main() -> list[Claimed | None]:
        queue: WorkQueue[Claimed] = WorkQueue()
        got: list[Claimed | None] = []

        async def worker(scope: anyio.CancelScope) -> None:
            with scope:
                got.append(await queue.get())

        scopes = [anyio.CancelScope() for _ in range(3)]
        async with anyio.create_task_group() as tg:
            for scope in scopes:
                tg.start_soon(worker, scope)
            await settle()
            scopes[0].cancel()
            await settle()
            scopes[1].cancel()  # the first worker still parked is being cancelled ...
            queue.put(claim("a"))  # ... when the claim's wake-up reaches it
            await settle()
            assert got == [claim("a")]  # the third worker has it
            queue.close()
        return got

    assert anyio.run(main, backend=backend) == [claim("a")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_waits_for_the_first_item_then_takes_what_is_queued_up_to_the_limit(
    backend: str,
) -> None:
    async def main() -> list[list[str]]:
        queue: WorkQueue[str] = WorkQueue()
        batches: list[list[str]] = []

        async def writer() -> None:
            while batch := await queue.get_batch(2):
                batches.append(batch)

        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            await settle()
            assert batches == []
            for name in ("a", "b", "c"):
                queue.put(name)
            await settle()
            queue.put("d")
            queue.close()
        return batches

    assert anyio.run(main, backend=backend) == [["a", "b"], ["c"], ["d"]]
