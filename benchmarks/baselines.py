"""Naive clients a user might write instead of the library: no storage, no retries.

Each signs every request by hand (``workload.naive_headers``) and sends one
POST per (event, endpoint) pair with a fixed number of concurrent workers
pulling from one job list: ``asyncio.gather`` over 64 coroutines for
``httpx.AsyncClient`` and ``aiohttp``, 32 threads sharing one
``httpx.Client``. Every job is "published" when the run starts, so a
request's latency is the time from the start to its answer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from benchmarks.workload import Shape, body, naive_headers, summary

ASYNC_WORKERS = 64
THREADS = 32


def jobs(urls: list[str], events: int) -> Iterator[tuple[str, str]]:
    """Every (URL, message id) pair, event by event."""
    for i in range(events):
        msg_id = f"evt_{i:08d}"
        for url in urls:
            yield url, msg_id


async def _gather(
    urls: list[str], shape: Shape, send: Callable[[str, str], Awaitable[int]]
) -> dict[str, Any]:
    todo = jobs(urls, shape.events)
    ok_times: list[float] = []
    start = time.perf_counter()
    cpu = time.process_time()

    async def worker() -> None:
        for url, msg_id in todo:
            try:
                status = await send(url, msg_id)
            except Exception:
                continue
            if 200 <= status < 300:
                ok_times.append(time.perf_counter() - start)

    await asyncio.gather(*(worker() for _ in range(ASYNC_WORKERS)))
    return summary(ok_times, ok_times, shape.deliveries, time.process_time() - cpu)


async def run_httpx_async(urls: list[str], shape: Shape) -> dict[str, Any]:
    """``httpx.AsyncClient`` with 64 connections and 64 coroutines under ``asyncio.gather``."""
    import httpx

    payload = body()
    limits = httpx.Limits(max_connections=ASYNC_WORKERS, max_keepalive_connections=ASYNC_WORKERS)
    async with httpx.AsyncClient(limits=limits, timeout=shape.timeout) as client:

        async def send(url: str, msg_id: str) -> int:
            response = await client.post(
                url, content=payload, headers=naive_headers(msg_id, payload)
            )
            return response.status_code

        return await _gather(urls, shape, send)


async def run_aiohttp(urls: list[str], shape: Shape) -> dict[str, Any]:
    """``aiohttp.ClientSession`` with 64 connections and 64 coroutines under ``asyncio.gather``."""
    import aiohttp

    payload = body()
    connector = aiohttp.TCPConnector(limit=ASYNC_WORKERS)
    timeout = aiohttp.ClientTimeout(total=shape.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def send(url: str, msg_id: str) -> int:
            headers = naive_headers(msg_id, payload)
            async with session.post(url, data=payload, headers=headers) as response:
                await response.read()
                return response.status

        return await _gather(urls, shape, send)


def run_httpx_threads(urls: list[str], shape: Shape) -> dict[str, Any]:
    """One ``httpx.Client`` (32 connections) shared by 32 threads."""
    import httpx

    payload = body()
    todo = jobs(urls, shape.events)
    lock = threading.Lock()
    ok_times: list[float] = []
    limits = httpx.Limits(max_connections=THREADS, max_keepalive_connections=THREADS)
    with httpx.Client(limits=limits, timeout=shape.timeout) as client:
        start = time.perf_counter()
        cpu = time.process_time()

        def worker() -> None:
            while True:
                with lock:
                    job = next(todo, None)
                if job is None:
                    return
                url, msg_id = job
                try:
                    status = client.post(
                        url, content=payload, headers=naive_headers(msg_id, payload)
                    ).status_code
                except httpx.HTTPError:
                    continue
                if 200 <= status < 300:
                    with lock:
                        ok_times.append(time.perf_counter() - start)

        threads = [threading.Thread(target=worker) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        cpu = time.process_time() - cpu
    return summary(ok_times, ok_times, shape.deliveries, cpu)


BASELINES: dict[str, tuple[str, Callable[[list[str], Shape], dict[str, Any]]]] = {
    "httpx-async": (
        "naive httpx.AsyncClient + gather (64)",
        lambda urls, shape: asyncio.run(run_httpx_async(urls, shape)),
    ),
    "aiohttp": (
        "naive aiohttp + gather (64)",
        lambda urls, shape: asyncio.run(run_aiohttp(urls, shape)),
    ),
    "httpx-threads": ("naive httpx.Client, 32 threads", run_httpx_threads),
}
