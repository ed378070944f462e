"""Looking inside one row: a transport that does no I/O, and the profiler run.

``NullTransport`` answers 200 at once (one checkpoint, no socket): a row on
it shows the ceiling of the driver's own machinery (publish, claim, queue,
core lifecycle, signing, writer) with no HTTP cost at all.

``profile_row`` runs one of our rows in this process under cProfile, prints
own time grouped by package (``webhook_core``, ``transports``, ``httptools``,
``anyio``, ``asyncio``, ...) and the top functions, for the main thread and
then for the threads the row started (where a blocking store's calls run),
then runs it again under pyinstrument (if installed) for the main thread's
call tree.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import os
import pstats
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from transports.http.transport import HttpResponse
from webhook_core import HttpRequest


class NullTransport:
    """``AsyncHttpTransport`` that answers 200 at once (one checkpoint, no socket)."""

    keeps_deadline = True  # answers at once: the driver takes the lean transport's path

    async def send(self, request: HttpRequest) -> HttpResponse:
        import anyio.lowlevel

        await anyio.lowlevel.checkpoint()
        return HttpResponse(200, (("content-length", "2"),), b"OK")

    async def aclose(self) -> None:
        """Nothing to close."""


@contextlib.contextmanager
def thread_profiles() -> Iterator[list[cProfile.Profile]]:
    """A cProfile for each thread started inside the block, profiling it from its start.

    They count the thread's CPU time: waits for locks, the GIL and the disk are left out.
    """
    profiles: list[cProfile.Profile] = []

    def begin(*_: object) -> None:
        sys.setprofile(None)
        profile = cProfile.Profile(time.thread_time)
        profiles.append(profile)
        profile.enable()

    threading.setprofile(begin)
    try:
        yield profiles
    finally:
        threading.setprofile(None)


def profile_row(run: Callable[[Path], dict[str, Any]]) -> None:
    """Run ``run`` (one row, given a fresh directory) under cProfile, then pyinstrument."""
    profile = cProfile.Profile()
    with tempfile.TemporaryDirectory() as directory, thread_profiles() as in_threads:
        profile.enable()
        result = run(Path(directory))
        profile.disable()
    print(f"under cProfile: {result['rate'] or 0:,.0f} deliveries/s (slowed by the profiler)")
    sections = [("the main thread", pstats.Stats(profile))]
    if in_threads:
        sections.append((f"{len(in_threads)} other threads, CPU time", pstats.Stats(*in_threads)))
    for title, stats in sections:
        print(f"\n== {title} ==")
        by_package(stats)
        out = io.StringIO()
        stats.stream = out  # type: ignore[attr-defined]
        stats.sort_stats("tottime").print_stats(25)
        text = out.getvalue()
        print("\n-- top 25 functions by own time --")
        print(text[text.find("   ncalls") :].rstrip())
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("\n(pyinstrument is not installed: no call tree)")
        return
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    with tempfile.TemporaryDirectory() as directory:
        profiler.start()
        result = run(Path(directory))
        profiler.stop()
    print(f"\n-- pyinstrument: {result['rate'] or 0:,.0f} deliveries/s --")
    print(profiler.output_text(unicode=False, color=False, show_all=False))


def by_package(stats: pstats.Stats) -> None:
    """Print own time grouped by the package each function lives in."""
    groups: dict[str, float] = {}
    for (filename, _line, _func), row in stats.stats.items():  # type: ignore[attr-defined]
        own = row[2]
        package = _package_of(filename)
        groups[package] = groups.get(package, 0.0) + own
    total = sum(groups.values()) or 1.0
    print("\n-- own time by package --")
    for name, seconds in sorted(groups.items(), key=lambda kv: -kv[1])[:16]:
        print(f"  {name:<28} {seconds:7.3f} s  {100 * seconds / total:5.1f}%")


def _package_of(filename: str) -> str:
    path = filename.replace("\\", "/")
    for marker in ("/site-packages/", "/src/"):
        if marker in path:
            return path.split(marker, 1)[1].split("/", 1)[0].removesuffix(".py")
    if path.startswith("<") or path == "~":
        return "builtins (C)"
    if "/lib/python3" in path:
        parts = path.split("/lib/python3", 1)[1].split("/", 2)
        return "stdlib: " + (parts[1].removesuffix(".py") if len(parts) > 1 else "?")
    return os.path.basename(path)
